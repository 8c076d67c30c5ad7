"""``python -m feedops.runbook SUBCOMMAND``: the steps start_live_env.sh delegates to Python.

Every subcommand exits with a :class:`feedops.exitcodes.Runbook` code; reports go to
stdout, log lines (feedops.log) to stderr.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from collections.abc import Callable

from .. import log as feedlog
from ..exitcodes import Runbook, Worker
from ..settings import ConfigError
from . import procs, ready
from .config import RunbookContext, snapshot_values
from .state import StateError, atomic_write_json

log = feedlog.get_logger("runbook")


class StepFailed(Exception):
    def __init__(self, code: Runbook, message: str):
        super().__init__(message)
        self.code = code


def _ctx(args: argparse.Namespace) -> RunbookContext:
    ctx = RunbookContext.load(args.env, args.runtime, lenient=getattr(args, "lenient_state", False))
    feedlog.configure(level=ctx.feed.log_level, fmt=ctx.feed.log_format)
    return ctx


# ---------------------------------------------------------------- subcommands
def cmd_config(args, ctx: RunbookContext) -> int:
    if not args.lenient_state:  # every state file is read before anything starts or is overwritten
        problems = ctx.state.check()
        if problems:
            for problem in problems:
                log.error("runbook.state.corrupt", problem)
            raise StepFailed(Runbook.STATE_CORRUPT, f"{len(problems)} corrupt state file(s) in {ctx.state.root} "
                                                    "(above); nothing was started or changed")
    if args.write_release_env and ctx.runtime == "compose":
        write_release_env(ctx)
    for key, value in ctx.shell_values().items():
        print(f"{key}={value}")
    for key, value in ctx.child_overrides().items():
        print(f"ENV.{key}={value}")
    return Runbook.OK


def write_release_env(ctx: RunbookContext) -> None:
    """<state>/release.env: the pin as an env file docker compose hands to the containers (no secrets)."""
    values = (ctx.pin or {}).get("values", {})
    target = ctx.state.path("release.env")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(".release.env.tmp")
    tmp.write_text("".join(f"{k}={v}\n" for k, v in sorted(values.items())), encoding="utf-8")
    os.replace(tmp, target)


def _refuse_foreign_listener(table: procs.ProcessTable, comps: list[procs.Component], setting: str) -> None:
    """A port already taken by a process the runbook did not start would pass for the component."""
    for comp in comps:
        if not table.running_pid(comp.name) and procs.port_open(comp.address):
            host, port = comp.address
            raise StepFailed(Runbook.START_FAILED, f"{host}:{port} ({comp.name}) is already in use by a process the runbook "
                                                   f"did not start; stop it (ss -ltnp 'sport = :{port}') or change {setting}")


def cmd_start_stack(args, ctx: RunbookContext) -> int:
    table = procs.ProcessTable(ctx)
    comps = procs.sim_components(ctx, sys.executable)
    _refuse_foreign_listener(table, comps, "the profile's CTP_*_MD_FRONTS")
    started = {comp.name: table.start(comp)[1] for comp in comps}
    deadline = time.monotonic() + args.timeout
    for comp in comps:
        reason = table.wait_listening(comp, deadline)
        if reason:
            raise StepFailed(Runbook.START_FAILED, reason)
        verb = "started" if started[comp.name] else "running"
        print(f"{verb}: {comp.name} listening on {comp.address[0]}:{comp.address[1]}")
    if not comps:
        print("started: nothing to start for the stack (no local ctp-sim in this environment)")
    return Runbook.OK


def cmd_start_monitoring(args, ctx: RunbookContext) -> int:
    """Start the enabled monitoring components (native). They watch the feed but are not part of it:
    one that is not installed or does not start is a warning with the fix, and the run goes on."""
    from . import monitoring

    table = procs.ProcessTable(ctx)
    deadline = time.monotonic() + args.timeout
    plan = monitoring.plan(ctx)
    if not plan.components and not plan.missing and not plan.elsewhere:
        print("started: no monitoring enabled in this environment (FEEDOPS_PROMETHEUS_ENABLED, ...)")
    if plan.missing:
        log.warning("runbook.monitoring.missing", f"not installed: {', '.join(plan.missing)}; the feed runs without them "
                    f"(install: {monitoring.INSTALL_HINT})", packages=plan.missing)
        print(f"not started: {', '.join(plan.missing)} (not installed: {monitoring.INSTALL_HINT})")
    for where in plan.elsewhere:
        print(f"not started: {where} (not on this host)")
    ours = [c for c in plan.components if table.running_pid(c.name) or not procs.port_open(c.address)]
    for comp in plan.components:
        if comp not in ours:
            host, port = comp.address
            log.warning("runbook.monitoring.port_taken", f"{host}:{port} ({comp.name}) is in use by a process the runbook did "
                        f"not start; {comp.name} is not started (ss -ltnp 'sport = :{port}')", component_name=comp.name)
            print(f"not started: {comp.name} ({host}:{port} is in use by another process)")
    monitoring.write_configs(ctx, ours)
    started = {comp.name: table.start(comp)[1] for comp in ours}
    for comp in ours:
        reason = table.wait_listening(comp, deadline)
        if reason:
            log.warning("runbook.monitoring.failed", f"{reason}; the feed runs without it", component_name=comp.name)
            table.stop(comp.name, 5)
            print(f"not started: {comp.name} ({reason})")
            continue
        verb = "started" if started[comp.name] else "running"
        if not started[comp.name] and comp.name in monitoring.RELOADABLE:
            reason = monitoring.reload(comp)  # it runs already: make it read the config just rendered
            verb = f"running ({'reloaded' if reason is None else f'reload failed: {reason}'})"
        print(f"{verb}: {comp.name} listening on {comp.address[0]}:{comp.address[1]}")
    return Runbook.OK


def cmd_start_workers(args, ctx: RunbookContext) -> int:
    table = procs.ProcessTable(ctx)
    comps = procs.worker_components(ctx, sys.executable)
    _refuse_foreign_listener(table, comps, "FEEDOPS_WORKER_URLS")
    for comp in comps:
        pid, started = table.start(comp)
        verb = "started" if started else "running"
        print(f"{verb}: {comp.name} (pid {pid}) profile {ctx.profile} on {comp.address[0]}:{comp.address[1]}")
    return Runbook.OK


def cmd_wait_ready(args, ctx: RunbookContext) -> int:
    urls = ctx.feed.worker_url_list
    alive: Callable[[int], str | None] | None = None
    if ctx.runtime == "native":
        table = procs.ProcessTable(ctx)

        def alive(index: int) -> str | None:
            name = f"worker-{index}"
            if table.running_pid(name):
                return None
            return f"{name} exited; log {table.log_file(name)}: {procs.tail(table.log_file(name))}"
    ok, summary = ready.wait_ready(urls, args.timeout, sys.stdout, expect_profile=args.expect_profile, alive=alive)
    if not ok:
        code = Runbook.START_FAILED if "exited" in summary and alive else Runbook.NOT_READY
        raise StepFailed(code, summary)
    print(f"ready: {summary}")
    return Runbook.OK


def cmd_stop(args, ctx: RunbookContext) -> int:
    table = procs.ProcessTable(ctx)
    names = [args.name] if args.name else [n for n in table.names() if args.kind == "all" or n.startswith(f"{args.kind}-")]
    names.sort(key=lambda n: not n.startswith("worker-"))  # workers drain before the fronts go away
    sig = signal.SIGKILL if args.kill else signal.SIGTERM
    offsets = {n: table.log_size(n) for n in names}
    stubborn, corrupt, unrecorded = [], [], set()
    for name in names:
        try:
            graceful = table.stop(name, args.timeout, sig)
        except StateError as exc:  # the pid file cannot be trusted: find the component by command line and port
            log.error("runbook.state.corrupt", str(exc), component_name=name)
            pids = table.stop_unrecorded(name, _addresses(ctx).get(name), args.timeout)
            found = f"stopped pid(s) {', '.join(map(str, pids))} found by command line and port" if pids \
                else "nothing of it was running (by command line and port)"
            print(f"stopped: {name} ({found}; its pid file {table.pid_file(name)} is corrupt)")
            corrupt.append(f"{table.pid_file(name)} ({found})")
            unrecorded.add(name)
            continue
        if not graceful:
            stubborn.append(name)
    for name in (n for n in names if n not in unrecorded):
        lost = table.lost_ticks_since(name, offsets[name]) if name.startswith("worker-") else None
        if lost is None:
            print(f"stopped: {name}")
            continue
        print(f"stopped: {name} (exit {int(Worker.TICKS_LOST)} TICKS_LOST: {lost['lost']} ticks discarded)")
        log.error("runbook.worker.ticks_lost", f"{name} stopped having discarded {lost['lost']} received ticks "
                  f"(worker exit {int(Worker.TICKS_LOST)}, TICKS_LOST): they are not in the sink; see "
                  f"{table.log_file(name)} (worker.ticks.lost)", component_name=name, lost=lost["lost"],
                  worker_exit_code=int(Worker.TICKS_LOST))
    if corrupt:
        raise StepFailed(Runbook.STATE_CORRUPT, f"corrupt pid file(s): {'; '.join(corrupt)}; check that nothing of "
                                                "them runs (make status), then remove the file(s) and re-run"
                                                + (f"; also {', '.join(stubborn)} had to be killed" if stubborn else ""))
    if stubborn:
        raise StepFailed(Runbook.SHUTDOWN_FAILED, f"{', '.join(stubborn)} did not stop within {args.timeout:g}s "
                                                  f"and had to be killed (check their logs in {table.log_dir})")
    return Runbook.OK


def _addresses(ctx: RunbookContext) -> dict[str, tuple[str, int]]:
    """Where each native component of this configuration listens (by name), as far as it can be told."""
    from . import monitoring

    comps: list[procs.Component] = []
    for build in (lambda: procs.sim_components(ctx, sys.executable), lambda: procs.worker_components(ctx, sys.executable),
                  lambda: monitoring.plan(ctx).components):
        try:
            comps += build()
        except (ValueError, OSError, StateError) as exc:
            log.warning("runbook.stop.addresses", f"cannot tell some components' addresses ({exc}); they are found "
                        "by command line only")
    return {c.name: c.address for c in comps}


def cmd_mark_good(args, ctx: RunbookContext) -> int:
    """Record the release that just passed its checks (feedops.runbook.releases): once per distinct release."""
    from . import releases

    rel = releases.current(ctx)
    tag = rel.tag
    snap_id = ctx.state.write_snapshot({"env": ctx.env, "profile": ctx.profile, "image": rel.image, "tag": tag,
                                        "revision": rel.revision, "release": rel.id, "values": rel.values})
    ctx.state.set_deployed(ctx.feed.image, tag)
    ctx.state.append_ledger({"kind": "release", "mode": args.mode, "release": rel.id, "image": rel.image, "tag": tag,
                             "revision": rel.revision, "dirty": rel.dirty, "profile": ctx.profile, "snapshot": snap_id})
    ctx.state.set_last_good(snap_id, tag, ctx.profile)
    if args.mode == "premarket":
        ctx.state.mark_premarket_success(ctx.env, ctx.profile)
    print(f"last-known-good: release {rel.id}, snapshot {snap_id}, image tag {tag}, revision {rel.revision or 'none'}, "
          f"profile {ctx.profile}")
    return Runbook.OK


def cmd_set_profile(args, ctx: RunbookContext) -> int:
    previous = ctx.profile
    ctx.state.set_active_profile(args.profile, args.reason)
    ctx.state.append_ledger({"kind": "profile", "reason": args.reason, "from": previous, "profile": args.profile,
                             "tag": ctx.image_tag()})
    print(f"profile: {previous} -> {args.profile}")
    return Runbook.OK


def cmd_rollback_apply(args, ctx: RunbookContext) -> int:
    """Pin the release ``--to`` names (default: the one before the running one). Everything that can fail
    (no such release, a missing snapshot, a revision git no longer has) fails before the state changes."""
    from . import releases

    try:
        target = releases.choose(ctx, args.to)
        snapshot = releases.snapshot_of(ctx, target)
        revision = target.get("revision")
        if revision and ctx.runtime == "native" and not args.plan and releases.git_revision()[0] != revision:
            releases.tree(ctx, revision)  # the native runtime runs that revision's code
    except releases.ReleaseError as exc:
        raise StepFailed(exc.code, str(exc)) from None
    tag, profile, snap_id = target["tag"], target.get("profile") or ctx.profile, snapshot["id"]
    lines = (f"RELEASE={target['release']}\nTAG={tag}\nIMAGE_REF={ctx.feed.image}{_ref_suffix(tag)}\n"
             f"REVISION={revision or ''}\nPROFILE={profile}\nSNAPSHOT={snap_id}")
    if args.plan:  # --dry-run, and the runbook's pull before anything changes: say what would be deployed
        print(lines)
        return Runbook.OK
    from_release = releases.current(ctx)
    extra = {"revision": revision} if revision else {}
    ctx.state.set_pin(snapshot["values"], "rollback", snapshot=snap_id, tag=tag, release=target["release"], **extra)
    ctx.state.set_deployed(ctx.feed.image, tag)
    ctx.state.set_active_profile(profile, "rollback")
    ctx.state.append_ledger({"kind": "rollback", "release": target["release"], "tag": tag, "revision": revision,
                             "profile": profile, "snapshot": snap_id, "from_release": from_release.id,
                             "from_tag": from_release.tag})
    print(lines)
    return Runbook.OK


def _ref_suffix(tag: str) -> str:
    from ..release import image_ref

    try:
        return image_ref("", tag)
    except ValueError:
        return f":{tag}"


def _refuse_shadowed(secrets_dir: str) -> None:
    """A rotated secret also exported in the environment: the environment would win, the new file not be used."""
    from ..settings import shadowed_secrets

    shadowed = shadowed_secrets(secrets_dir, os.environ)
    if shadowed:
        raise StepFailed(Runbook.VALIDATION_FAILED, f"rotation refused: {', '.join(shadowed)} "
                                                    f"{'is' if len(shadowed) == 1 else 'are'} also set in the environment, "
                                                    f"which takes precedence over the files in {secrets_dir}: the new "
                                                    f"value{'s' if len(shadowed) > 1 else ''} would not be used; unset "
                                                    f"{' '.join(shadowed)} in the environment the runbook runs in (shell, "
                                                    "systemd unit, env file of the timer) and re-run; nothing was changed")


def cmd_rotate(args, ctx: RunbookContext) -> int:
    previous_path = ctx.state.path("pin.previous.json")
    if args.action in ("apply", "check"):
        if not args.secrets_dir:
            raise StepFailed(Runbook.USAGE, f"rotate {args.action} needs --secrets-dir DIR (the directory holding the new secrets)")
        _refuse_shadowed(args.secrets_dir)
        if args.action == "check":
            print(f"rotate: no secret of {args.secrets_dir} is shadowed by the environment")
            return Runbook.OK
        atomic_write_json(previous_path, {"pin": ctx.pin})
        kept = {k: v for k, v in (ctx.pin or {}).items() if k in ("snapshot", "tag", "revision", "release")}
        values = {**(ctx.pin["values"] if ctx.pin else {}), "FEEDOPS_SECRETS_DIR": args.secrets_dir}
        ctx.state.set_pin(values, "rotate", **kept)
        ctx.state.append_ledger({"kind": "rotate", "secrets_dir": args.secrets_dir, "profile": ctx.profile})
        print(f"rotate: secrets directory {args.secrets_dir} applied")
        return Runbook.OK
    saved, old = ctx.state.pin_previous()
    if not saved:
        raise StateError(f"state file {previous_path} is missing; restore the secrets directory by hand with "
                         "`rotate --secrets-dir`")
    if old:
        ctx.state.set_pin(old["values"], old["reason"], **{k: v for k, v in old.items() if k in ("snapshot", "tag", "revision", "release")})
    else:
        ctx.state.clear_pin()
    previous_path.unlink(missing_ok=True)
    ctx.state.append_ledger({"kind": "rotate-revert", "profile": ctx.profile})
    print("rotate: previous credentials restored")
    return Runbook.OK


def cmd_check_state(args, ctx: RunbookContext) -> int:
    """Read every state file (feedops.runbook.state.StateStore.check): STATE_CORRUPT naming each corrupt one."""
    problems = ctx.state.check()
    for problem in problems:
        log.error("runbook.state.corrupt", problem)
    if problems:
        raise StepFailed(Runbook.STATE_CORRUPT, f"{len(problems)} corrupt state file(s) in {ctx.state.root} (above)")
    print(f"state: every file in {ctx.state.root} is readable")
    return Runbook.OK


def cmd_unpin(args, ctx: RunbookContext) -> int:
    print("unpin: configuration pin removed" if ctx.state.clear_pin() else "unpin: no pin")
    return Runbook.OK


def cmd_schedule_gate(args, ctx: RunbookContext) -> int:
    """--scheduled runs: run, skip (exit 0) or refuse (SCHEDULE_REFUSED) at the clock's time (feedops.schedule)."""
    from .. import clock, schedule
    from ..calendar import CalendarError, TradingCalendar

    try:
        clock.check()
        decision = schedule.decide(args.mode, TradingCalendar.from_settings(ctx.feed), clock.now())
    except (CalendarError, clock.ClockError) as exc:
        raise StepFailed(Runbook.VALIDATION_FAILED, f"cannot decide whether the scheduled {args.mode} acts: {exc}") from None
    sys.stdout.write(decision.lines())  # the runbook logs the decision and records its reason
    return Runbook.SCHEDULE_REFUSED if decision.action == "refuse" else Runbook.OK


def cmd_record(args, ctx: RunbookContext) -> int:
    from . import outcome  # prometheus_client only where it is needed

    reason = outcome.record(ctx, args.mode, args.rc, args.duration, args.detail, skipped=args.skipped)
    if reason and args.mode == "shutdown" and args.rc == Runbook.OK and ctx.runtime == "native":
        # the native shutdown stopped the runbook's own Pushgateway with the feed: expected, not a warning
        log.info("runbook.push.skipped", f"the Pushgateway stopped with the feed ({reason}); the outcome is in the "
                 "state: make status", mode=args.mode)
    elif reason:
        log.warning("runbook.push.failed", reason, mode=args.mode)
    return Runbook.OK


def cmd_status(args, ctx: RunbookContext) -> int:
    from .status import render_status

    sys.stdout.write(render_status(ctx))
    problems = ctx.state.check()  # shown above as far as they touch the report; named here, exit STATE_CORRUPT
    for problem in problems:
        log.error("runbook.state.corrupt", problem)
    if problems:
        raise StepFailed(Runbook.STATE_CORRUPT, f"{len(problems)} corrupt state file(s) in {ctx.state.root} (above)")
    return Runbook.OK


# ---------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m feedops.runbook", description=__doc__)
    parser.add_argument("--env", default=None, help="environment (envs/<env>.env)")
    parser.add_argument("--runtime", default=None, choices=("auto", "native", "compose"))
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("config", help="print the values the runbook needs (KEY=value)")
    p.add_argument("--write-release-env", action="store_true", help="compose runtime: write <state>/release.env from the pin")
    p.add_argument("--lenient-state", action="store_true",
                   help="shutdown: do not check the state files first (a corrupt pin or profile file is left out)")
    p.set_defaults(func=cmd_config)
    for name, func in (("start-stack", cmd_start_stack), ("start-monitoring", cmd_start_monitoring),
                       ("start-workers", cmd_start_workers), ("wait-ready", cmd_wait_ready)):
        p = sub.add_parser(name)
        p.add_argument("--timeout", type=float, default=60.0)
        p.add_argument("--expect-profile", choices=("primary", "backup"))
        p.set_defaults(func=func)
    p = sub.add_parser("stop", help="stop native components")
    p.add_argument("--kind", choices=("worker", "sim", "all"), default="all")
    p.add_argument("--name")
    p.add_argument("--kill", action="store_true", help="SIGKILL instead of SIGTERM (drills)")
    p.add_argument("--timeout", type=float, default=30.0)
    p.set_defaults(func=cmd_stop, lenient_state=True)
    p = sub.add_parser("mark-good")
    p.add_argument("--mode", required=True)
    p.set_defaults(func=cmd_mark_good)
    p = sub.add_parser("set-profile")
    p.add_argument("profile", choices=("primary", "backup"))
    p.add_argument("--reason", default="failover")
    p.set_defaults(func=cmd_set_profile)
    p = sub.add_parser("rollback-apply")
    p.add_argument("--to", default="previous", help="previous (default), a release id, TAG, TAG@sha256:... or sha256:...")
    p.add_argument("--plan", action="store_true", help="print the target only (dry run)")
    p.set_defaults(func=cmd_rollback_apply)
    p = sub.add_parser("rotate")
    p.add_argument("action", choices=("check", "apply", "revert"))
    p.add_argument("--secrets-dir")
    p.set_defaults(func=cmd_rotate)
    sub.add_parser("unpin").set_defaults(func=cmd_unpin)
    sub.add_parser("check-state", help="read every state file; STATE_CORRUPT names each corrupt one").set_defaults(
        func=cmd_check_state, lenient_state=True)
    p = sub.add_parser("record")
    p.add_argument("--mode", required=True)
    p.add_argument("--rc", type=int, required=True)
    p.add_argument("--duration", type=float, required=True)
    p.add_argument("--detail", default="")
    p.add_argument("--skipped", action="store_true", help="a --scheduled run that did nothing (not a trading day)")
    p.set_defaults(func=cmd_record)
    p = sub.add_parser("schedule-gate", help="--scheduled runs: ACTION=run|skip|refuse at the clock's time")
    p.add_argument("--mode", required=True, choices=("premarket", "shutdown", "drill"))
    p.set_defaults(func=cmd_schedule_gate)
    sub.add_parser("status").set_defaults(func=cmd_status, lenient_state=True)
    from .drill import add_parser as add_drill_parser

    add_drill_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        ctx = _ctx(args)
        return int(args.func(args, ctx))
    except ConfigError as exc:
        for problem in exc.problems:
            log.error("runbook.config.invalid", str(problem), setting=problem.setting)
        return Runbook.VALIDATION_FAILED
    except StateError as exc:
        log.error("runbook.state.corrupt", str(exc))
        return Runbook.STATE_CORRUPT
    except StepFailed as exc:
        log.error("runbook.step.failed", str(exc), exit_code=int(exc.code))
        return exc.code
    except OSError as exc:  # the state directory itself is unusable (permissions, disk full)
        log.error("runbook.state.unusable", f"cannot use the state directory: {exc}; fix FEEDOPS_STATE_DIR or its permissions")
        return Runbook.STATE_CORRUPT
