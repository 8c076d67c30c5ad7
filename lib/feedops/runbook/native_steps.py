"""The runbook subcommands that run the native runtime's processes: ``start-stack`` (the local ctp-sim
fronts), ``start-monitoring``, ``start-workers``, ``wait-ready`` and ``stop``. Each takes the parsed
arguments and the :class:`~.config.RunbookContext`, prints its report lines and raises
:class:`~.step.StepFailed` with the exit code when it fails.
"""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Callable

from .. import log as feedlog
from ..exitcodes import Runbook, Worker
from . import procs, ready
from .config import RunbookContext
from .state import StateError
from .step import StepFailed

log = feedlog.get_logger("runbook")


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
