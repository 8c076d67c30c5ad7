"""The fault matrix's definition and its table (the drills themselves run in
tests/integration/test_drills.py and ``make drills``)."""

from __future__ import annotations

import pytest

from feedops.drills import matrix
from feedops.sim.config import FAULTS


def test_every_sim_fault_and_the_process_and_runbook_faults_have_a_drill():
    names = [d.name for d in matrix.DRILLS]
    assert len(names) == len(set(names)) and len(names) >= 20
    assert {n.split(":", 1)[1] for n in names if n.startswith("sim:")} == set(FAULTS)
    assert {"process:worker-killed", "process:sim-killed", "process:redis-killed", "process:redis-paused",
            "process:disk-full", "runbook:concurrent-run", "runbook:corrupt-state", "runbook:backup-dies-in-failover",
            "runbook:wrong-rotated-secret", "runbook:rollback-missing-release"} <= set(names)


def test_select_keeps_the_order_asked_and_refuses_unknown_names():
    assert [d.name for d in matrix.select("runbook:stale-lock,sim:slow")] == ["runbook:stale-lock", "sim:slow"]
    assert matrix.select(None) == list(matrix.DRILLS)
    with pytest.raises(SystemExit, match="unknown drill sim:nope"):
        matrix.select("sim:slow,sim:nope")


def test_the_table_shows_each_figure_and_a_failure():
    rows = [matrix.Row("sim:slow", "recovers", "held; health OK", 1.234, 12, 0, 0, True),
            matrix.Row("process:disk-full", "recovers", "FAILED: timed out", None, None, None, None, False)]
    text = matrix.table(rows)
    assert "| sim:slow | recovers | held; health OK | 1.23 s | 12 / 0 | 0 | pass |" in text
    assert "| process:disk-full | recovers | FAILED: timed out | - | - / - | - | FAIL |" in text
    assert text.endswith("drills: 1/2 passed")
