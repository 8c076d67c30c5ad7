"""``start_live_env.sh drill`` measured from the subscriber's side (docs/ops/procedures/failover.md).

The runbook attaches the reference consumer (:mod:`feedops.consumer`) as a native
component (``consumer-drill``, its own consumer group ``drill-<unix time>``), marks each
outage on it, and ends with a JSON report::

    attach            start the consumer on the feed's sink; wait until it follows the rhythm of
                      ceil(coverage x subscribed) instruments; record the recovery target
    outage PHASE      mark the start of outage PHASE (failover: SIGKILL the home front), stop the
                      worker(s), mark the new session's start, start the worker(s) on the profile
                      the runbook just made active: one step, so the runbook's own start-up costs
                      (a Python helper per step) are not counted as the feed's recovery
    wait PHASE        wait (bounded) until the consumer sees coverage back above the threshold
    report [--rc N]   the report: print, write <state>/drill/last-report.json, push (job
                      feedops_drill), stop the consumer, drop its group; exit N when given
                      (the drill already failed), else 0 or DRILL_FAILED

Recovery target (seconds) = instruments / FEEDOPS_SUBSCRIBE_BATCH_SIZE x
FEEDOPS_SUBSCRIBE_BATCH_INTERVAL_SECONDS + 5. The drill fails (DRILL_FAILED, 77) when a
phase did not recover within it, or the consumer saw a duplicate or an out-of-order tick
at any time, or a gap outside the outage windows.
"""

from __future__ import annotations

import json
import math
import signal
import socket
import sys
import time
import urllib.request
from typing import Any

from .. import metric_names as mn
from ..exitcodes import Runbook
from ..log import get_logger
from . import procs
from .config import RunbookContext
from .state import StateError, atomic_write_json, read_json

log = get_logger("runbook")
NAME = "consumer-drill"
TARGET_SLACK_SECONDS = 5.0
PHASES = ("failover", "failback")


class DrillError(Exception):
    def __init__(self, code: Runbook, message: str):
        super().__init__(message)
        self.code = code


def recovery_target(instruments: int, batch_size: int, batch_pause: float) -> float:
    """The re-subscription time plus 5 s: instruments / batch size x pause + 5."""
    return round(instruments / batch_size * batch_pause + TARGET_SLACK_SECONDS, 3)


def verdict(consumer_report: dict[str, Any], target: float, phases: tuple[str, ...] = PHASES) -> list[str]:
    """Why the drill fails from the subscriber's side (empty: it passed)."""
    reasons = []
    outages = consumer_report.get("outages", {})
    for phase in phases:
        summary = outages.get(phase)
        if summary is None:
            reasons.append(f"{phase}: not measured (no outage mark)")
        elif not summary["recovered"]:
            reasons.append(f"{phase}: coverage did not come back ({summary['back']} of {summary['instruments']} "
                           f"instruments, {summary['needed']} needed)")
        elif summary["recovery_seconds"] > target:
            reasons.append(f"{phase}: recovery {summary['recovery_seconds']} s is beyond the target {target} s")
    totals = consumer_report["totals"]
    if totals["duplicates"]:
        reasons.append(f"the consumer saw {totals['duplicates']} duplicate tick(s)")
    if totals["out_of_order"]:
        reasons.append(f"the consumer saw {totals['out_of_order']} out-of-order tick(s)")
    if consumer_report["gaps_outside_outages"]:
        reasons.append(f"the consumer saw {consumer_report['gaps_outside_outages']} gap(s) outside the outage windows")
    return reasons


def build_report(consumer_report: dict[str, Any] | None, attach: dict[str, Any], exit_code: int | None,
                 phases: tuple[str, ...] = PHASES) -> dict[str, Any]:
    """The drill's JSON report; ``exit_code`` None means: judge it (0 or DRILL_FAILED)."""
    target = attach.get("recovery_target_seconds")
    if consumer_report is None:
        reasons = ["not measured: the reference consumer was not attached"] if attach.get("attached") else []
        code = Runbook.OK if exit_code is None else exit_code
        return {"drill": "failover", "measured": False, "exit_code": int(code), "outcome": _outcome(code),
                "reasons": reasons, "recovery_target_seconds": target, "profiles": attach.get("profiles")}
    reasons = verdict(consumer_report, target, phases)
    code = exit_code if exit_code is not None else (Runbook.DRILL_FAILED if reasons else Runbook.OK)
    totals = consumer_report["totals"]
    outages = consumer_report.get("outages", {})
    return {
        "drill": "failover", "measured": True, "exit_code": int(code), "outcome": _outcome(code), "reasons": reasons,
        "profiles": attach.get("profiles"),
        "recovery_target_seconds": target,
        "target_basis": attach.get("target_basis"),
        "phases": {phase: outages.get(phase) for phase in phases},
        "recovery_seconds": {phase: (outages.get(phase) or {}).get("recovery_seconds") for phase in phases},
        "ticks_missed": {phase: (outages.get(phase) or {}).get("ticks_missed") for phase in phases},
        "duplicates": totals["duplicates"], "out_of_order": totals["out_of_order"],
        "gaps": totals["gaps"], "gaps_outside_outages": consumer_report["gaps_outside_outages"],
        "consumer_lag_seconds": totals["lag_seconds"]["receive"],
        "consumer": {"source": consumer_report["source"], "group": consumer_report["group"], "ticks": totals["ticks"],
                     "instruments": totals["instruments"], "acknowledged": totals["acknowledged"],
                     "pending": totals["pending"], "source_errors": consumer_report["source_errors"]},
        "gaps_seen": [g for g in consumer_report.get("gaps", []) if g["in_outage"] is None][:20],
    }


def _outcome(code: int) -> str:
    try:
        return Runbook(code).name
    except ValueError:
        return "UNKNOWN"


def build_registry(report: dict[str, Any], now: float):
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry()
    mn.DRILL_EXIT_CODE.create(registry).set(report["exit_code"])
    mn.DRILL_LAST_RUN.create(registry).set(now)
    if report.get("recovery_target_seconds") is not None:
        mn.DRILL_RECOVERY_TARGET.create(registry).set(report["recovery_target_seconds"])
    if not report["measured"]:
        return registry
    recovery, missed = mn.DRILL_RECOVERY.create(registry), mn.DRILL_TICKS_MISSED.create(registry)
    for phase, seconds in report["recovery_seconds"].items():
        if seconds is not None:
            recovery.labels(phase=phase).set(seconds)
        if report["ticks_missed"].get(phase) is not None:
            missed.labels(phase=phase).set(report["ticks_missed"][phase])
    mn.DRILL_DUPLICATES.create(registry).set(report["duplicates"])
    mn.DRILL_OUT_OF_ORDER.create(registry).set(report["out_of_order"])
    mn.DRILL_GAPS_OUTSIDE.create(registry).set(report["gaps_outside_outages"])
    lag = mn.DRILL_CONSUMER_LAG.create(registry)
    for statistic in ("p50", "p99", "max"):
        value = report["consumer_lag_seconds"].get(statistic)
        if value is not None:
            lag.labels(statistic=statistic).set(value)
    return registry


# ---------------------------------------------------------------- the consumer component
def _attach_file(ctx: RunbookContext):
    return ctx.state.path("drill", "attach.json")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _http(url: str, method: str = "GET", timeout: float = 5.0) -> dict[str, Any]:
    request = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    with urllib.request.urlopen(request, timeout=timeout) as resp:
        return json.loads(resp.read())


def _subscribed(ctx: RunbookContext) -> int:
    """Instruments the worker(s) subscribed (their /status), the basis of the recovery target."""
    total = 0
    for url in ctx.feed.worker_url_list:
        status = _http(f"{url}/status")
        total += int(status["instruments"]["subscribed"])
    return total


def attach(ctx: RunbookContext, timeout: float, python: str = sys.executable) -> dict[str, Any]:
    """Start the consumer and wait until it follows the feed; record what the report needs."""
    feed = ctx.feed
    target_basis = {"FEEDOPS_SUBSCRIBE_BATCH_SIZE": feed.subscribe_batch_size,
                    "FEEDOPS_SUBSCRIBE_BATCH_INTERVAL_SECONDS": feed.subscribe_batch_interval_seconds}
    if ctx.runtime != "native":
        record = {"attached": False, "reason": "the reference consumer attaches on the native runtime only"}
        atomic_write_json(_attach_file(ctx), record)
        print(f"drill: consumer not attached ({record['reason']}); the drill is not measured from the subscriber's side")
        return record
    try:
        instruments = _subscribed(ctx)
    except (OSError, KeyError, ValueError) as exc:
        raise DrillError(Runbook.NOT_READY, f"cannot read the subscribed instruments from the worker(s) ({exc})") from None
    target_basis["instruments"] = instruments
    port, group = _free_port(), f"drill-{int(time.time())}"
    report_file = ctx.state.path("drill", "consumer-report.json")
    argv = [python, "-m", "feedops.consumer", "--env", ctx.env, "--group", group, "--listen", f"127.0.0.1:{port}",
            "--report-file", str(report_file), "--log-format", "json", "--start", "new"]
    table = procs.ProcessTable(ctx)
    table.stop(NAME, 10)  # one left by an interrupted drill
    comp = procs.Component(NAME, "consumer", argv, ("127.0.0.1", port))
    table.start(comp)
    record = {"attached": True, "url": f"http://127.0.0.1:{port}", "group": group, "source": feed.sink_url,
              "prefix": feed.redis_stream_prefix,
              "report_file": str(report_file), "recovery_target_seconds": recovery_target(
                  instruments, feed.subscribe_batch_size, feed.subscribe_batch_interval_seconds),
              "target_basis": target_basis, "profiles": None, "ts": time.time()}
    atomic_write_json(_attach_file(ctx), record)
    deadline = time.monotonic() + timeout
    reason = table.wait_listening(comp, deadline)
    if reason:
        raise DrillError(Runbook.START_FAILED, f"the reference consumer did not start: {reason}")
    needed = math.ceil(feed.coverage_crit_ratio * instruments)
    while True:
        report = _http(f"{record['url']}/report?instruments=0")
        following = report["totals"]["instruments_in_rhythm"]
        if following >= needed:
            break
        if time.monotonic() >= deadline:
            raise DrillError(Runbook.NOT_READY, f"the reference consumer follows {following} instruments, {needed} needed "
                                                f"(coverage {feed.coverage_crit_ratio} of {instruments}); see "
                                                f"{table.log_file(NAME)}")
        time.sleep(0.2)
    print(f"drill: consumer attached (group {group}, {following} of {instruments} instruments followed; "
          f"recovery target {record['recovery_target_seconds']} s)")
    return record


def _attached(ctx: RunbookContext) -> dict[str, Any]:
    return read_json(_attach_file(ctx)) or {}


def outage(ctx: RunbookContext, phase: str, kill_front: str | None, timeout: float) -> None:
    """One step, so that the runbook's own start-up costs stay out of the measure: mark the outage's
    start, kill the front (failover), stop the worker(s) (drain and flush), mark the new session's
    start, start the worker(s) on the active profile (set before this step)."""
    from argparse import Namespace

    from .native_steps import cmd_start_workers, cmd_stop
    from .step import StepFailed

    record = _attached(ctx)
    if record.get("attached"):
        at = _http(f"{record['url']}/outage?phase={phase}&event=start", "POST")["at"]
        print(f"drill: outage {phase} starts at {at:.3f}")
    table = procs.ProcessTable(ctx)
    if kill_front:
        table.stop(f"sim-{kill_front}", 5, signal.SIGKILL)
        print(f"drill: killed the {kill_front} front")
    try:
        cmd_stop(Namespace(name=None, kind="worker", kill=False, timeout=timeout), ctx)
    except StepFailed as exc:  # as the runbook's stop step: a worker that had to be killed does not stop the switch
        log.warning("runbook.stop.slow", f"the worker(s) did not stop cleanly ({exc}); continuing")
    if record.get("attached"):
        at = _http(f"{record['url']}/outage?phase={phase}&event=resume", "POST")["at"]
        print(f"drill: outage {phase}: the new session starts at {at:.3f}")
    cmd_start_workers(Namespace(), ctx)


def wait(ctx: RunbookContext, phase: str, timeout: float) -> None:
    """Wait until the consumer sees coverage back (bounded); a timeout is left to the report's verdict."""
    record = _attached(ctx)
    if not record.get("attached"):
        return
    deadline = time.monotonic() + timeout
    while True:
        summary = _http(f"{record['url']}/report?instruments=0")["outages"].get(phase) or {}
        if summary.get("recovered"):
            print(f"drill: {phase} recovered in {summary['recovery_seconds']} s as the consumer sees it "
                  f"({summary['back']} of {summary['instruments']} instruments back)")
            return
        if time.monotonic() >= deadline:
            log.warning("runbook.drill.not_recovered", f"the consumer does not see {phase} recovered after {timeout:g}s "
                        f"({summary.get('back')} of {summary.get('instruments')} instruments back)", phase=phase)
            return
        time.sleep(0.2)


def report(ctx: RunbookContext, exit_code: int | None, profiles: str | None) -> int:
    """Build, print, write and push the drill report; stop the consumer; return the drill's exit code."""
    record = _attached(ctx)
    if profiles:
        record["profiles"] = profiles
    consumer_report = None
    if record.get("attached"):
        try:
            consumer_report = _http(f"{record['url']}/report?instruments=0", timeout=10)
        except (OSError, ValueError) as exc:
            log.error("runbook.drill.consumer_lost", f"cannot read the reference consumer's report ({exc}); see "
                      f"{procs.ProcessTable(ctx).log_file(NAME)}")
    body = build_report(consumer_report, record, exit_code)
    if consumer_report is None and record.get("attached") and exit_code is None:
        body["exit_code"], body["outcome"] = int(Runbook.DRILL_FAILED), Runbook.DRILL_FAILED.name
    body["ts"] = time.time()
    procs.ProcessTable(ctx).stop(NAME, 10)
    if record.get("attached") and record["source"].startswith("redis://"):
        _drop_group(record)
    atomic_write_json(ctx.state.path("drill", "last-report.json"), body)
    sys.stdout.write(json.dumps(body, indent=1) + "\n")
    _print_summary(body)
    url = ctx.pushgateway_url()
    if url:
        from ..push import push

        error = push(url, mn.PUSH_JOB_DRILL, build_registry(body, body["ts"]),
                     grouping_key={"instance": socket.gethostname(), "env": ctx.env})
        if error:
            log.warning("runbook.push.failed", error, mode="drill")
    _attach_file(ctx).unlink(missing_ok=True)
    return body["exit_code"]


def _print_summary(body: dict[str, Any]) -> None:
    if not body["measured"]:
        print(f"drill: {body['outcome']} (not measured from the subscriber's side)")
        return
    rec, missed = body["recovery_seconds"], body["ticks_missed"]
    lag = body["consumer_lag_seconds"]
    print(f"drill: recovery failover {rec.get('failover')} s, failback {rec.get('failback')} s "
          f"(target {body['recovery_target_seconds']} s); ticks missed failover {missed.get('failover')}, "
          f"failback {missed.get('failback')}; duplicates {body['duplicates']}, out of order {body['out_of_order']}, "
          f"gaps outside outages {body['gaps_outside_outages']}; consumer lag p50 {lag['p50']} s, p99 {lag['p99']} s, "
          f"max {lag['max']} s")
    for reason in body["reasons"]:
        print(f"drill: FAILED: {reason}")


def status_lines(ctx: RunbookContext) -> list[str]:
    """``make status``: the last drill's figures, from <state>/drill/last-report.json."""
    path = ctx.state.path("drill", "last-report.json")
    try:
        body = read_json(path)
    except StateError as exc:
        return [f"  last drill     unreadable: {exc}"]
    if not body:
        return []
    if not body.get("measured"):
        return [f"  last drill     {body.get('outcome')} (not measured from the subscriber's side)"]
    rec, missed, lag = body["recovery_seconds"], body["ticks_missed"], body["consumer_lag_seconds"]
    lines = [f"  last drill     {body['outcome']} exit {body['exit_code']}: recovery failover {rec.get('failover')} s, "
             f"failback {rec.get('failback')} s (target {body['recovery_target_seconds']} s); ticks missed "
             f"{missed.get('failover')} + {missed.get('failback')}; duplicates {body['duplicates']}, out of order "
             f"{body['out_of_order']}, gaps outside outages {body['gaps_outside_outages']}; consumer lag p99 "
             f"{lag.get('p99')} s (report {path})"]
    lines.extend(f"    {reason}" for reason in body.get("reasons", []))
    return lines


def _drop_group(record: dict[str, Any]) -> None:
    """Remove the drill's consumer group from every stream (it would hold its position forever)."""
    import redis

    try:
        client = redis.Redis.from_url(record["source"], socket_timeout=2.0, socket_connect_timeout=1.0)
        for key in client.scan_iter(match=f"{record['prefix']}:*", count=1000, _type="STREAM"):
            try:
                client.xgroup_destroy(key, record["group"])
            except redis.exceptions.ResponseError:
                pass
        client.close()
    except (redis.exceptions.RedisError, ValueError) as exc:
        log.warning("runbook.drill.group_left", f"cannot remove the consumer group {record['group']} ({exc}); "
                    f"remove it by hand: XGROUP DESTROY <stream> {record['group']}")


# ---------------------------------------------------------------- CLI (python -m feedops.runbook drill ...)
def add_parser(sub) -> None:
    p = sub.add_parser("drill", help="the failover drill's subscriber-side measurement (reference consumer)")
    steps = p.add_subparsers(dest="drill_step", required=True)
    s = steps.add_parser("attach")
    s.add_argument("--timeout", type=float, default=60.0)
    s = steps.add_parser("outage", help="mark, [kill the front], stop the worker(s), mark, start them on the active profile")
    s.add_argument("phase", choices=PHASES)
    s.add_argument("--kill-front", choices=("primary", "backup"))
    s.add_argument("--timeout", type=float, default=60.0, help="for the worker(s) to stop")
    s = steps.add_parser("wait")
    s.add_argument("phase", choices=PHASES)
    s.add_argument("--timeout", type=float, default=60.0)
    s = steps.add_parser("report")
    s.add_argument("--rc", type=int, help="the drill already failed with this code: report it as such")
    s.add_argument("--profiles", help="e.g. primary->backup->primary")
    p.set_defaults(func=cmd_drill)


def cmd_drill(args, ctx: RunbookContext) -> int:
    from .step import StepFailed

    try:
        if args.drill_step == "attach":
            attach(ctx, args.timeout)
        elif args.drill_step == "outage":
            outage(ctx, args.phase, args.kill_front, args.timeout)
        elif args.drill_step == "wait":
            wait(ctx, args.phase, args.timeout)
        else:
            return report(ctx, args.rc, args.profiles)
    except DrillError as exc:
        raise StepFailed(exc.code, str(exc)) from None
    except OSError as exc:
        raise StepFailed(Runbook.DRILL_FAILED, f"the reference consumer does not answer ({exc}); see "
                                               f"{procs.ProcessTable(ctx).log_file(NAME)}") from None
    return Runbook.OK
