"""check_feed_health.py: is the market-data feed healthy right now? (scripts/operations/check_feed_health.py, feedops-health)

Reads the worker(s) /status (or the Prometheus API) plus Redis consumer groups,
judges them against the trading calendar and the thresholds of the settings model,
prints a report (json, text or nagios) and exits with the Nagios code
(0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN). See docs/ops/health-check.md.

Scheduled every minute through the runbook (start_live_env.sh health), which runs it in
the environment's runtime: deploy/systemd/feedops-health@.timer or deploy/crontab
(docs/ops/scheduling.md).
"""

from __future__ import annotations

import argparse
import os
import sys

from ..exitcodes import Check

#: flag -> settings variable it overrides (validated by the one settings model)
THRESHOLD_FLAGS = {
    "--coverage-warn": ("FEEDOPS_COVERAGE_WARN_RATIO", "coverage ratio below which the check warns"),
    "--coverage-crit": ("FEEDOPS_COVERAGE_CRIT_RATIO", "coverage ratio below which the check fails"),
    "--window": ("FEEDOPS_STALENESS_WINDOW_SECONDS", "seconds within which an open instrument counts as covered"),
    "--staleness-warn": ("FEEDOPS_STALENESS_WARN_SECONDS", "newest-tick age (s) above which the check warns"),
    "--staleness-crit": ("FEEDOPS_STALENESS_CRIT_SECONDS", "newest-tick age (s) above which the check fails"),
    "--latency-warn": ("FEEDOPS_LATENCY_P99_WARN_SECONDS", "p99 latency (s) above which the check warns"),
    "--latency-crit": ("FEEDOPS_LATENCY_P99_CRIT_SECONDS", "p99 latency (s) above which the check fails"),
    "--throughput-warn": ("FEEDOPS_THROUGHPUT_WARN_RATIO", "share of the expected ticks/s below which the check warns"),
    "--lag-warn": ("FEEDOPS_CONSUMER_LAG_WARN", "consumer-group lag (entries) above which the check warns"),
    "--lag-crit": ("FEEDOPS_CONSUMER_LAG_CRIT", "consumer-group lag (entries) above which the check fails"),
    "--rate-limit-warn": ("FEEDOPS_RATE_LIMIT_INCIDENTS_WARN", "rate-limit incidents at which the check warns (0 = never)"),
    "--premarket-max-age": ("FEEDOPS_PREMARKET_MAX_AGE_SECONDS", "age (s) of the last pre-market success that warns"),
}
FORMATS = ("json", "text", "nagios")


class UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse would exit 2 (CRITICAL to Nagios): ours is UNKNOWN
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="check_feed_health.py", description=__doc__.split("\n\n")[1],
                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env", help="environment (envs/<env>.env); default FEEDOPS_ENV or dev")
    p.add_argument("--worker", action="append", default=[], metavar="URL",
                   help="worker base URL, repeatable (one per shard); default FEEDOPS_WORKER_URLS")
    p.add_argument("--prometheus", metavar="URL", help="read the Prometheus HTTP API instead of the workers")
    p.add_argument("--redis", metavar="URL", help="Redis with the feed streams; default the sink URL when it is redis://")
    p.add_argument("--no-redis", action="store_true", help="skip the consumer-group checks")
    p.add_argument("--at", metavar="TIME", help="evaluate as of TIME: ISO 8601 (no offset = Beijing time), unix seconds or now")
    p.add_argument("--format", default="json", help="json (default), text or nagios")
    p.add_argument("--timeout", type=float, default=3.0, metavar="SECONDS", help="per request (default 3)")
    p.add_argument("--pushgateway", metavar="URL", help="push the outcome here (default FEEDOPS_PUSHGATEWAY_URL when enabled)")
    p.add_argument("--no-push", action="store_true", help="do not push to Pushgateway")
    p.add_argument("--no-premarket", action="store_true",
                   help="do not judge the age of the last pre-market run (the runbook passes it: it is the run that records it)")
    p.add_argument("--push-instance", metavar="NAME", help="grouping key instance (default FEEDOPS_ENV)")
    for flag, (var, text) in THRESHOLD_FLAGS.items():
        p.add_argument(flag, metavar="N", help=f"{text} (overrides {var})")
    return p


def _emit(report: dict, fmt: str) -> None:
    from .report import render

    try:
        sys.stdout.write(render(report, fmt) + "\n")
        sys.stdout.flush()
    except BrokenPipeError:  # e.g. piped into `head`: the exit code still tells the verdict
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit


def _fail(reason: str, fmt: str, component: str = "checker:arguments") -> int:
    from ..log import get_logger
    from .report import unknown

    get_logger("check_feed_health").error("health.check.unknown", reason)
    _emit(unknown(reason, component=component), fmt)
    return int(Check.UNKNOWN)


def _requested_format(argv: list[str]) -> str:
    for i, arg in enumerate(argv):
        value = arg.split("=", 1)[1] if arg.startswith("--format=") else argv[i + 1] if arg == "--format" and i + 1 < len(argv) else None
        if value in FORMATS:
            return value
    return "json"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    fmt = _requested_format(argv)
    try:
        args = build_parser().parse_args(argv)
        if args.format not in FORMATS:
            raise UsageError(f"--format {args.format!r} is unknown; use one of {', '.join(FORMATS)}")
        if args.timeout <= 0:
            raise UsageError("--timeout must be greater than 0 seconds")
        for url in args.worker + [u for u in (args.prometheus, args.pushgateway) if u]:
            if not url.startswith(("http://", "https://")):
                raise UsageError(f"{url!r} is not an http:// URL; pass e.g. --worker http://127.0.0.1:9108")
        from .run import Options, parse_at

        at = parse_at(args.at) if args.at else None
    except UsageError as exc:
        return _fail(f"{exc}; see --help", fmt)
    except ValueError as exc:
        return _fail(str(exc), fmt)

    from ..log import configure
    from ..settings import ConfigError, load_settings

    overrides = {var: getattr(args, flag[2:].replace("-", "_")) for flag, (var, _) in THRESHOLD_FLAGS.items()}
    overrides = {k: v for k, v in overrides.items() if v is not None}
    try:
        settings = load_settings(args.env, overrides=overrides)
    except ConfigError as exc:
        flag_of = {var: flag for flag, (var, _) in THRESHOLD_FLAGS.items()}
        reasons = [(f"{flag_of[p.setting]} ({p.setting})" if p.setting in flag_of and p.setting in overrides else p.setting)
                   + f": {p.message}; fix: {p.fix}" for p in exc.problems]
        return _fail("; ".join(reasons), fmt, "checker:settings")
    configure(level=settings.feed.log_level, fmt=settings.feed.log_format)

    from ..calendar import CalendarError
    from .run import run

    options = Options(workers=args.worker, prometheus=args.prometheus, redis=args.redis, no_redis=args.no_redis, at=at,
                      timeout=args.timeout, pushgateway=args.pushgateway, no_push=args.no_push, push_instance=args.push_instance,
                      no_premarket=args.no_premarket)
    try:
        report, code = run(settings, options)
    except CalendarError as exc:
        return _fail(str(exc), fmt, "checker:calendar")
    except Exception as exc:  # a bug must still give UNKNOWN and one line, not a traceback
        return _fail(f"internal error {type(exc).__name__}: {exc}", fmt, "checker:internal")
    _emit(report, fmt)
    return int(code)

