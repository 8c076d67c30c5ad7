"""The fault matrix (``make drills``): every fault on a native dev stack with a subscriber attached.

One stack serves the whole run: two ctp-sim fronts and the worker, started by the runbook's
``premarket`` (monitoring off, it is not what a drill measures), writing to a Redis of the
matrix's own (append-only, fsynced per write, its data on a 256 MB tmpfs when the host lets
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
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from redis.exceptions import RedisError

from .. import clock, log
from ..calendar import BEIJING
from ..consumer import ReferenceConsumer, open_source
from ..polling import wait_for
from . import stack
from .cases import CLOCK_AT, DRILLS, Drill
from .context import HEALTH_TIMEOUT, RECOVERY_TIMEOUT, REDIS_PREFIX, TOKEN, Ctx, DrillError, Front, Redis


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
