"""One health-check run: read the sources, apply the checks, build the report, push."""

from __future__ import annotations

import datetime as _dt
import re
import time
from dataclasses import dataclass, field

from .. import clock
from ..calendar import BEIJING, TradingCalendar
from ..exitcodes import Check
from ..log import get_logger
from . import checks as ck
from . import report as rp
from .source_prometheus import read_prometheus
from .source_redis import read_consumer_groups
from .source_state import read_expected_workers, read_premarket
from .source_worker import read_workers
from .sources import SourceError, Sources, safe_url

log = get_logger("check_feed_health")


@dataclass
class Options:
    workers: list[str] = field(default_factory=list)  # empty: FEEDOPS_WORKER_URLS
    prometheus: str | None = None  # read the Prometheus API instead of the workers
    redis: str | None = None  # consumer groups; None: the sink URL when it is redis://
    no_redis: bool = False
    at: _dt.datetime | None = None  # evaluate as of this time (default now)
    timeout: float = 3.0
    pushgateway: str | None = None  # None: FEEDOPS_PUSHGATEWAY_URL when FEEDOPS_PUSHGATEWAY_ENABLED
    no_push: bool = False
    push_instance: str | None = None  # default: FEEDOPS_ENV
    no_premarket: bool = False  # skip premarket:age (the runbook's own runs record it)


_UNIX = re.compile(r"^\d{9,11}(\.\d+)?$")


def parse_at(text: str) -> _dt.datetime:
    """``now``, unix seconds, or ISO 8601 (``2026-11-24T21:30:00+08:00``; no offset = Beijing time)."""
    value = text.strip()
    if value.lower() == "now":
        return clock.now()
    if _UNIX.match(value):
        return _dt.datetime.fromtimestamp(float(value), _dt.timezone.utc)
    try:
        parsed = _dt.datetime.fromisoformat(value.replace("Z", "+00:00").replace(" ", "T", 1))
    except ValueError:
        raise ValueError(f"--at {text!r} is not a time; use ISO 8601 like 2026-11-24T21:30:00+08:00 "
                         f"(no offset = Beijing time), unix seconds, or now") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=BEIJING)


def _redis_url(feed, options: Options) -> str | None:
    if options.no_redis:
        return None
    if options.redis:
        return options.redis
    return feed.sink_url if feed.sink_url.startswith("redis://") else None


def _push_url(feed, options: Options) -> str | None:
    if options.no_push:
        return None
    if options.pushgateway:
        return options.pushgateway
    return feed.pushgateway_url if feed.pushgateway_enabled else None


def collect(feed, options: Options, at: _dt.datetime) -> Sources:
    sources = Sources()
    if options.prometheus:
        try:
            sources.prometheus = read_prometheus(options.prometheus, at.timestamp(), feed.staleness_window_seconds, options.timeout)
            sources.workers = sources.prometheus.workers
        except SourceError as exc:
            sources.errors.append(exc)
    else:
        sources.workers, errors = read_workers(options.workers or feed.worker_url_list, options.timeout)
        sources.errors.extend(errors)
    redis_url = _redis_url(feed, options)
    if redis_url:
        sources.redis_target = safe_url(redis_url)
        try:
            sources.consumer_groups = read_consumer_groups(redis_url, feed.redis_stream_prefix, min(options.timeout, 2.0))
        except SourceError as exc:
            sources.errors.append(exc)
    sources.expected_workers = read_expected_workers(feed.path("state_dir"))
    if options.no_premarket:
        sources.premarket_skipped = True
        return sources
    try:
        sources.premarket = read_premarket(feed.path("state_dir"))
    except SourceError as exc:
        sources.premarket_error = exc
    return sources


def evaluate(feed, sources: Sources, calendar: TradingCalendar, at: _dt.datetime) -> tuple[list[ck.CheckResult], dict]:
    """All check results and the report's extra sections."""
    th = ck.Thresholds.from_settings(feed)
    cov, basis = ck.feed_coverage(sources, calendar, at, th.staleness_window_seconds)
    market_open = calendar.any_open(at)
    in_session = market_open and (cov is None or cov.open > 0)  # e.g. 10:20: only CFFEX trades
    if sources.prometheus is not None:
        window_text = f"in the last {max(int(th.staleness_window_seconds), 60)}s"
    else:
        starts = [w.started_unix for w in sources.workers if w.started_unix]
        since = _dt.datetime.fromtimestamp(min(starts), _dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC") if starts else "?"
        window_text = f"since the worker started ({since})"
    results = ck.source_checks(sources.errors)
    results += ck.market_checks(calendar, at, market_open, cov)
    for worker in sources.workers:
        results += ck.worker_checks(worker, th, market_open)
    results += ck.coverage_checks(cov, th, market_open)
    results += ck.staleness_checks(cov, th, in_session)
    results += ck.traffic_checks(sources.workers, th, in_session, window_text, cov.open if cov is not None else None)
    results += ck.expected_worker_checks(sources.expected_workers, str(feed.path("state_dir").joinpath("pids")))
    results += ck.consumer_checks(sources.consumer_groups, th, sources.redis_target or "redis")
    if not sources.premarket_skipped:
        state = feed.path("state_dir").joinpath("runs", "premarket.last-success")
        results += ck.premarket_checks(sources.premarket, sources.premarket_error, th, at, str(state))
    extra = {
        "market": {"open": market_open, "calendar": calendar.mode, "tradingDay": calendar.trading_day(at).isoformat(),
                   "beijingTime": at.astimezone(BEIJING).isoformat(timespec="seconds")},
        "coverage": ({**cov.as_dict(), "basis": basis} if cov is not None else None),
        "thresholds": th.as_dict(),
    }
    return results, extra


def run(settings, options: Options) -> tuple[dict, Check]:
    """One check; raises only for unusable settings data (e.g. :class:`~feedops.calendar.HolidayFileError`)."""
    started = time.perf_counter()
    run_unix = time.time()
    feed = settings.feed
    at = options.at or clock.now()
    calendar = TradingCalendar.from_settings(feed)
    sources = collect(feed, options, at)
    for err in sources.errors:
        log.warning("health.source.unreachable", f"{err.component} {err.target}: {err.reason}",
                    component_name=err.component, target=err.target, fix=err.fix)
    results, extra = evaluate(feed, sources, calendar, at)
    extra["sources"] = {
        "workers": [] if options.prometheus else [safe_url(u) for u in (options.workers or feed.worker_url_list)],
        "prometheus": safe_url(options.prometheus) if options.prometheus else None,
        "redis": safe_url(u) if (u := _redis_url(feed, options)) else None,
    }
    code = rp.verdict(results)
    duration = time.perf_counter() - started
    push_url = _push_url(feed, options)
    push_info: dict = {"enabled": push_url is not None, "url": safe_url(push_url) if push_url else None, "ok": None, "error": None}
    if push_url:
        from .push import push_results

        error = push_results(results, code, push_url, options.push_instance or feed.env,
                             duration_seconds=duration, run_unix=run_unix, timeout=min(options.timeout, 2.0))
        push_info.update(ok=error is None, error=error)
        if error:
            log.warning("health.push.failed", error, url=push_info["url"])
    extra["push"] = push_info
    extra["durationSeconds"] = round(duration, 4)
    report = rp.build(results, at=at, extra=extra)
    log.info("health.check.done", report["output"], verdict=code.name, duration_seconds=round(duration, 4))
    return report, code
