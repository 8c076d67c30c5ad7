"""The native runtime's supervisor (feedops.runbook.supervisor) around real child processes.

The child is a small Python program that exits with the next code of a plan (or kills
itself with SIGKILL) and records the --profile it was given, so each test reads back how
often and on which profile the keeper started it. The backoff cap is tiny: no test waits
on a real backoff.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
from pathlib import Path

import pytest

from feedops.exitcodes import Worker
from feedops.runbook import supervisor
from feedops.runbook.state import StateStore

CHILD = """
import json, os, signal, sys
from pathlib import Path
d = Path(sys.argv[1])
plan = json.loads((d / "plan.json").read_text())
runs = d / "runs"
n = len(runs.read_text().splitlines()) if runs.exists() else 0
profile = sys.argv[sys.argv.index("--profile") + 1] if "--profile" in sys.argv else "-"
with open(runs, "a") as fh:
    fh.write(profile + "\\n")
code = plan[min(n, len(plan) - 1)]
if code == "kill":
    os.kill(os.getpid(), signal.SIGKILL)
if code == "wait":
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
    (d / "waiting").write_text(str(os.getpid()))
    signal.pause()
sys.exit(code)
"""


def keeper(tmp_path: Path, plan: list, kind: str = "worker", profile: str | None = "primary", **kw) -> supervisor.Keeper:
    (tmp_path / "child.py").write_text(CHILD)
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    argv = [sys.executable, str(tmp_path / "child.py"), str(tmp_path)]
    if profile:
        argv += ["--profile", profile]
    return supervisor.Keeper("worker-0", kind, argv, StateStore(tmp_path / "state"), backoff_max=0.01, profile=profile, **kw)


def runs(tmp_path: Path) -> list[str]:
    return (tmp_path / "runs").read_text().split()


def test_backoff_doubles_up_to_the_cap():
    assert [supervisor.backoff(n, 30) for n in range(1, 8)] == [1, 2, 4, 8, 16, 30, 30]


@pytest.mark.parametrize("code", [int(Worker.OK), int(Worker.TICKS_LOST)])
def test_a_worker_stopped_on_request_is_not_restarted(tmp_path, code):
    k = keeper(tmp_path, [code])
    assert k.run() == code
    assert runs(tmp_path) == ["primary"]
    assert supervisor.read_record(k.state, "worker-0")["restarts"] == 0


def test_failures_and_a_sigkill_are_restarted_and_counted(tmp_path):
    k = keeper(tmp_path, [int(Worker.NO_FRONT), "kill", int(Worker.INTERNAL), 0])
    assert k.run() == 0
    assert len(runs(tmp_path)) == 4
    record = supervisor.read_record(k.state, "worker-0")
    assert record["restarts"] == 3 and record["last_exit"] == 0 and record["failovers"] == 0
    assert (k.state.root / "supervisor" / "worker-0.json").is_file()


def test_ticks_lost_is_not_restarted_for_a_sim_but_18_is_a_failure_there(tmp_path):
    k = keeper(tmp_path, [18, 0], kind="sim", profile=None)
    assert k.run() == 0
    assert runs(tmp_path) == ["-", "-"]


@pytest.mark.parametrize("code", [int(Worker.CONFIG), int(Worker.LISTEN), int(Worker.SINK)])
def test_what_a_restart_cannot_fix_is_not_restarted(tmp_path, code):
    k = keeper(tmp_path, [code, 0])
    assert k.run() == code
    assert len(runs(tmp_path)) == 1


def test_repeated_storms_fail_over_to_the_other_profile_and_the_ledger_says_so(tmp_path):
    storm = int(Worker.STORM)
    k = keeper(tmp_path, [storm, int(Worker.LOGIN), storm, 0], auto_failover=True, failover_after=3)
    assert k.run() == 0
    assert runs(tmp_path) == ["primary", "primary", "primary", "backup"]
    assert k.state.active_profile() == "backup"
    [entry] = k.state.ledger()
    assert entry["kind"] == "profile" and entry["reason"] == "auto-failover"
    assert (entry["from"], entry["profile"], entry["exit_code"], entry["failures"]) == ("primary", "backup", storm, 3)
    assert supervisor.read_record(k.state, "worker-0")["failovers"] == 1


def test_without_auto_failover_the_profile_stays(tmp_path):
    storm = int(Worker.STORM)
    k = keeper(tmp_path, [storm, storm, storm, storm, 0], auto_failover=False, failover_after=3)
    assert k.run() == 0
    assert set(runs(tmp_path)) == {"primary"} and k.state.ledger() == []


def test_other_exits_in_between_reset_the_failover_count(tmp_path):
    storm = int(Worker.STORM)
    k = keeper(tmp_path, [storm, storm, int(Worker.NO_FRONT), storm, storm, 0], auto_failover=True, failover_after=3)
    assert k.run() == 0
    assert set(runs(tmp_path)) == {"primary"}


def test_a_worker_follows_a_profile_switched_by_someone_else(tmp_path):
    k = keeper(tmp_path, [int(Worker.NO_FRONT), 0])
    k.state.set_active_profile("backup", "failover")
    assert k.run() == 0
    assert runs(tmp_path) == ["backup", "backup"]


def test_a_stop_request_is_forwarded_and_ends_the_keeper(tmp_path):
    k = keeper(tmp_path, ["wait"])
    result: list[int] = []
    thread = threading.Thread(target=lambda: result.append(k.run()))
    thread.start()
    try:
        waited = 0
        while not (tmp_path / "waiting").exists() and waited < 1000:  # bounded: the child starts in well under 10 s
            threading.Event().wait(0.01)
            waited += 1
        k.on_signal(signal.SIGTERM)
    finally:
        thread.join(30)
    assert result == [0] and len(runs(tmp_path)) == 1


def test_with_profile_replaces_or_adds():
    assert supervisor.with_profile(["x", "--profile", "primary", "--y"], "backup") == ["x", "--profile", "backup", "--y"]
    assert supervisor.with_profile(["x"], "backup") == ["x", "--profile", "backup"]


def test_status_lists_the_restarts(tmp_path, monkeypatch):
    from feedops.runbook.config import RunbookContext
    from feedops.runbook.status import render_status

    k = keeper(tmp_path, [int(Worker.STORM), 0])
    assert k.run() == 0
    monkeypatch.setenv("FEEDOPS_STATE_DIR", str(tmp_path / "state"))
    ctx = RunbookContext.load("dev", "native")
    (tmp_path / "state" / "pids").mkdir()
    (tmp_path / "state" / "pids" / "worker-0.pid").write_text('{"pid": 1, "start_ticks": 0}')
    assert "restarts 1, last exit 0" in render_status(ctx)


def test_the_restart_count_is_pushed_to_a_real_pushgateway(tmp_path, pushgateway):
    import urllib.request

    k = keeper(tmp_path, [int(Worker.INTERNAL), "kill", 0], push_url=pushgateway.url, env="dev")
    assert k.run() == 0
    text = urllib.request.urlopen(f"{pushgateway.url}/metrics", timeout=5).read().decode()
    lines = [line for line in text.splitlines() if line.startswith("feedops_supervisor_restarts_total{")]
    assert len(lines) == 1 and 'component="worker-0"' in lines[0] and 'job="feedops_supervisor"' in lines[0]
    assert 'env="dev"' in lines[0] and float(lines[0].rsplit(" ", 1)[1]) == 2


def test_a_second_stop_signal_inside_the_first_ones_event_set_does_not_deadlock(tmp_path):
    """The group's SIGTERM and a SIGINT (or a second SIGTERM) can nest: the second handler runs inside the first
    one's stopping.set(), which holds the event's lock; it must not take that lock again."""
    keeper = supervisor.Keeper("worker-0", "worker", [sys.executable, "-c", "pass"], StateStore(tmp_path / "state"))
    outer_set = keeper.stopping.set

    def set_with_a_second_signal_inside():
        with keeper.stopping._cond:
            keeper.on_signal(signal.SIGTERM)
        outer_set()

    keeper.stopping.set = set_with_a_second_signal_inside
    stopper = threading.Thread(target=keeper.on_signal, args=(signal.SIGTERM,), daemon=True)
    stopper.start()
    stopper.join(10)
    assert not stopper.is_alive(), "the second signal waited for the first one's lock"
    assert keeper.stopping.is_set()
