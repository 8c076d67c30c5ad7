"""The drills of the fault matrix: one act per fault, and the table of them (:data:`DRILLS`).

Each act injects its fault on the stack of a :class:`~.context.Ctx`, runs what the runbook
says where the runbook is the fault or the fix, and returns what it observed; the runner
(:mod:`.matrix`) measures the recovery, the health and the ticks around it.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

from .. import clock
from ..exitcodes import Runbook
from ..paths import ROOT
from ..polling import wait_for
from . import stack
from .context import TOKEN, Ctx, DrillError


@dataclasses.dataclass(frozen=True)
class Drill:
    name: str
    kind: str  # sim | process | runbook
    expected: str
    act: Callable[[Ctx], str]  # injects, runs what the runbook says, returns what it observed
    judge_missed: bool = True  # False: a dropped connection or killed process loses what was in flight



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
