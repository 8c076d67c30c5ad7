"""What the scripts/operations/*.py shims share: this checkout's lib/ on sys.path, then the CLI.

Each shim keeps the name the runbook, cron, the Makefile and the docs use, and runs
``main()`` of its module in the package (``feedops.<tool>.cli``, also installed as a
``feedops-<tool>`` console script by pyproject.toml). The checkout's lib/ goes first, as
PYTHONPATH=lib does for the runbook and the image: a script runs the code it ships with.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

LIB = Path(__file__).resolve().parents[2] / "lib"


def run(module: str) -> None:
    """Exit with the return value of ``module.main()``."""
    sys.path.insert(0, str(LIB))
    raise SystemExit(importlib.import_module(module).main())
