"""``start_live_env.sh status``: what runs, which profile and image tag, the last runs."""

from __future__ import annotations

import time

from .config import RunbookContext
from .procs import ProcessTable
from .state import StateError
from .supervisor import describe_exit, read_record


def _when(ts: float | None) -> str:
    if not ts:
        return "never"
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


#: Where to look, per monitoring component.
_PAGES = {"prometheus": "/targets", "alertmanager": "/#/alerts", "pushgateway": "/", "redis-exporter": "/metrics"}


def _monitoring_lines(ctx: RunbookContext) -> list[str]:
    from .monitoring import INSTALL_HINT, urls

    wanted = urls(ctx)
    if not wanted:
        return ["  monitoring     none enabled (FEEDOPS_PROMETHEUS_ENABLED, ..._ALERTMANAGER_, ..._PUSHGATEWAY_)"]
    lines = ["  monitoring:"]
    lines.extend(f"    {name:<14} {url.rstrip('/')}{_PAGES[name]}" for name, url in wanted)
    off = ctx.monitoring_unavailable()
    if off:
        lines.append(f"    not installed here ({', '.join(off)} treated as false): {INSTALL_HINT}")
    return lines


def _release_lines(ctx: RunbookContext) -> list[str]:
    """The recorded releases, newest first; the running one marked ``*`` (feedops.runbook.releases)."""
    from . import releases

    recorded = releases.recorded(ctx)
    running = releases.current(ctx)
    if not recorded:
        return ["  releases       none recorded yet (a successful premarket records one)"]
    lines = ["  releases (newest first, * = running; make rollback goes to the one below the running one):"]
    for entry in recorded:
        mark = "*" if entry["release"] == running.id else " "
        revision = (entry.get("revision") or "no revision")[:12] + ("+dirty" if entry.get("dirty") else "")
        lines.append(f"  {mark} {entry['release']:<12} {entry.get('tag')}  rev {revision}  profile {entry.get('profile')}  "
                     f"snapshot {entry.get('snapshot')}  {_when(entry.get('ts'))}")
    if running.id not in {e["release"] for e in recorded}:
        lines.append(f"    running: {running.tag} rev {(running.revision or 'none')[:12]} (release {running.id}, not recorded: "
                     "no successful premarket on it)")
    return lines


def render_status(ctx: RunbookContext) -> str:
    """A compact report for people; a corrupt state file is shown as such (the caller exits STATE_CORRUPT)."""
    lines = [f"feedops {ctx.env}: runtime {ctx.runtime}, channel {ctx.feed.channel}, calendar {ctx.feed.calendar}",
             f"  state dir      {ctx.state.root}",
             f"  profile        {ctx.profile}",
             f"  image          {ctx.feed.image}:{ctx.image_tag()}"]
    pin = ctx.pin
    lines.append(f"  pinned config  {pin['reason']} ({pin.get('snapshot', 'no snapshot')}, {_when(pin.get('ts'))})" if pin
                 else "  pinned config  none (settings as loaded)")
    try:
        lines.extend(_release_lines(ctx))
    except StateError as exc:
        lines.append(f"  releases       unreadable: {exc}")
    if ctx.runtime == "native":
        table = ProcessTable(ctx)
        lines.append("  processes:")
        names = table.names()
        for name in names:
            try:
                pid = table.running_pid(name)
                record = table.record(name) or {}
                state = f"running (pid {pid})" if pid else "not running (stale pid file)"
            except StateError:
                pid, record, state = None, {}, "corrupt pid file (not trusted)"
            lines.append(f"    {name:<14} {state:<24} {record.get('address', '')}{_supervised(ctx, name)}")
        if not names:
            lines.append("    none")
        lines.extend(_monitoring_lines(ctx))
    lines.append("  last runs:")
    modes = ctx.state.modes_with_runs()
    for mode in modes:
        try:
            run = ctx.state.run_outcome(mode) or {}
        except StateError as exc:
            lines.append(f"    {mode:<10} unreadable: {exc}")
            continue
        lines.append(f"    {mode:<10} {run.get('outcome', '?'):<18} exit {run.get('exit_code')}  {_when(run.get('ts'))}  "
                     f"{run.get('duration_seconds', 0):.1f}s  last success {_when(run.get('last_success_ts'))}")
    if not modes:
        lines.append("    none")
    from .drill import status_lines

    lines.extend(status_lines(ctx))
    return "\n".join(lines) + "\n"


def _supervised(ctx, name: str) -> str:
    """The supervisor's counts for ``name`` (docs/ops/supervisor.md), when it restarted it at all."""
    try:
        record = read_record(ctx.state, name)
    except StateError as exc:
        return f"  supervisor record unreadable: {exc}"
    if not record["restarts"] and not record["failovers"]:
        return ""
    text = f"  restarts {record['restarts']}, last {describe_exit(record.get('last_exit', 0))} {_when(record.get('last_exit_ts'))}"
    return text + (f", failovers {record['failovers']}" if record["failovers"] else "")
