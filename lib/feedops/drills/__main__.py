"""``python -m feedops.drills``: the fault matrix (docs/ops/drills.md)."""

import sys

from .matrix import main

sys.exit(main())
