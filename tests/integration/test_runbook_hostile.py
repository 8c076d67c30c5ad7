"""start_live_env.sh as a hostile operator uses it: concurrent runs over a stale lock,
corrupt state files, a rotated secret shadowed by the environment.

No feed runs: each test builds a private state directory (free loopback ports, dev
secrets with a sentinel value) and drives the real runbook script. Components the
tests start themselves are stopped by pid.
"""

from __future__ import annotations

import json
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


def start_ticks(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat[stat.rfind(")") + 2:].split()[19])


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
