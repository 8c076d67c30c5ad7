"""Shared pytest fixtures: real servers from Debian on free loopback ports.

Every server binds 127.0.0.1 only, is started on a free port, waited for by
polling (never a fixed sleep) and stopped by PID at the end of the session.
A binary that is missing skips the tests that need it with the install hint.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from clock_support import PINNED, resolve
from feedops import clock
from feedops.calendar import BEIJING
from feedops.polling import free_port, wait_for  # re-exported for the tests

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable


def http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=1) as resp:
        return 200 <= resp.status < 300


class Server:
    """A child process on a loopback port, stopped by PID."""

    def __init__(self, name: str, argv: list[str], port: int, log_path: Path, env: dict | None = None):
        self.name, self.argv, self.port, self.log_path = name, argv, port, log_path
        self.log = open(log_path, "wb")
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        self.url = f"http://127.0.0.1:{port}"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")


def _require(binary: str, package: str) -> str:
    path = shutil.which(binary) or (f"/usr/bin/{binary}" if os.path.exists(f"/usr/bin/{binary}") else None)
    if not path:
        pytest.skip(f"{binary} not installed: apt-get install {package} (.ci/run does this)")
    return path


@pytest.fixture(autouse=True)
def _log_defaults():
    """Every test starts with the log defaults (level info, JSON): a test that runs a CLI in-process
    (``feedops.log.configure``) must not change the format the next test parses."""
    from feedops import log as feedlog

    saved = dict(feedlog._defaults)
    yield
    feedlog.configure(level=saved["level"], fmt=saved["fmt"])


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    binary = _require("redis-server", "redis-server")
    port = free_port()
    d = tmp_path_factory.mktemp("redis")
    srv = Server("redis", [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no",
                           "--dir", str(d)], port, d / "redis.log")
    import redis as redis_lib

    wait_for(lambda: redis_lib.Redis(host="127.0.0.1", port=port).ping(), what="redis")
    srv.url = f"redis://127.0.0.1:{port}/0"
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def pushgateway(tmp_path_factory):
    binary = _require("prometheus-pushgateway", "prometheus-pushgateway")
    port = free_port()
    d = tmp_path_factory.mktemp("pushgateway")
    srv = Server("pushgateway", [binary, f"--web.listen-address=127.0.0.1:{port}"], port, d / "pushgateway.log")
    wait_for(lambda: http_ok(f"{srv.url}/-/ready"), what="pushgateway")
    yield srv
    srv.stop()


def start_prometheus(tmp_dir: Path, config_text: str, extra_args: list[str] | None = None) -> Server:
    """Start Prometheus with ``config_text`` (the caller owns stopping it)."""
    binary = _require("prometheus", "prometheus")
    port = free_port()
    cfg = tmp_dir / "prometheus.yml"
    cfg.write_text(config_text)
    argv = [binary, f"--config.file={cfg}", f"--storage.tsdb.path={tmp_dir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}", "--web.enable-lifecycle", *(extra_args or [])]
    srv = Server("prometheus", argv, port, tmp_dir / "prometheus.log")
    wait_for(lambda: http_ok(f"{srv.url}/-/ready"), timeout=30, what="prometheus")
    return srv


@pytest.fixture
def prometheus_factory(tmp_path):
    started: list[Server] = []

    def factory(config_text: str, extra_args: list[str] | None = None) -> Server:
        srv = start_prometheus(tmp_path, config_text, extra_args)
        started.append(srv)
        return srv

    yield factory
    for srv in started:
        srv.stop()


# ---------------------------------------------------------------------------- the clock (time is an input)
def pytest_addoption(parser):
    parser.addoption("--clock-at", metavar="NAME|ISO", default=None,
                     help="run the date-sensitive tests (clock_at fixture) at this date: a name from "
                          "tests/clock_support.SWEEP or an ISO 8601 time; default: the real date")


def _move_clock(monkeypatch, at: dt.datetime) -> None:
    """Move feedops's clock in this process and in every process a test starts (FEEDOPS_CLOCK_AT)."""
    value = clock.anchored(at)
    monkeypatch.setenv(clock.ENV_VAR, value)
    monkeypatch.setattr(clock, "_offset", clock.parse(value))  # undone with the fixture


@pytest.fixture
def clock_at(request, monkeypatch) -> dt.datetime:
    """The date this run is about: ``--clock-at`` (moved for this process and its children), else now."""
    option = request.config.getoption("--clock-at")
    if option is None:
        return clock.now(BEIJING)
    at = resolve(option)
    _move_clock(monkeypatch, at)
    return at


@pytest.fixture
def pinned_clock(monkeypatch) -> dt.datetime:
    """A fixed date (clock_support.PINNED) for tests whose assertions hold on one date only."""
    _move_clock(monkeypatch, PINNED)
    return PINNED

