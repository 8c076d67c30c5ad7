"""Every threshold and selector the alert rules use, in one block.

Thresholds the health check also judges come from the settings model
(:class:`feedops.settings.FeedSettings`), so ``make health`` and the alerts agree; the
rest are stated here with their reason. The committed rule file uses the model's
defaults; ``python -m feedops.monitoring.rules --env ENV --out DIR`` renders it with an
environment's values (``envs/<env>.env``, e.g. dev's latency threshold for ctp-sim).
"""

from __future__ import annotations

from ..health.checks import SNAPSHOTS_PER_SECOND
from ..settings import FeedSettings

#: Scrape job of the full-feed workers and of the Pushgateway (prometheus.yml job_name).
WORKER_JOB = "feedops-worker"
PUSHGATEWAY_JOB = "pushgateway"
#: Where the runbook pages live, relative to the repository root; runbook_url is this
#: path plus ``<AlertName>.md`` (Alertmanager's template prefixes FEEDOPS_RUNBOOK_BASE_URL).
RUNBOOK_DIR = "docs/ops/alerts"

#: Beijing time is UTC+8 all year.
BEIJING_OFFSET_SECONDS = 8 * 3600
#: Wall-clock windows in which a worker must run and pre-market must have been done:
#: (opens, closes, first weekday, last weekday), seconds of the Beijing day, weekdays
#: 0 = Sunday as PromQL's day_of_week. Ten minutes before the first open (09:00, 21:00)
#: until the last close (15:15 treasury futures, 02:30 the latest night session); a
#: night window closing after midnight continues on the next weekday. Exchange holidays
#: are not known to Prometheus: Alertmanager mutes these alerts on them (see
#: feedops.monitoring.alertmanager). Tick alerts do not use this: they use
#: feedops_instruments_open, which the worker computes from the exchange calendar.
SESSION_WINDOWS = (
    (8 * 3600 + 50 * 60, 15 * 3600 + 15 * 60, 1, 5),
    (20 * 3600 + 50 * 60, 26 * 3600 + 30 * 60, 1, 5),
)
#: Pre-market must have succeeded this long before its window opened (the runbook
#: timers of deploy/ run it at 08:30 and 20:30, docs/ops/scheduling.md).
PREMARKET_LEAD_SECONDS = 3600


def thresholds(feed: FeedSettings | None = None) -> dict[str, float]:
    """Every threshold of the rules; the health ones from ``feed`` (default: the model's defaults)."""
    feed = feed or FeedSettings()
    return {
        # the feed (shared with check_feed_health via the settings model)
        "coverage_warn_ratio": feed.coverage_warn_ratio,
        "coverage_crit_ratio": feed.coverage_crit_ratio,
        "staleness_warn_seconds": feed.staleness_warn_seconds,
        "staleness_crit_seconds": feed.staleness_crit_seconds,
        "latency_p99_warn_seconds": feed.latency_p99_warn_seconds,
        "latency_p99_crit_seconds": feed.latency_p99_crit_seconds,
        "throughput_warn_ratio": feed.throughput_warn_ratio,
        "rate_limit_incidents_warn": feed.rate_limit_incidents_warn,
        "disconnect_storm_count": feed.disconnect_storm_count,
        # expected ticks per second per open instrument: the session's snapshot ceiling,
        # the same expectation check_feed_health's throughput check uses
        "ticks_per_open_instrument": SNAPSHOTS_PER_SECOND,
        # share of an exchange's open instruments that may never have ticked (1 - coverage warn)
        "never_ticked_ratio": round(1 - feed.coverage_warn_ratio, 6),
        # minutes after which a logged-in worker must have every instrument acknowledged
        "subscriptions_incomplete_minutes": 10,
        # callback queue fill that counts as backlogged
        "queue_backlog_ratio": 0.5,
        # downstream: consumer-group lag in seconds of stream time (stream ids are ms times)
        "consumer_lag_warn_seconds": 60,
        "consumer_lag_crit_seconds": 600,
        # delivered-but-unacknowledged entries that count as a backlog (settings' lag warning)
        "consumer_pending_warn": feed.consumer_lag_warn,
        # operations
        "health_check_interval_seconds": 60,  # the timer/crontab of deploy/ (docs/ops/scheduling.md)
        "health_check_missed_runs": 3,
        "drill_max_age_days": 31,  # a drill a month
        # supervisor restarts of one native component within 15 minutes (lib/feedops/runbook/supervisor.py)
        "restarts_warn": 1,
        "restarts_crit": 3,
        "calendar_warn_days": 30,
        "calendar_crit_days": 7,
    }


THRESHOLDS = thresholds()
