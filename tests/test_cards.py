"""The app's cards (picsort.cards): what a card shows, what it reports through its callbacks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_importing_the_cards_loads_no_torch():
    # A card shows numbers the classifier already computed; torch takes seconds to load on a cold start.
    done = subprocess.run([sys.executable, "-c", "import picsort.cards, sys; print('torch' in sys.modules)"],
                          capture_output=True, text=True, cwd=REPO, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "False"
