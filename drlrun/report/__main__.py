"""``python -m drlrun.report PATH...``: the same as ``drlrun-report PATH...``."""

import sys

from drlrun.report.cli import main

sys.exit(main())
