"""feedops-consumer: the reference consumer as a program (docs/ops/consumer.md).

Reads the ticks the worker's sink wrote, as a subscriber does, and reports per instrument
and in total the last tick, gaps, duplicates, out-of-order ticks and its own lag.
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import sys
import threading
from pathlib import Path

from .. import clock
from .. import log as feedlog
from .. import metric_names as mn
from ..exitcodes import Consumer
from ..fileio import atomic_write_text
from .service import ConsumerHTTP, ReferenceConsumer
from .sources import SourceError, open_source
from .tracker import TickTracker

log = feedlog.get_logger("consumer")
FAIL_ON = ("duplicates", "out-of-order", "gaps")

EPILOG = """\
examples:
  feedops-consumer --env dev --listen 127.0.0.1:9110          # follow the configured sink, metrics on :9110
  feedops-consumer --source redis://127.0.0.1:6379/0 --group verify --duration 120 \\
      --print-report --fail-on duplicates,gaps                 # verify a switchover for two minutes

HTTP (--listen): GET /metrics, GET /report[?instruments=0], GET /livez,
POST /outage?phase=NAME&event=start|resume (mark an outage; the report then measures its recovery).
SIGUSR1 writes the report (--report-file) without stopping.

exit codes (lib/feedops/exitcodes.py, docs/ops/exit-codes.md):
  0  OK        stopped on request or --duration elapsed; the report was written
  1  FINDINGS  stopped, and what --fail-on names was seen
  10 CONFIG    invalid settings or arguments (the message names the argument and the fix)
  11 LISTEN    the --listen address is unusable (port in use)
  12 SOURCE    the source cannot be read at start (Redis unreachable, malformed URL, no sink directory)
  17 INTERNAL  unexpected internal error
"""


class UsageError(Exception):
    pass


def _positive(name: str, kind=float):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be a number > 0 (got {text!r})") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"{name} must be > 0 (got {text!r})")
        return value
    return parse


def _listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"--listen must be HOST:PORT, e.g. 127.0.0.1:9110 (got {text!r})")
    return host, int(port)


def _fail_on(text: str) -> tuple[str, ...]:
    items = tuple(i.strip() for i in text.split(",") if i.strip())
    unknown = [i for i in items if i not in FAIL_ON]
    if unknown or not items:
        raise argparse.ArgumentTypeError(f"--fail-on takes a comma-separated list of {', '.join(FAIL_ON)} (got {text!r})")
    return items


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="feedops-consumer", description=__doc__.split("\n\n")[1],
                                epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env", help="environment whose settings give the defaults (envs/<env>.env; default FEEDOPS_ENV or dev)")
    p.add_argument("--source", help="redis://host:port/db or file:<dir> (default: FEEDOPS_SINK_URL)")
    p.add_argument("--prefix", help="Redis stream prefix (default: FEEDOPS_REDIS_STREAM_PREFIX)")
    p.add_argument("--group", default="feedops-reference", help="Redis consumer group (default %(default)s)")
    p.add_argument("--name", help="consumer name within the group (default HOST-PID)")
    p.add_argument("--start", choices=("new", "all"), default="new",
                   help="where a new group (or the file follower) starts: new ticks only (default) or everything kept")
    p.add_argument("--listen", type=_listen, help="HOST:PORT for /metrics, /report, /livez and POST /outage")
    p.add_argument("--duration", type=_positive("--duration"), help="stop after this many seconds (default: until SIGTERM)")
    p.add_argument("--report-file", type=Path, help="write the JSON report here at exit and on SIGUSR1")
    p.add_argument("--print-report", action="store_true", help="print the JSON report on stdout at exit")
    p.add_argument("--no-instruments", action="store_true", help="leave the per-instrument table out of the report files")
    p.add_argument("--fail-on", type=_fail_on, default=(), help=f"exit 1 when any of these was seen: {','.join(FAIL_ON)}")
    p.add_argument("--gap-factor", type=_positive("--gap-factor"), default=4.0,
                   help="a gap is longer than this many usual intervals of the instrument (default %(default)s)")
    p.add_argument("--gap-min-seconds", type=_positive("--gap-min-seconds"), default=2.0,
                   help="and longer than this (default %(default)s s)")
    p.add_argument("--coverage-ratio", type=float,
                   help="share of instruments back that ends an outage (default: FEEDOPS_COVERAGE_CRIT_RATIO)")
    p.add_argument("--push", action="store_true",
                   help="push the figures to the Pushgateway at exit (FEEDOPS_PUSHGATEWAY_URL; job feedops_consumer)")
    p.add_argument("--log-format", choices=("json", "text"), help="log format (default: FEEDOPS_LOG_FORMAT)")
    return p


def _settings(args):
    from ..settings import load_settings

    return load_settings(args.env).feed


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: --help is 0, a bad argument 2 -> CONFIG
        return Consumer.OK if exc.code == 0 else Consumer.CONFIG
    from ..settings import ConfigError

    try:
        clock.check()
        feed = _settings(args)
    except ConfigError as exc:
        for problem in exc.problems:
            log.error("consumer.config.invalid", str(problem), setting=problem.setting)
        return Consumer.CONFIG
    except clock.ClockError as exc:
        log.error("consumer.config.invalid", str(exc), setting=clock.ENV_VAR)
        return Consumer.CONFIG
    feedlog.configure(level=feed.log_level, fmt=args.log_format or feed.log_format)
    ratio = feed.coverage_crit_ratio if args.coverage_ratio is None else args.coverage_ratio
    if not 0 < ratio <= 1:
        log.error("consumer.config.invalid", f"--coverage-ratio must be in (0, 1] (got {ratio}); fix: e.g. 0.9",
                  setting="--coverage-ratio")
        return Consumer.CONFIG
    from ..calendar import CalendarError, TradingCalendar

    try:
        calendar = TradingCalendar.from_settings(feed)
        source = open_source(args.source or feed.sink_url, prefix=args.prefix or feed.redis_stream_prefix,
                             group=args.group, consumer=args.name, start=args.start)
    except CalendarError as exc:
        log.error("consumer.config.invalid", f"{exc}", setting="FEEDOPS_HOLIDAYS_FILE")
        return Consumer.CONFIG
    except SourceError as exc:
        log.error("consumer.config.invalid", f"{exc}", setting="--source")
        return Consumer.CONFIG
    tracker = TickTracker(calendar, gap_factor=args.gap_factor, gap_min_seconds=args.gap_min_seconds, coverage_ratio=ratio)
    consumer = ReferenceConsumer(source, tracker, group=args.group if source.kind == "redis" else None)
    http = None
    if args.listen:
        try:
            http = ConsumerHTTP(consumer, *args.listen)
        except OSError as exc:
            log.error("consumer.listen.failed", f"cannot listen on {args.listen[0]}:{args.listen[1]} ({exc.strerror}); "
                      "fix: choose a free port with --listen", setting="--listen")
            return Consumer.LISTEN
    try:
        consumer.start()
    except SourceError as exc:
        log.error("consumer.source.unusable", str(exc), setting="--source")
        if http:
            http.server.server_close()
        return Consumer.SOURCE
    if http:
        http.start()
    log.info("consumer.started", f"reading {source.target}" + (f" as group {args.group}" if source.kind == "redis" else "")
             + (f"; HTTP on {http.address}" if http else ""), source=source.target, listen=http.address if http else None)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    if args.report_file:
        signal.signal(signal.SIGUSR1, lambda *_: write_report(consumer.report(instruments=not args.no_instruments),
                                                               args.report_file))
    stop.wait(args.duration)
    if consumer.failure is not None:
        return Consumer.INTERNAL
    report = consumer.stop()
    if http:
        http.stop()
    if args.no_instruments:
        report.pop("instruments", None)
    if args.report_file:
        write_report(report, args.report_file)
    if args.print_report:
        sys.stdout.write(json.dumps(report, indent=1) + "\n")
    if args.push:
        error = push_report(consumer, feed, args.group)
        if error:
            log.warning("consumer.push.failed", error)
    findings = findings_of(report, args.fail_on)
    totals = report["totals"]
    log.info("consumer.stopped", f"read {totals['ticks']} ticks of {totals['instruments']} instruments: "
             f"{totals['duplicates']} duplicates, {totals['out_of_order']} out of order, {totals['gaps']} gaps "
             f"({report['gaps_outside_outages']} outside outages)", ticks=totals["ticks"], duplicates=totals["duplicates"],
             out_of_order=totals["out_of_order"], gaps=totals["gaps"], findings=findings)
    return Consumer.FINDINGS if findings else Consumer.OK


def findings_of(report: dict, fail_on: tuple[str, ...]) -> list[str]:
    """What ``--fail-on`` names and the report shows (gaps: outside marked outages only)."""
    seen = {"duplicates": report["totals"]["duplicates"], "out-of-order": report["totals"]["out_of_order"],
            "gaps": report["gaps_outside_outages"]}
    return [f"{name}={seen[name]}" for name in fail_on if seen[name]]


def write_report(report: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(report, indent=1) + "\n")


def push_report(consumer: ReferenceConsumer, feed, group: str) -> str | None:
    """Push the consumer's registry (job feedops_consumer, instance = host, group); None on success."""
    from ..push import push

    if not feed.pushgateway_enabled:
        return "not pushed: FEEDOPS_PUSHGATEWAY_ENABLED is false"
    return push(feed.pushgateway_url, mn.PUSH_JOB_CONSUMER, consumer.registry,
                grouping_key={"instance": socket.gethostname(), "env": feed.env, "group": group})


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
