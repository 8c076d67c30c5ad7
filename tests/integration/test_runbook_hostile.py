"""start_live_env.sh as a hostile operator uses it: concurrent runs over a stale lock,
corrupt state files, a rotated secret shadowed by the environment.

No feed runs: each test builds a private state directory (free loopback ports, dev
secrets with a sentinel value) and drives the real runbook script. Components the
tests start themselves are stopped by pid.
"""

from __future__ import annotations

import json
import re
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, free_port, wait_for
from feedops.exitcodes import Runbook

pytestmark = pytest.mark.integration

RUNBOOK = ROOT / "scripts" / "operations" / "start_live_env.sh"
SENTINEL = "hst1leSntl"  # CTP auth codes are at most 16 characters
SECRETS = ("CTP_PRIMARY_PASSWORD", "CTP_PRIMARY_AUTH_CODE", "CTP_BACKUP_PASSWORD", "CTP_BACKUP_AUTH_CODE")


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    secrets = tmp_path / "secrets"
    secrets.mkdir(mode=0o700)
    for var in SECRETS:
        (secrets / var).write_text(f"{SENTINEL}{var[4]}{var[-1]}")
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("FEEDOPS_", "CTP_PRIMARY_", "CTP_BACKUP_"))}
    primary, backup, worker = free_port(), free_port(), free_port()
    environ.update({
        "FEEDOPS_STATE_DIR": str(tmp_path / "state"), "FEEDOPS_SECRETS_DIR": str(secrets),
        "FEEDOPS_SINK_URL": f"file:{tmp_path / 'feed'}", "FEEDOPS_FLOW_DIR": str(tmp_path / "flow"),
        "FEEDOPS_CACHE_DIR": str(tmp_path / "cache"), "FEEDOPS_LOG_FORMAT": "json",
        "FEEDOPS_WORKER_LISTEN": f"127.0.0.1:{worker}", "FEEDOPS_WORKER_URLS": f"http://127.0.0.1:{worker}",
        "CTP_PRIMARY_MD_FRONTS": f"tcp://127.0.0.1:{primary}", "CTP_PRIMARY_TD_FRONTS": f"tcp://127.0.0.1:{primary}",
        "CTP_BACKUP_MD_FRONTS": f"tcp://127.0.0.1:{backup}", "CTP_BACKUP_TD_FRONTS": f"tcp://127.0.0.1:{backup}",
        "FEEDOPS_PUSHGATEWAY_ENABLED": "false", "FEEDOPS_PROMETHEUS_ENABLED": "false",
        "FEEDOPS_ALERTMANAGER_ENABLED": "false", "FEEDOPS_GRAFANA_ENABLED": "false",
    })
    (tmp_path / "state").mkdir()
    return environ


def state(env: dict[str, str], *parts: str) -> Path:
    return Path(env["FEEDOPS_STATE_DIR"]).joinpath(*parts)


def runbook(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([str(RUNBOOK), *args, "--runtime", "native"], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


def explain(proc) -> str:
    return f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"


def start_ticks(pid: int) -> int | None:
    """Kernel start time of a live pid (None: gone, or a zombie)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    fields = stat[stat.rfind(")") + 2:].split()
    return None if fields[0] in ("Z", "X") else int(fields[19])


class Stubborn:
    """A process in its own session that ignores SIGTERM: a component the runbook has to wait for."""

    def __init__(self, tmp: Path):
        ready = tmp / "stubborn.ready"
        code = ("import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                f"open({str(ready)!r}, 'w').close(); time.sleep(600)")
        self.proc = subprocess.Popen([sys.executable, "-c", code], start_new_session=True)
        wait_for(ready.exists, timeout=30, interval=0.05, what="the stubborn process")

    def record(self, kind: str = "worker") -> dict:
        return {"pid": self.proc.pid, "start_ticks": start_ticks(self.proc.pid), "kind": kind, "argv": [], "ts": 0}

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


# ---------------------------------------------------------------- the lock
@pytest.mark.parametrize("round_", range(3))
def test_concurrent_runs_over_a_stale_lock_exactly_one_proceeds(env, tmp_path, round_):
    """A stale lock and N runs at once: exactly one takes the lock, the others exit LOCK_HELD (65).
    The winner is held inside its run by a component that ignores SIGTERM, so that no loser can
    arrive after it finished."""
    runs = 5
    state(env, "runbook.lock").write_text(f"pid={dead_pid()} mode=restart started=2026-11-27T00:00:00Z\n")
    stubborn = Stubborn(tmp_path)
    state(env, "pids").mkdir()
    state(env, "pids", "worker-0.pid").write_text(json.dumps(stubborn.record()))
    procs = [subprocess.Popen([str(RUNBOOK), "shutdown", "--runtime", "native", "--timeout", "300"], env=env, cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(runs)]
    try:
        wait_for(lambda: sum(p.poll() is not None for p in procs) >= runs - 1, timeout=60, interval=0.1,
                 what=f"{runs - 1} of {runs} concurrent runs to exit")
        finished = [p for p in procs if p.poll() is not None]
        codes = sorted(p.returncode for p in finished)
        assert codes == [Runbook.LOCK_HELD] * (runs - 1), codes
        winner = next(p for p in procs if p.poll() is None)
        for p in finished:
            assert "another run holds the lock" in p.stderr.read()
        holder = state(env, "runbook.lock").read_text()
        assert f"pid={winner.pid} mode=shutdown" in holder
    finally:
        stubborn.kill()
        outs = [p.communicate(timeout=120) for p in procs]
    assert winner.returncode == Runbook.OK, outs
    assert "runbook.lock.stale" in " ".join(err for _, err in outs)
    assert not state(env, "runbook.lock").exists()  # released at the end


# ---------------------------------------------------------------- corrupt state files
CORRUPT = {
    "ledger.json": "{\"entries\": [",
    "deployed.json": "{\"image\": 1",
    "last-good.json": "[]",
    "active-profile.json": "{\"profile\": \"tertiary\"}",
    "pin.json": "{\"values\": {\"X\": 1}, \"reason\": \"rollback\"}",
    "pin.previous.json": "{\"pin\": 7}",
    "runs/premarket.last.json": "\x00\x01",
    "runs/premarket.last-success": "{\"ts\": \"yesterday\", \"env\": \"dev\", \"profile\": \"primary\"}",
    "pids/worker-0.pid": "{\"pid\": \"twelve\"}",
    "supervisor/worker-0.json": "{",
}


@pytest.mark.parametrize("name", sorted(CORRUPT))
@pytest.mark.parametrize("mode", ["premarket", "restart"])
def test_a_corrupt_state_file_stops_the_run_before_anything_starts(env, name, mode):
    target = state(env, name)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(CORRUPT[name])
    before = {p: p.read_bytes() for p in state(env).rglob("*") if p.is_file()}
    proc = runbook(env, mode)
    assert proc.returncode == Runbook.STATE_CORRUPT, explain(proc)
    assert str(target) in proc.stderr, explain(proc)
    assert "move it away" in proc.stderr or "remove the file" in proc.stderr, explain(proc)
    assert "Traceback" not in proc.stdout + proc.stderr
    after = {p: p.read_bytes() for p in state(env).rglob("*") if p.is_file()}
    assert after == before  # nothing started (no pid file), nothing written or overwritten
    assert SENTINEL not in proc.stdout + proc.stderr


def _start_stack(env: dict[str, str]) -> None:
    proc = subprocess.run([str(ROOT / ".venv" / "bin" / "python"), "-m", "feedops.runbook", "--runtime", "native",
                           "start-stack", "--timeout", "60"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == Runbook.OK, explain(proc)


def _listening(address: str) -> bool:
    import socket

    host, port = address.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=0.5):
            return True
    except OSError:
        return False


def test_shutdown_with_a_corrupt_pid_file_still_stops_what_runs(env, tmp_path):
    """The sims run under the runbook's supervisor; sim-primary's pid file is garbage. shutdown finds it by
    its command line and port, stops everything, exits STATE_CORRUPT naming the file. A process of another
    state directory with the same command line is left alone."""
    _start_stack(env)
    records = {n: json.loads(state(env, "pids", f"{n}.pid").read_text()) for n in ("sim-primary", "sim-backup")}
    decoy_env = {**env, "FEEDOPS_STATE_DIR": str(tmp_path / "other-state")}
    decoy = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)", "feedops.runbook.supervisor",
                              "--name", "sim-primary"], env=decoy_env, start_new_session=True)
    try:
        state(env, "pids", "sim-primary.pid").write_text("{garbage")
        proc = runbook(env, "shutdown")
        assert proc.returncode == Runbook.STATE_CORRUPT, explain(proc)
        assert str(state(env, "pids", "sim-primary.pid")) in proc.stderr, explain(proc)
        assert re.search(r"stopped: sim-primary \(stopped pid\(s\) [\d, ]+ found by command line and port", proc.stdout), \
            explain(proc)
        assert "stopped: sim-backup" in proc.stdout
        assert "Traceback" not in proc.stdout + proc.stderr
        for name, record in records.items():
            assert start_ticks(record["pid"]) != record["start_ticks"], (name, explain(proc))
            assert not _listening(record["address"]), name
        assert decoy.poll() is None  # another environment's process is never touched
        status = runbook(env, "status")  # shows what it can, names the file, exits STATE_CORRUPT
        assert status.returncode == Runbook.STATE_CORRUPT, explain(status)
        assert re.search(r"sim-primary +corrupt pid file \(not trusted\)", status.stdout), explain(status)
        assert str(state(env, "pids", "sim-primary.pid")) in status.stderr
    finally:
        decoy.kill()
        decoy.wait(timeout=30)
        for record in records.values():  # whatever a failure left behind, by pid
            if start_ticks(record["pid"]) == record["start_ticks"]:
                os.killpg(record["pid"], signal.SIGKILL)


def test_shutdown_with_a_corrupt_ledger_stops_everything_then_exits_state_corrupt(env):
    _start_stack(env)
    record = json.loads(state(env, "pids", "sim-primary.pid").read_text())
    state(env, "ledger.json").write_text("{")
    proc = runbook(env, "shutdown")
    assert proc.returncode == Runbook.STATE_CORRUPT, explain(proc)
    assert str(state(env, "ledger.json")) in proc.stderr
    assert not _listening(record["address"])
    assert not list(state(env, "pids").glob("*.pid"))
    assert state(env, "ledger.json").read_text() == "{"
