"""Moved to `picsort.batch.sort`; this name keeps working for the 0.2 release, then goes.

`from picsort.bulk import sort_files` still works and warns once (DeprecationWarning).
"""

import warnings

from picsort.batch.sort import *  # noqa: F403 - the old name offers what the new home does
from picsort.batch.sort import __all__  # noqa: F401

warnings.warn("picsort.bulk moved to picsort.batch.sort; the old name goes after picsort 0.2",
              DeprecationWarning, stacklevel=2)
