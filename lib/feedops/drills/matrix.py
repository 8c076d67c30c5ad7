"""The fault matrix (``make drills``): every fault on a native dev stack with a subscriber attached.

One stack serves the whole run: two ctp-sim fronts and the worker, started by the runbook's
``premarket`` (monitoring off, it is not what a drill measures), writing to a Redis of the
matrix's own (append-only, fsynced per write, its data on a 64 MB tmpfs when the host lets
root mount one); the reference consumer (:mod:`feedops.consumer`) reads every feed stream
with the consumer group ``drills`` and acknowledges. Each drill, in turn:

1. settles the feed (the ``silent`` fault on both fronts until nothing moves), reads the
   fronts' ``ticks_sent`` and the consumer's count, and checks that every entry in the
   streams (what the sink acknowledged) was delivered to the consumer (acknowledged or pending);
2. marks the outage at the consumer, injects its fault and, where the runbook is the fault
   or the fix, runs the runbook and checks its exit code; marks the resume;
3. waits (bounded) for the worker ready on the expected profile and the consumer's
   coverage back: the recovery time (the consumer's, outage mark to coverage back) and
   its estimate of the ticks missed in the window;
4. runs the runbook's ``health`` (exit 0: OK or WARNING) until it passes, bounded;
5. settles again: ticks the fronts sent in the drill minus ticks the consumer got, and the
   duplicates the consumer saw.

A drill passes when all of that holds, with no duplicates, and nothing sent lost where the
fault leaves the worker and its front connection alive (the others lose what was in flight
in a dropped connection or a killed process, unacknowledged: reported, not judged).
The table goes to stdout; the exit code is 0 when every drill passed, 1 otherwise
(docs/ops/drills.md).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from redis.exceptions import RedisError

from .. import clock, log
from ..calendar import BEIJING
from ..consumer import ReferenceConsumer, open_source
from ..exitcodes import Runbook
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


@dataclasses.dataclass(frozen=True)
class Drill:
    name: str
    kind: str  # sim | process | runbook
    expected: str
    act: Callable[[Ctx], str]  # injects, runs what the runbook says, returns what it observed
    judge_missed: bool = True  # False: a dropped connection or killed process loses what was in flight


@dataclasses.dataclass
class Row:
    fault: str
    expected: str
    observed: str = ""
    recovery: float | None = None
    missed: int | None = None  # the consumer's estimate in the outage window (its instruments' rhythm)
    lost: int | None = None  # ticks the fronts sent minus ticks the consumer got, over the drill
    duplicates: int | None = None
    passed: bool = False


# ------------------------------------------------------------------------------------------ drills
def _toggle(name: str, hold: Callable[[Ctx], None], **params: str) -> Callable[[Ctx], str]:
    def act(ctx: Ctx) -> str:
        front = ctx.fronts[ctx.profile]
        if not front.fault(name, True, **params):
            raise DrillError(f"cannot switch {name} on")
        try:
            seen = hold(ctx)
        finally:
            front.fault(name, False)
            ctx.resume()
        return f"{name} on, {seen or 'held'}, off"
    return act


def _hold_until(event: str, what: str, timeout: float = 20) -> Callable[[Ctx], str]:
    """Hold the fault until the worker logs ``event`` (the fault reached it)."""
    def hold(ctx: Ctx) -> str:
        since = ctx.log_size("worker-0")
        wait_for(lambda: ctx.log_has("worker-0", event, since), timeout=timeout, what=what)
        return f"worker logged {event}"
    return hold


def _hold_ticks(n: int) -> Callable[[Ctx], str]:
    """Hold the fault while ``n`` more ticks reach the subscriber (the feed runs through it)."""
    def hold(ctx: Ctx) -> str:
        start = ctx.totals()["ticks"]
        wait_for(lambda: ctx.totals()["ticks"] >= start + n, timeout=30, what=f"{n} ticks through the fault")
        return f"{n} ticks through it"
    return hold


def _hold_quiet(seconds: float) -> Callable[[Ctx], str]:
    """Hold the fault until no tick reached the subscriber for ``seconds``."""
    def hold(ctx: Ctx) -> str:
        wait_for(lambda: clock.time() - (ctx.totals()["last_tick"] or {}).get("seen_at", 0) >= seconds, timeout=30,
                 interval=0.2, what=f"{seconds:g} s without ticks at the subscriber")
        return f"{seconds:g} s without ticks"
    return hold


def _hold_status(pred: Callable[[dict], bool], what: str) -> Callable[[Ctx], str]:
    def hold(ctx: Ctx) -> str:
        wait_for(lambda: pred(ctx.worker_status()), timeout=30, interval=0.2, what=what)
        return what
    return hold


def _refuse_login(ctx: Ctx) -> str:
    front = ctx.fronts[ctx.profile]
    since = ctx.log_size("worker-0")
    front.fault("refuse_login", True)
    try:
        front.fault("disconnect", True)
        wait_for(lambda: ctx.log_has("worker-0", "worker.md.disconnected", since), timeout=20, what="the disconnect")
        front.fault("disconnect", False)
        wait_for(lambda: ctx.log_has("worker-0", "worker.login.failed", since), timeout=30, what="a refused login")
    finally:
        front.fault("disconnect", False)
        front.fault("refuse_login", False)
        ctx.resume()
    return "session dropped, login refused, then allowed"


def _flow_control(ctx: Ctx) -> str:
    front = ctx.fronts[ctx.profile]
    for cached in Path(ctx.env["FEEDOPS_CACHE_DIR"]).glob("instruments-*.json"):
        cached.unlink()  # the restarted worker must query the instruments
    front.fault("flow_control", True)
    since = ctx.log_size("worker-0")
    proc = ctx.runbook_bg("restart")
    try:
        wait_for(lambda: ctx.log_has("worker-0", "worker.instruments.retry", since), timeout=60,
                 what="the worker retrying a refused instrument query")
    finally:
        front.fault("flow_control", False)
    out, err = proc.communicate(timeout=180)
    return ctx.expect(subprocess.CompletedProcess(proc.args, proc.returncode, out, err), Runbook.OK,
                      "queries refused, then restart")


def _kill_worker(ctx: Ctx) -> str:
    pid = ctx.worker_pid()
    os.kill(pid, signal.SIGKILL)
    ctx.resume()  # nothing more comes from the killed worker: what follows is the restarted one's
    wait_for(lambda: ctx.worker_pid() != pid, timeout=30, what="the supervisor to restart the worker")
    return f"worker {pid} SIGKILLed; supervisor restarted it"


def _other(profile: str) -> str:
    return "backup" if profile == "primary" else "primary"


def _kill_front(ctx: Ctx, profile: str) -> None:
    name = f"sim-{profile}"
    ctx.fronts[profile].sent()  # its count just before it dies (a restarted front counts from 0)
    proc = subprocess.run([str(stack.PYTHON), "-m", "feedops.runbook", "--runtime", "native", "stop", "--name", name,
                           "--kill", "--timeout", "5"], cwd=ROOT, env=ctx.env, capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        raise DrillError(f"cannot kill {name}: {proc.stderr[-300:]}")


def _kill_sim(ctx: Ctx) -> str:
    """The active front dies: failover.md's remedy (the other profile), then premarket starts the dead front
    again. (A restarted ctp-sim counts cumulative volume from 0, which a worker that stayed connected would drop
    as backwards_volume; the failover restarts the worker, which accepts another front's volume scale.)"""
    home, other = ctx.profile, _other(ctx.profile)
    _kill_front(ctx, home)
    wait_for(lambda: not ctx.ready(), timeout=30, what="the worker to notice its front is gone")
    seen = ctx.expect(ctx.runbook("failover", "--to", other), Runbook.OK, f"sim-{home} killed; failover --to {other}")
    ctx.profile = other
    ctx.resume()
    return seen + "; " + ctx.expect(ctx.runbook("premarket"), Runbook.OK, f"premarket (starts sim-{home} again)")


def _sink_outage(ctx: Ctx, begin: Callable[[], None], end: Callable[[], None], why: str,
                 until: Callable[[dict], bool] = lambda sink: True) -> int:
    """``begin()`` an outage of the sink, hold it until the worker buffers (and ``until(sink status)``),
    ``end()`` it (always), wait until the buffer is flushed; returns how many ticks were buffered."""
    begin()
    try:
        wait_for(lambda: ctx.worker_status()["sink"]["buffered"] > 0, timeout=30, interval=0.2,
                 what=f"the worker to buffer while {why}")
        wait_for(lambda: until(ctx.worker_status()["sink"]), timeout=30, interval=0.2, what="the sink to time out")
        buffered = ctx.worker_status()["sink"]["buffered"]
    finally:
        ctx.resume()
        end()
    wait_for(lambda: ctx.worker_status()["sink"]["buffered"] == 0, timeout=60, interval=0.2, what="the buffer flushed")
    return buffered


def _kill_redis(ctx: Ctx) -> str:
    buffered = _sink_outage(ctx, ctx.redis.kill, ctx.redis.start, "Redis is down")
    return f"redis SIGKILLed, worker buffered {buffered}, redis restarted (append-only), buffer flushed"


def _pause_redis(ctx: Ctx) -> str:
    # past the sink's socket timeout (an error counted): the batch in flight is the one that must not be added twice
    errors = ctx.worker_status()["sink"].get("errors_total", 0)
    buffered = _sink_outage(ctx, lambda: ctx.redis.signal(signal.SIGSTOP), lambda: ctx.redis.signal(signal.SIGCONT),
                            "Redis is paused", until=lambda sink: sink.get("errors_total", 0) > errors)
    return f"redis SIGSTOPped past the socket timeout, worker buffered {buffered}, SIGCONT, buffer flushed"


def _disk_full(ctx: Ctx) -> str:
    if not ctx.redis.tmpfs:
        raise DrillError("needs root to mount a tmpfs under Redis's data (the drill fills it)")
    ballasts: list[Path] = []
    buffered = _sink_outage(ctx, lambda: ballasts.append(stack.fill_disk(ctx.redis.dir)),
                            lambda: ballasts.pop().unlink(), "Redis cannot write its append-only file")
    return f"Redis's disk full (writes refused), worker buffered {buffered}, disk freed, flushed"


def _concurrent(ctx: Ctx) -> str:
    procs = [ctx.runbook_bg("restart") for _ in range(3)]
    codes = sorted(p.wait(timeout=180) for p in procs)
    for p in procs:
        p.communicate()
    if codes != [Runbook.OK, Runbook.LOCK_HELD, Runbook.LOCK_HELD]:
        raise DrillError(f"three concurrent restarts exited {codes}, expected [0, 65, 65]")
    return f"three concurrent restarts: exits {codes}"


def _stale_lock(ctx: Ctx) -> str:
    dead = subprocess.Popen(["true"])
    dead.wait()
    (Path(ctx.env["FEEDOPS_STATE_DIR"]) / "runbook.lock").write_text(f"pid={dead.pid} mode=premarket started=now\n")
    return "lock of a dead pid; " + ctx.expect(ctx.runbook("restart"), Runbook.OK, "restart")


def _corrupt_ledger(ctx: Ctx) -> str:
    ledger = Path(ctx.env["FEEDOPS_STATE_DIR"]) / "ledger.json"
    saved = ledger.read_bytes()
    pid = ctx.worker_pid()
    ledger.write_text('{"releases": [')
    try:
        seen = ctx.expect(ctx.runbook("rollback"), Runbook.STATE_CORRUPT, "ledger.json corrupt; rollback")
    finally:
        ledger.write_bytes(saved)
    if ctx.worker_pid() != pid:
        raise DrillError("the worker was restarted although the rollback was refused")
    return seen + "; the worker kept running"


def _backup_dies(ctx: Ctx) -> str:
    home, other = ctx.profile, _other(ctx.profile)
    proc = ctx.runbook_bg("failover", "--to", other, "--timeout", "20")
    state = Path(ctx.env["FEEDOPS_STATE_DIR"])
    wait_for(lambda: f'"{other}"' in (state / "active-profile.json").read_text(), timeout=60, interval=0.1,
             what="the failover to switch the profile")
    _kill_front(ctx, other)
    out, err = proc.communicate(timeout=180)
    seen = ctx.expect(subprocess.CompletedProcess(proc.args, proc.returncode, out, err), Runbook.FAILOVER_FAILED,
                      f"sim-{other} killed mid-failover; failover --to {other}")
    seen += "; " + ctx.expect(ctx.runbook("failover", "--to", home), Runbook.OK, f"failover --to {home}")
    return seen + "; " + ctx.expect(ctx.runbook("premarket"), Runbook.OK, f"premarket (starts sim-{other} again)")


def _wrong_secret(ctx: Ctx) -> str:
    wrong = stack.write_secrets(Path(tempfile.mkdtemp(dir=ctx.base, prefix="secrets-wrong-")), TOKEN + "X")
    return ctx.expect(ctx.runbook("rotate", "--secrets-dir", str(wrong), "--timeout", "15"), Runbook.ROTATION_FAILED,
                      "rotate to wrong secrets (previous restored)")


def _rollback_missing(ctx: Ctx) -> str:
    pid = ctx.worker_pid()
    seen = ctx.expect(ctx.runbook("rollback", "--to", "v9.9.9"), Runbook.ROLLBACK_FAILED, "rollback --to v9.9.9")
    if ctx.worker_pid() != pid:
        raise DrillError("the worker was restarted although the rollback was refused")
    return seen + "; the worker kept running"


def _failover_and_back(ctx: Ctx) -> str:
    home, other = ctx.profile, _other(ctx.profile)
    seen = ctx.expect(ctx.runbook("failover", "--to", other), Runbook.OK, f"failover --to {other}")
    return seen + "; " + ctx.expect(ctx.runbook("failover", "--to", home), Runbook.OK, f"failover --to {home}")


#: The instant the matrix runs at unless FEEDOPS_CLOCK_AT says otherwise: a Tuesday's night session (docs/ops/drills.md),
#: where the date quirks are real and every exchange's date is the one a night front sends.
CLOCK_AT = "2026-12-08T21:35:00+08:00"
RECOVERS = "recovers; health OK; nothing acknowledged lost"
DRILLS: tuple[Drill, ...] = (
    Drill("sim:disconnect", "sim", f"worker reconnects and resubscribes; {RECOVERS}",
          _toggle("disconnect", _hold_until("worker.md.disconnected", "the worker to see the disconnect")),
          judge_missed=False),
    Drill("sim:silent", "sim", f"no ticks reach the subscriber; {RECOVERS}; 0 lost",
          _toggle("silent", _hold_quiet(3.0))),
    Drill("sim:refuse_login", "sim", f"login refused (retried by the worker), then logs in; {RECOVERS}",
          _refuse_login, judge_missed=False),
    Drill("sim:flow_control", "sim", f"instrument queries refused and retried; restart exit 0; {RECOVERS}",
          _flow_control, judge_missed=False),
    Drill("sim:dead_instruments", "sim", f"a share never ticks, coverage drops; {RECOVERS}; 0 missed",
          _toggle("dead_instruments", _hold_ticks(500))),
    Drill("sim:replay", "sim", f"replayed ticks dropped by the worker, 0 duplicates at the subscriber; {RECOVERS}",
          _toggle("replay", _hold_status(lambda s: s["ticks_dropped"].get("replay", 0) + s["ticks_dropped"].get(
              "duplicate", 0) > 0, "the worker dropped replayed ticks")),
          judge_missed=False),
    Drill("sim:date_quirks", "sim", f"night-session dates normalised; {RECOVERS}; 0 missed",
          _toggle("date_quirks", _hold_ticks(500))),
    Drill("sim:burst", "sim", f"5x tick rate carried; {RECOVERS}; 0 missed",
          _toggle("burst", _hold_ticks(3000), factor="5")),
    Drill("sim:slow", "sim", f"ticks 2 s late, carried; {RECOVERS}; 0 missed",
          _toggle("slow", _hold_ticks(500))),
    Drill("process:worker-killed", "process", f"supervisor restarts the worker; {RECOVERS}", _kill_worker,
          judge_missed=False),
    Drill("process:sim-killed", "process",
          f"worker not ready; failover to the other profile exit 0; premarket starts the front again, exit 0; {RECOVERS}",
          _kill_sim, judge_missed=False),
    Drill("process:redis-killed", "process", f"worker buffers, flushes to the restarted Redis; {RECOVERS}; 0 missed",
          _kill_redis),
    Drill("process:redis-paused", "process", f"worker buffers past the timeout, no batch twice; {RECOVERS}; 0 missed",
          _pause_redis),
    Drill("process:disk-full", "process", f"Redis refuses writes, worker buffers, flushes; {RECOVERS}; 0 missed",
          _disk_full),
    Drill("runbook:concurrent-run", "runbook", f"one restart exits 0, the others 65 LOCK_HELD; {RECOVERS}", _concurrent,
          judge_missed=False),
    Drill("runbook:stale-lock", "runbook", f"a dead run's lock is taken over, exit 0; {RECOVERS}", _stale_lock,
          judge_missed=False),
    Drill("runbook:corrupt-state", "runbook", f"corrupt ledger.json: exit 73, nothing stopped; {RECOVERS}; 0 missed",
          _corrupt_ledger),
    Drill("runbook:backup-dies-in-failover", "runbook",
          f"the other front killed mid-failover: exit 70; failover back exit 0; {RECOVERS}", _backup_dies,
          judge_missed=False),
    Drill("runbook:wrong-rotated-secret", "runbook", f"rotate exit 75, previous secrets restored; {RECOVERS}",
          _wrong_secret, judge_missed=False),
    Drill("runbook:rollback-missing-release", "runbook",
          f"exit 71, nothing stopped; {RECOVERS}; 0 missed", _rollback_missing),
    Drill("runbook:failover-and-back", "runbook", f"failover to the other profile and back, exit 0 each; {RECOVERS}",
          _failover_and_back, judge_missed=False),
)


# ------------------------------------------------------------------------------------------ runner
def repair(ctx: Ctx) -> str:
    """Bring back what an earlier failed drill left broken (Redis down, the worker not ready), so that one
    failure does not fail every drill after it; says what it did ("" when nothing was needed)."""
    done = []
    if ctx.redis.proc is None or ctx.redis.proc.poll() is not None:
        ctx.redis.start()
        done.append("Redis restarted")
    if not ctx.ready():
        proc = ctx.runbook("failover", "--to", ctx.profile)
        done.append(f"failover --to {ctx.profile} exit {proc.returncode}")
    return f"(before it: {', '.join(done)}) " if done else ""


def run_drill(ctx: Ctx, drill: Drill) -> Row:
    row = Row(drill.name, drill.expected)
    notes: list[str] = []
    repaired = ""
    try:
        repaired = repair(ctx)
        sent0, received0, dups0 = ctx.quiesce(f"{drill.name} settle-before")
        ctx.phase, ctx.resumed = drill.name, False
        ctx.mark_outage(drill.name)
        row.observed = drill.act(ctx)
        ctx.resume()  # the act ends with the fault cleared
        wait_for(ctx.ready, timeout=RECOVERY_TIMEOUT, interval=0.1, what=f"the worker ready on {ctx.profile}")
        outage = ctx.consumer.wait_recovered(drill.name, timeout=RECOVERY_TIMEOUT)
        if outage is None:
            seen = ctx.consumer.report(instruments=False)["outages"].get(drill.name, {})
            raise DrillError(f"the consumer did not see coverage back within {RECOVERY_TIMEOUT:.0f}s ({seen.get('back')} "
                             f"of {seen.get('needed')} needed instruments back; resume marked: {seen.get('resume')})")
        row.recovery, row.missed = outage["recovery_seconds"], outage["ticks_missed"]
        started = time.monotonic()
        while (health := ctx.runbook("health")).returncode != 0:
            if time.monotonic() > started + HEALTH_TIMEOUT:
                raise DrillError(f"health exit {health.returncode}: " + (health.stdout.strip().splitlines() or [""])[0][:160])
            time.sleep(2)  # the health check's own pace
        waited = time.monotonic() - started
        notes.append("health OK" + (f" after {waited:.0f} s" if waited >= 2 else ""))
        sent1, received1, dups1 = ctx.quiesce(f"{drill.name} settle-after")
        row.lost = lost = (sent1 - sent0) - (received1 - received0)
        row.duplicates = dups1 - dups0
        if ctx.pending:
            notes.append(f"{ctx.pending} delivered to the consumer, its XACK not yet accepted")
        problems = []
        if row.duplicates:
            problems.append(f"{row.duplicates} duplicates")
        if drill.judge_missed and lost != 0:
            problems.append(f"{lost} ticks sent and never at the consumer")
        row.passed = not problems
        notes.extend(problems)
    except (DrillError, TimeoutError, OSError, subprocess.SubprocessError, KeyError, ValueError, RedisError) as exc:
        notes.append(f"FAILED: {exc}")
    row.observed = repaired + "; ".join(filter(None, [row.observed, *notes]))
    return row


def table(rows: list[Row]) -> str:
    def cell(value, fmt="{}"):
        return "-" if value is None else fmt.format(value)

    lines = ["| fault | expected | observed | recovery | ticks missed (consumer / sent-got) | duplicates | result |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r.fault} | {r.expected} | {r.observed} | {cell(r.recovery, '{:.2f} s')} | "
                     f"{cell(r.missed)} / {cell(r.lost)} | {cell(r.duplicates)} | {'pass' if r.passed else 'FAIL'} |")
    passed = sum(r.passed for r in rows)
    lines.append(f"\ndrills: {passed}/{len(rows)} passed")
    return "\n".join(lines)


def select(only: str | None) -> list[Drill]:
    if not only:
        return list(DRILLS)
    names = [n.strip() for n in only.split(",") if n.strip()]
    by_name = {d.name: d for d in DRILLS}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise SystemExit(f"drills: unknown drill {', '.join(unknown)}; use --list")
    return [by_name[n] for n in names]


def run(drills: list[Drill], base: Path, instruments: int = 200) -> list[Row]:
    redis = Redis(base)
    env = stack.environ(base / "stack", TOKEN, instruments=instruments, sink=redis.url, monitoring=False)
    consumer = ReferenceConsumer(open_source(redis.url, prefix=REDIS_PREFIX, group="drills", start="all"))
    consumer.start()
    ctx = Ctx(base, env, redis, {p: Front(stack.sim_control_url(env, p)) for p in stack.PROFILES}, consumer)
    try:
        start = ctx.runbook("premarket")
        if start.returncode != 0:
            raise SystemExit(f"drills: premarket exit {start.returncode}:\n{start.stdout[-2000:]}{start.stderr[-2000:]}")
        rows = []
        for drill in drills:
            row = run_drill(ctx, drill)
            print(f"drill {row.fault}: {'pass' if row.passed else 'FAIL'} ({row.observed})", file=sys.stderr,
                  flush=True)
            rows.append(row)
        return rows
    finally:
        stack.stop(env)
        try:
            consumer.stop()
        except RedisError:
            pass  # a Redis a drill left down: the table says so
        redis.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m feedops.drills",
                                description="the fault matrix: every fault on a native dev stack with a subscriber")
    p.add_argument("--only", help="comma-separated drill names (default: all; --list names them)")
    p.add_argument("--list", action="store_true", help="list the drills and what each expects")
    p.add_argument("--instruments", type=int, default=200, help="instruments per ctp-sim front (default 200)")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory (logs, state)")
    args = p.parse_args(argv)
    if args.list:
        for d in DRILLS:
            print(f"{d.name:36} {d.expected}")
        return 0
    drills = select(args.only)
    if not os.environ.get(clock.ENV_VAR):  # time is an input: the same instant whenever the matrix runs
        clock.pin(CLOCK_AT)
    print(f"drills: the clock reads {clock.now(BEIJING):%Y-%m-%d %H:%M} Beijing ({clock.ENV_VAR})", file=sys.stderr)
    log.configure(level="warning")  # the consumer's and the runbook helpers' info lines: the table says it
    base = Path(tempfile.mkdtemp(prefix="feedops-drills-"))
    try:
        rows = run(drills, base, args.instruments)
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
        else:
            print(f"drills: kept {base}", file=sys.stderr)
    print(table(rows))
    return 0 if all(r.passed for r in rows) else 1
