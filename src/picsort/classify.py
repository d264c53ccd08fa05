"""Moved to `picsort.inference.classify`; this name keeps working for the 0.2 release, then goes.

`from picsort.classify import load_model` still works and warns once (DeprecationWarning).
"""

import warnings

from picsort.inference.classify import *  # noqa: F403 - the old name offers what the new home does
from picsort.inference.classify import __all__  # noqa: F401

warnings.warn("picsort.classify moved to picsort.inference.classify; the old name goes after picsort 0.2",
              DeprecationWarning, stacklevel=2)
