"""feedops.runbook: state files, snapshots, the pin, readiness polling, the process table."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from feedops.exitcodes import Runbook
from feedops.runbook import cli, ready
from feedops.runbook.config import RunbookContext, snapshot_values
from feedops.runbook.procs import Component, ProcessTable
from feedops.runbook.state import StateError, StateStore, atomic_write_json

SENTINEL = "unitSntl42"


@pytest.fixture
def environ(tmp_path, monkeypatch) -> dict[str, str]:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    for var in ("CTP_PRIMARY_PASSWORD", "CTP_PRIMARY_AUTH_CODE", "CTP_BACKUP_PASSWORD", "CTP_BACKUP_AUTH_CODE"):
        (secrets / var).write_text(SENTINEL)
    values = {"FEEDOPS_STATE_DIR": str(tmp_path / "state"), "FEEDOPS_SECRETS_DIR": str(secrets), "FEEDOPS_RUNTIME": "native"}
    for key in [k for k in __import__("os").environ if k.startswith(("FEEDOPS_", "CTP_PRIMARY_", "CTP_BACKUP_"))]:
        monkeypatch.delenv(key)
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    return values


def test_atomic_write_leaves_no_temp_file_and_reads_back(tmp_path):
    target = tmp_path / "deep" / "x.json"
    atomic_write_json(target, {"a": 1})
    atomic_write_json(target, {"a": 2})
    assert json.loads(target.read_text()) == {"a": 2}
    assert [p.name for p in target.parent.iterdir()] == ["x.json"]


@pytest.mark.parametrize("content, reason", [
    ('{"profile": "backup"', "not JSON"),
    ('["backup"]', "expected a JSON dict"),
    ('{"ts": 1}', "missing profile"),
    ('{"profile": "tertiary"}', "neither primary nor backup"),
])
def test_corrupt_state_is_reported_not_trusted(tmp_path, content, reason):
    store = StateStore(tmp_path)
    (tmp_path / "active-profile.json").write_text(content)
    with pytest.raises(StateError) as err:
        store.active_profile()
    assert "active-profile.json" in str(err.value) and reason in str(err.value)


def test_missing_state_is_none_and_ledger_is_bounded(tmp_path, monkeypatch):
    store = StateStore(tmp_path)
    assert store.active_profile() is None and store.last_good() is None and store.ledger() == []
    monkeypatch.setattr("feedops.runbook.state.LEDGER_MAX_ENTRIES", 3)
    for i in range(5):
        store.append_ledger({"kind": "release", "n": i})
    assert [e["n"] for e in store.ledger()] == [2, 3, 4]
    with pytest.raises(StateError, match="is missing"):
        store.snapshot("nope")


def test_snapshot_has_no_secret_and_the_pin_beats_the_environment(environ, monkeypatch):
    ctx = RunbookContext.load("dev")
    values = snapshot_values(ctx.settings)
    assert SENTINEL not in json.dumps(values)
    assert not any(k.endswith(("PASSWORD", "AUTH_CODE")) for k in values)
    assert "FEEDOPS_STATE_DIR" not in values and values["FEEDOPS_SUBSCRIBE_BATCH_SIZE"] == "1000"
    ctx.state.set_pin({"FEEDOPS_SUBSCRIBE_BATCH_SIZE": "500"}, "rollback", tag="v1")
    ctx.state.set_active_profile("backup", "failover")
    monkeypatch.setenv("FEEDOPS_SUBSCRIBE_BATCH_SIZE", "900")
    pinned = RunbookContext.load("dev")
    assert pinned.feed.subscribe_batch_size == 500 and pinned.image_tag() == "v1" and pinned.profile == "backup"
    child = pinned.child_environ()
    assert child["FEEDOPS_SUBSCRIBE_BATCH_SIZE"] == "500" and child["FEEDOPS_ACTIVE_PROFILE"] == "backup"


def test_rollback_apply_needs_a_mark_then_pins_it(environ, capsys, monkeypatch):
    assert cli.main(["--env", "dev", "rollback-apply"]) == Runbook.ROLLBACK_FAILED
    monkeypatch.setenv("FEEDOPS_IMAGE_TAG", "v0.9")
    assert cli.main(["--env", "dev", "mark-good", "--mode", "premarket"]) == Runbook.OK
    monkeypatch.setenv("FEEDOPS_IMAGE_TAG", "v1.0")
    assert cli.main(["--env", "dev", "mark-good", "--mode", "premarket"]) == Runbook.OK
    assert cli.main(["--env", "dev", "rollback-apply", "--to", "v0.9"]) == Runbook.OK
    out = capsys.readouterr().out
    assert "TAG=v0.9" in out and "PROFILE=primary" in out
    store = StateStore(Path(environ["FEEDOPS_STATE_DIR"]))
    assert store.pin()["tag"] == "v0.9" and store.ledger()[-1]["kind"] == "rollback"
    success = json.loads((store.root / "runs" / "premarket.last-success").read_text())
    assert success["env"] == "dev" and success["profile"] == "primary"
    assert SENTINEL not in "".join(p.read_text() for p in store.root.rglob("*") if p.is_file())


def test_rotate_revert_restores_the_previous_pin(environ, tmp_path):
    store = StateStore(Path(environ["FEEDOPS_STATE_DIR"]))
    store.set_pin({"FEEDOPS_SUBSCRIBE_BATCH_SIZE": "500"}, "rollback", tag="v1")
    assert cli.main(["--env", "dev", "rotate", "apply", "--secrets-dir", environ["FEEDOPS_SECRETS_DIR"]]) == Runbook.OK
    assert store.pin()["values"]["FEEDOPS_SECRETS_DIR"] == environ["FEEDOPS_SECRETS_DIR"] and store.pin()["tag"] == "v1"
    assert cli.main(["--env", "dev", "rotate", "revert"]) == Runbook.OK
    assert store.pin()["values"] == {"FEEDOPS_SUBSCRIBE_BATCH_SIZE": "500"} and store.pin()["reason"] == "rollback"


class _Worker(BaseHTTPRequestHandler):
    ready_after = 3
    profile = "primary"
    hits = 0

    def do_GET(self):
        cls = type(self)
        if self.path == "/readyz":
            cls.hits += 1
            code = 200 if cls.hits >= cls.ready_after else 503
            body = b"ok" if code == 200 else b'{"status":"fail","reasons":["subscribing"]}'
        else:
            code, body = 200, json.dumps({"profile": cls.profile}).encode()
        self.send_response(code)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def fake_worker():
    handler = type("Handler", (_Worker,), {"hits": 0})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield handler, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_wait_ready_polls_until_ready_with_progress(fake_worker):
    handler, url = fake_worker
    out = io.StringIO()
    ok, summary = ready.wait_ready([url], 10, out, interval=0.01, progress_every=0)
    assert ok and "1/1 worker(s) ready" in summary and handler.hits == 3
    assert "waiting: 0/1 ready" in out.getvalue() and "subscribing" in out.getvalue()


def test_wait_ready_times_out_or_stops_when_the_worker_dies(fake_worker):
    handler, url = fake_worker
    handler.ready_after = 10**9
    ok, summary = ready.wait_ready([url], 0.3, io.StringIO(), interval=0.01)
    assert not ok and "0/1 worker(s) ready after 0.3s" in summary
    ok, summary = ready.wait_ready([url], 30, io.StringIO(), interval=0.01, alive=lambda i: "worker-0 exited")
    assert not ok and summary == "worker-0 exited"


def test_wait_ready_checks_the_expected_profile(fake_worker):
    handler, url = fake_worker
    handler.ready_after = 0
    ok, summary = ready.wait_ready([url], 0.3, io.StringIO(), expect_profile="backup", interval=0.01)
    assert not ok and "ready on profile primary, waiting for backup" in summary
    assert ready.probe(url, "primary").ready


def test_process_table_starts_stops_and_kills_a_stubborn_one(environ):
    ctx = RunbookContext.load("dev")
    table = ProcessTable(ctx)
    polite = Component("worker-0", "worker", [sys.executable, "-c", "import time; time.sleep(60)"], ("127.0.0.1", 1))
    stubborn = Component("worker-1", "worker", [sys.executable, "-c",
                         "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('up', flush=True); time.sleep(60)"],
                         ("127.0.0.1", 1))
    pid, started = table.start(polite)
    assert started and table.running_pid("worker-0") == pid
    assert table.start(polite) == (pid, False)  # idempotent
    table.start(stubborn)
    deadline = time.monotonic() + 10
    while "up" not in table.log_file("worker-1").read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "up" in table.log_file("worker-1").read_text()  # SIGTERM is ignored from here on
    assert table.stop("worker-0", 5) is True
    assert table.stop("worker-1", 0.5, signal.SIGTERM) is False  # killed after the timeout
    assert table.names() == [] and table.running_pid("worker-1") is None


def test_stop_reports_a_worker_that_discarded_ticks(environ, capsys):
    """A worker that exits 18 (TICKS_LOST) on SIGTERM: the runbook's stop names it and the count, at ERROR."""
    ctx = RunbookContext.load("dev")
    table = ProcessTable(ctx)
    script = ("import json, signal, sys, time\n"
              "def stop(*_):\n"
              "    print(json.dumps({'level': 'error', 'event': 'worker.ticks.lost', 'lost': 4321}), flush=True)\n"
              "    sys.exit(18)\n"
              "signal.signal(signal.SIGTERM, stop)\nprint('up', flush=True)\ntime.sleep(60)\n")
    old = Component("worker-0", "worker", [sys.executable, "-c", script], ("127.0.0.1", 1))
    table.log_file("worker-0").parent.mkdir(parents=True, exist_ok=True)
    # an older run's line in the same (appended) log is not this stop's
    table.log_file("worker-0").write_text('{"event": "worker.ticks.lost", "lost": 1}\n')
    clean = Component("worker-1", "worker", [sys.executable, "-c", "import time; time.sleep(60)"], ("127.0.0.1", 1))
    table.start(old)
    table.start(clean)
    deadline = time.monotonic() + 10
    while "up" not in table.log_file("worker-0").read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert cli.main(["--env", "dev", "--runtime", "native", "stop", "--kind", "worker", "--timeout", "5"]) == Runbook.OK
    captured = capsys.readouterr()
    assert "stopped: worker-0 (exit 18 TICKS_LOST: 4321 ticks discarded)" in captured.out
    assert "stopped: worker-1\n" in captured.out
    [line] = [x for x in captured.err.splitlines() if "runbook.worker.ticks_lost" in x]
    assert "ERROR" in line.upper() and "lost=4321" in line and "worker-0" in line, line


@pytest.mark.parametrize("name, write", [
    ("deployed.json", lambda s: s.set_deployed("img", "v2")),
    ("last-good.json", lambda s: s.set_last_good("snap", "v2", "primary")),
    ("active-profile.json", lambda s: s.set_active_profile("backup", "failover")),
    ("ledger.json", lambda s: s.append_ledger({"kind": "profile"})),
    ("runs/premarket.last.json", lambda s: s.record_run({"mode": "premarket", "exit_code": 0, "ts": 1})),
    ("runs/premarket.last-success", lambda s: s.mark_premarket_success("dev", "primary")),
])
@pytest.mark.parametrize("content", ["{not json", "[]", '{"unrelated": 1}'])
def test_a_corrupt_state_file_is_never_overwritten(tmp_path, name, write, content):
    store = StateStore(tmp_path)
    target = tmp_path / name
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(content)
    with pytest.raises(StateError, match=str(target)):
        write(store)
    assert target.read_text() == content
    assert [str(target) in problem for problem in store.check()] == [True]


def test_check_reads_every_state_file(tmp_path):
    store = StateStore(tmp_path)
    assert store.check() == []
    files = {"pids/worker-0.pid": '{"pid": "x"}', "supervisor/worker-0.json": "{", "pin.json": '{"values": {}}',
             "pin.previous.json": '{"pin": 3}', "runs/shutdown.last.json": "[]"}
    for name, content in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(content)
    problems = store.check()
    assert len(problems) == len(files)
    for name in files:
        assert any(str(tmp_path / name) in p for p in problems), (name, problems)


def test_group_states_names_each_process_of_the_group_with_its_state_and_wait():
    """What the runbook logs about a component that ignored its stop request before it kills it."""
    from feedops.polling import wait_for
    from feedops.runbook.procs import group_states

    code = "import subprocess, sys, time\nsubprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\ntime.sleep(60)"
    leader = subprocess.Popen([sys.executable, "-c", code], start_new_session=True)
    try:
        wait_for(lambda: len(group_states(leader.pid).split(", ")) == 2, timeout=20, what="two processes in the group")
        rows = [row.split() for row in group_states(leader.pid).split(", ")]
        assert str(leader.pid) in [pid for pid, _, _ in rows]
        assert all(state in "RSD" and wchan for _, state, wchan in rows)
        assert group_states(os.getpgrp()) and str(leader.pid) not in group_states(os.getpgrp())
    finally:
        os.killpg(leader.pid, signal.SIGKILL)
        leader.wait(10)
    wait_for(lambda: group_states(leader.pid) == "", timeout=20, what="the killed group gone from /proc")
