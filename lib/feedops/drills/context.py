"""The fault matrix's stack handles and the context every drill acts on.

:class:`Redis` is the matrix's own redis-server (append-only, on a tmpfs when root can mount
one), :class:`Front` a ctp-sim front's ``ticks_sent`` across its restarts, and :class:`Ctx`
what a drill reads and drives: the runbook, the worker's status and pid, the consumer's
marks and the settle between drills (:meth:`Ctx.quiesce`). The drills themselves are in
:mod:`.cases`, the runner and the table in :mod:`.matrix`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

from ..consumer import ReferenceConsumer
from ..paths import ROOT
from ..polling import free_port, wait_for
from . import stack

TOKEN = "drillSntl8"  # the stack's secrets start with it; no runbook output may contain it
REDIS_PREFIX = "feedops:md"
RECOVERY_TIMEOUT = 60.0
#: the worker's latency p99 is over its last 20,000 ticks (worker/writerproc.py LATENCY_SAMPLE): after a sink outage
#: the late ticks keep it CRITICAL until that many fresh ones passed, about 3 min at 200 instruments
HEALTH_TIMEOUT = 240.0


class DrillError(Exception):
    """A drill's step did not end as documented (the message says what was seen)."""


def _http_json(url: str, method: str = "GET") -> dict:
    request = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    with urllib.request.urlopen(request, timeout=5) as resp:
        return json.loads(resp.read())


class Redis:
    """redis-server for the sink, append-only (a killed process loses nothing it acknowledged: the
    append-only file is written before the reply), on a 256 MB tmpfs when one can be mounted (the
    disk-full drill fills it). ``appendfsync everysec``: with ``always`` a failed append makes
    Redis exit; with ``everysec`` it refuses writes until it can append again."""

    def __init__(self, base: Path) -> None:
        self.binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        if not os.path.exists(self.binary):
            raise SystemExit("drills: redis-server not installed: apt-get install redis-server (.ci/run does this)")
        self.dir = base / "redis"
        self.dir.mkdir()
        self.tmpfs = os.geteuid() == 0 and subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=256m", "tmpfs", str(self.dir)], capture_output=True).returncode == 0
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.log = base / "redis.log"
        self.proc: subprocess.Popen | None = None
        self.start()

    def start(self) -> None:
        import redis as redis_lib

        argv = [self.binary, "--bind", "127.0.0.1", "--port", str(self.port), "--save", "", "--appendonly", "yes",
                "--appendfsync", "everysec", "--auto-aof-rewrite-min-size", "16mb", "--dir", str(self.dir)]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        wait_for(lambda: redis_lib.Redis(host="127.0.0.1", port=self.port).ping(), timeout=30, what="redis-server")

    def signal(self, signum: int) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signum)

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        assert self.proc is not None
        self.proc.wait(10)

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.tmpfs:
            subprocess.run(["umount", "-l", str(self.dir)], check=False)


class Front:
    """ticks_sent of one ctp-sim front across its restarts (a restarted front counts from 0)."""

    def __init__(self, url: str) -> None:
        self.url, self.base, self.last = url, 0, 0

    def sent(self) -> int:
        try:
            now = _http_json(f"{self.url}/status")["ticks_sent"]
        except (OSError, ValueError, KeyError):
            return self.base + self.last  # down: what it had sent
        if now < self.last:
            self.base += self.last
        self.last = now
        return self.base + now

    def fault(self, name: str, on: bool, **params: str) -> bool:
        query = "&".join([f"on={int(on)}", *(f"{k}={v}" for k, v in params.items())])
        try:
            _http_json(f"{self.url}/faults/{name}?{query}", method="POST")
        except (OSError, ValueError):
            return False
        return True


@dataclasses.dataclass
class Ctx:
    base: Path
    env: dict[str, str]
    redis: Redis
    fronts: dict[str, Front]
    consumer: ReferenceConsumer
    profile: str = "primary"  # the profile the worker should end on
    phase: str = ""  # the drill running: its outage phase at the consumer
    resumed: bool = False
    pending: int = 0  # entries delivered to the consumer and not acknowledged (at the last settle)

    def resume(self) -> None:
        """The fault is cleared (the new session starts): the consumer's ``resume`` mark of the phase."""
        if not self.resumed:
            self.consumer.mark_resume(self.phase)
            self.resumed = True

    def totals(self) -> dict:
        return self.consumer.report(instruments=False)["totals"]

    def stream_entries(self) -> int:
        """Entries in the feed streams: everything the sink acknowledged (no trimming at the drill's rates)."""
        import redis as redis_lib

        client = redis_lib.Redis.from_url(self.redis.url, decode_responses=True, socket_timeout=2)
        return sum(client.xlen(s) for s in client.scan_iter(match=f"{REDIS_PREFIX}:*", _type="stream"))

    def runbook(self, *args: str, timeout: float = 180, **extra: str) -> subprocess.CompletedProcess:
        proc = subprocess.run([str(stack.RUNBOOK), *args, "--runtime", "native"], cwd=ROOT, env={**self.env, **extra},
                              capture_output=True, text=True, timeout=timeout)
        if TOKEN in proc.stdout + proc.stderr:
            raise DrillError(f"runbook {args[0]}: a secret reached its output")
        return proc

    def runbook_bg(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen([str(stack.RUNBOOK), *args, "--runtime", "native"], cwd=ROOT, env=self.env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def expect(self, proc: subprocess.CompletedProcess, code: int, what: str) -> str:
        if proc.returncode != code:
            tail = (proc.stdout + proc.stderr).strip().splitlines()[-6:]
            raise DrillError(f"{what}: exit {proc.returncode}, expected {code}: " + " | ".join(tail))
        return f"{what} exit {proc.returncode}"

    @property
    def worker_url(self) -> str:
        return self.env["FEEDOPS_WORKER_URLS"]

    def worker_status(self) -> dict:
        return _http_json(f"{self.worker_url}/status")

    def worker_pid(self) -> int:
        record = json.loads((Path(self.env["FEEDOPS_STATE_DIR"]) / "supervisor" / "worker-0.json").read_text())
        if not record.get("child_pid"):
            raise DrillError("the supervisor records no running worker")
        return int(record["child_pid"])

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.worker_url}/readyz", timeout=2) as resp:
                ok = resp.status == 200
        except (OSError, urllib.error.HTTPError):
            return False
        return ok and self.worker_status().get("profile") == self.profile

    def sent(self) -> int:
        return sum(f.sent() for f in self.fronts.values())

    def log_has(self, name: str, event: str, since: int) -> bool:
        path = Path(self.env["FEEDOPS_STATE_DIR"]) / "logs" / f"{name}.log"
        with open(path, "rb") as fh:
            fh.seek(since)
            return f'"{event}"'.encode() in fh.read()

    def log_size(self, name: str) -> int:
        path = Path(self.env["FEEDOPS_STATE_DIR"]) / "logs" / f"{name}.log"
        return path.stat().st_size if path.exists() else 0

    def quiesce(self, name: str) -> tuple[int, int, int]:
        """Hold the fronts silent until nothing moves; return (sent, received, duplicates); then release
        and wait until ticks flow again. The silence is an outage phase of its own at the consumer
        (``name``), so that its gaps are not taken for the drill's. While silent, every entry the sink
        acknowledged (in the streams) must have been read and acknowledged by the consumer."""
        self.mark_outage(name)
        if self.redis.proc is None or self.redis.proc.poll() is not None:
            raise DrillError(f"redis-server is not running (exit {self.redis.proc and self.redis.proc.returncode}; "
                             f"see {self.redis.log})")
        for front in self.fronts.values():
            front.fault("silent", True)
        try:
            last: list[tuple] = []

            def settled():
                totals = self.totals()
                last.append((self.sent(), totals["ticks"], totals["duplicates"]))
                return len(last) >= 3 and last[-1] == last[-3]

            wait_for(settled, timeout=20, interval=0.25, what="the feed to settle (fronts silent)")
            sent, received, dups = last[-1]
            totals = self.totals()
            entries, delivered = self.stream_entries(), totals["acknowledged"] + (totals["pending"] or 0)
            if delivered < entries:
                raise DrillError(f"{entries - delivered} entries in the streams never reached the consumer")
            self.pending = totals["pending"] or 0
        finally:
            self.consumer.mark_resume(name)
            for profile, front in self.fronts.items():
                if not front.fault("silent", False) and not front.fault("silent", False):
                    raise DrillError(f"cannot switch the {profile} front's silent fault off")
        if self.ready() and self.consumer.wait_recovered(name, timeout=RECOVERY_TIMEOUT) is None:
            report, worker = self.consumer.report(instruments=False), self.worker_status()
            outage, last = report["outages"].get(name, {}), report["totals"].get("last_tick") or {}
            raise DrillError(f"the feed did not come back at the consumer after the settle ({name}): consumer source up "
                             f"{report.get('source_up')}, {report['totals']['ticks']} ticks, {outage.get('back')} of "
                             f"{outage.get('needed')} needed instruments back (of {outage.get('instruments')} fresh), "
                             f"resume marked at {outage.get('resume')}, the consumer's clock {report.get('at')}, its last "
                             f"tick received at {last.get('recv_ts')} seen at {last.get('seen_at')}; worker on "
                             f"{worker.get('profile')}, throughput {worker.get('throughput')}, dropped "
                             f"{worker.get('ticks_dropped')}")
        return sent, received, dups

    def mark_outage(self, phase: str) -> None:
        """The consumer's outage mark, once instruments are fresh there (an outage of no instrument never recovers)."""
        def marked():
            self.consumer.mark_outage(phase)
            return self.consumer.report(instruments=False)["outages"][phase]["instruments"] > 0

        wait_for(marked, timeout=30, interval=0.2, what="instruments fresh at the consumer")

