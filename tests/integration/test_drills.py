"""A representative part of the fault matrix in CI (the whole matrix: ``make drills``,
docs/ops/drills.md): two faults of ctp-sim, a killed worker, a killed Redis, concurrent runs
and a rollback to a missing release, on a native dev stack with the reference consumer."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import ROOT
from feedops.drills.matrix import select

pytestmark = pytest.mark.integration

CI_DRILLS = ("sim:disconnect", "sim:replay", "process:worker-killed", "process:redis-killed",
             "runbook:concurrent-run", "runbook:rollback-missing-release")


def test_a_part_of_the_fault_matrix_passes():
    assert [d.name for d in select(",".join(CI_DRILLS))] == list(CI_DRILLS)
    proc = subprocess.run([sys.executable, "-m", "feedops.drills", "--only", ",".join(CI_DRILLS)], cwd=ROOT,
                          capture_output=True, text=True, timeout=900)
    print(proc.stdout)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-4000:]
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| ") and not line.startswith("| fault")]
    assert [r.split(" | ")[0].removeprefix("| ") for r in rows] == list(CI_DRILLS)
    assert all(r.endswith("| pass |") for r in rows)
    assert f"drills: {len(CI_DRILLS)}/{len(CI_DRILLS)} passed" in proc.stdout
