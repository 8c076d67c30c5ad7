"""Run outcomes: one record per mode in the state, and a push to Pushgateway when enabled."""

from __future__ import annotations

import socket
import time

from prometheus_client import CollectorRegistry

from .. import metric_names as mn
from ..exitcodes import Runbook
from ..push import push
from .config import RunbookContext


def record(ctx: RunbookContext, mode: str, exit_code: int, duration: float, detail: str = "",
           skipped: bool = False) -> str | None:
    """Store the outcome of a run; push it when Pushgateway is enabled. Returns a push failure reason.

    A ``skipped`` run (``--scheduled`` on a day without the session, feedops.schedule) is
    recorded and pushed as run (exit 0, last run now) but is not a success: the last
    success keeps its time, so the alerts on pre-market and drills judge real runs only."""
    previous = ctx.state.run_outcome(mode) if mode in ctx.state.modes_with_runs() else None
    now = time.time()
    succeeded = exit_code == Runbook.OK and not skipped
    last_success = now if succeeded else (previous or {}).get("last_success_ts")
    try:
        outcome_name = "SKIPPED" if skipped and exit_code == Runbook.OK else Runbook(exit_code).name
    except ValueError:
        outcome_name = "UNKNOWN"
    ctx.state.record_run({"mode": mode, "exit_code": exit_code, "outcome": outcome_name, "duration_seconds": round(duration, 3),
                          "ts": now, "last_success_ts": last_success, "env": ctx.env, "profile": ctx.profile,
                          "runtime": ctx.runtime, "detail": detail})
    url = ctx.pushgateway_url()
    if url is None:
        return None
    return push(url, mn.PUSH_JOB_RUNBOOK, build_registry(ctx, mode, exit_code, duration, now, last_success),
                grouping_key={"instance": socket.gethostname(), "env": ctx.env, "mode": mode})


def build_registry(ctx: RunbookContext, mode: str, exit_code: int, duration: float, now: float,
                   last_success: float | None) -> CollectorRegistry:
    registry = CollectorRegistry()

    def gauge(spec: mn.MetricSpec):
        return spec.create(registry)

    gauge(mn.RUNBOOK_EXIT_CODE).labels(mode=mode).set(exit_code)
    gauge(mn.RUNBOOK_DURATION).labels(mode=mode).set(duration)
    gauge(mn.RUNBOOK_LAST_RUN).labels(mode=mode).set(now)
    if last_success is not None:
        gauge(mn.RUNBOOK_LAST_SUCCESS).labels(mode=mode).set(last_success)
    active = gauge(mn.ACTIVE_PROFILE)
    for name in ("primary", "backup"):
        active.labels(profile=name).set(1 if name == ctx.profile else 0)
    return registry
