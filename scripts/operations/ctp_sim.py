#!/usr/bin/env python3
"""Run a ctp-sim front: a CTP-compatible market simulator with fault injection.

    scripts/operations/ctp_sim.py --env dev --profile primary
    scripts/operations/ctp_sim.py --listen 127.0.0.1:17001 --fault dead_instruments

Runtime faults: curl -X POST 'http://127.0.0.1:18001/faults/disconnect?on=1'.
See docs/ops/ctp-sim.md; exit codes: feedops.exitcodes.Sim.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "lib"))

from feedops.sim.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
