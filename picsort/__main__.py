"""`python -m picsort ...`: the command line (see picsort.cli), with process settings for batch work."""

from picsort.bulk import reuse_freed_memory

reuse_freed_memory()

from picsort.cli import main  # noqa: E402

raise SystemExit(main())
