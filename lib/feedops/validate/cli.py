"""Entry point ``feedops-validate`` (pyproject): runs scripts/operations/validate_env.py.

The command line itself (argparse, output, exit codes) lives in that script, as
every feedops CLI does; this shim only makes it available as a console script.
"""

from __future__ import annotations

import runpy

from ..paths import ROOT

SCRIPT = ROOT / "scripts" / "operations" / "validate_env.py"


def main() -> int:
    namespace = runpy.run_path(str(SCRIPT), run_name="feedops_validate_env")
    return namespace["main"]()
