"""full_feed_subscription.py: the full-feed worker, one per shard (scripts/operations/full_feed_subscription.py, feedops-worker).

Usage:
    full_feed_subscription.py [--env dev|staging|prod] [--profile primary|backup] [--channel ctp|sim]
                              [--batch-size N] [--batch-interval SECONDS] [--max-retries N]
                              [--retry-backoff SECONDS] [--sink URL] [--listen HOST:PORT] [--shard I/N]
                              [--probe] [--log-format json|text]

Logs in to the CTP fronts of the chosen profile, learns every instrument (cached per
trading day), subscribes them in batches, keeps them subscribed through reconnects
and writes every tick to the sink (file:<dir> or redis://host:port/db), serving
/metrics /livez /readyz /status on --listen. SIGTERM/SIGINT drain the queue and flush
the sink. Flags override the settings (FEEDOPS_* variables, envs/<env>.env); see
docs/ops/worker.md.

Exit codes: the worker family of feedops.exitcodes (0 stopped on request, 10 bad
settings or arguments, 11 listen address unusable, 12 no front, 13 login refused,
14 instrument list unavailable, 15 disconnect storm, 16 sink unusable, 17 internal,
18 stopped but ticks were discarded).
With --probe: the checker codes (0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN) and a JSON
report on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from ..exitcodes import Check, Worker
from ..log import configure, dump_stacks_on_signal, get_logger
from ..settings import CHANNELS, ENV_NAMES, PROFILE_NAMES, ConfigError, load_settings

PROG = "full_feed_subscription.py"
#: flag -> settings variable it overrides
OVERRIDES = {
    "profile": "FEEDOPS_ACTIVE_PROFILE",
    "channel": "FEEDOPS_CHANNEL",
    "batch_size": "FEEDOPS_SUBSCRIBE_BATCH_SIZE",
    "batch_interval": "FEEDOPS_SUBSCRIBE_BATCH_INTERVAL_SECONDS",
    "max_retries": "FEEDOPS_MAX_RETRIES",
    "retry_backoff": "FEEDOPS_RETRY_BACKOFF_SECONDS",
    "sink": "FEEDOPS_SINK_URL",
    "listen": "FEEDOPS_WORKER_LISTEN",
    "shard": "FEEDOPS_SHARD",
    "log_format": "FEEDOPS_LOG_FORMAT",
}
FLAG_OF = {var: "--" + name.replace("_", "-") for name, var in OVERRIDES.items()}


class UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse would exit 2; we use the documented codes
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog=PROG, description="The full-feed worker: subscribe every instrument of a CTP front and publish "
                "every tick to the sink, with /metrics /livez /readyz /status (docs/ops/worker.md).")
    p.add_argument("--env", choices=ENV_NAMES, help="environment: selects envs/NAME.env (default: FEEDOPS_ENV, else dev)")
    p.add_argument("--profile", choices=PROFILE_NAMES, help="credential profile (FEEDOPS_ACTIVE_PROFILE)")
    p.add_argument("--channel", choices=CHANNELS, help="ctp = real openctp-ctp, sim = ctp-sim (FEEDOPS_CHANNEL)")
    p.add_argument("--batch-size", metavar="N", help="instruments per SubscribeMarketData call, 1-1000 "
                   "(FEEDOPS_SUBSCRIBE_BATCH_SIZE, default 1000)")
    p.add_argument("--batch-interval", metavar="SECONDS", help="pause between subscribe batches "
                   "(FEEDOPS_SUBSCRIBE_BATCH_INTERVAL_SECONDS, default 1)")
    p.add_argument("--max-retries", metavar="N", help="retries for refused queries, logins and unacknowledged "
                   "subscriptions (FEEDOPS_MAX_RETRIES, default 5)")
    p.add_argument("--retry-backoff", metavar="SECONDS", help="first retry delay, doubled per retry "
                   "(FEEDOPS_RETRY_BACKOFF_SECONDS, default 1)")
    p.add_argument("--sink", metavar="URL", help="file:<dir> or redis://host:port/db (FEEDOPS_SINK_URL)")
    p.add_argument("--listen", metavar="HOST:PORT", help="address of /metrics /livez /readyz /status "
                   "(FEEDOPS_WORKER_LISTEN, default 127.0.0.1:9108)")
    p.add_argument("--shard", metavar="I/N", help="this worker's share of the instruments, 0 <= I < N (FEEDOPS_SHARD)")
    p.add_argument("--probe", action="store_true", help="one-shot: connect, log in, subscribe a sample, print a JSON "
                   "report, exit with the checker codes 0/1/2/3")
    p.add_argument("--log-format", choices=("json", "text"), help="log lines as JSON or text (FEEDOPS_LOG_FORMAT)")
    return p


def main(argv: list[str] | None = None) -> int:
    probe_mode = "--probe" in (sys.argv[1:] if argv is None else argv)
    bad_args = Check.UNKNOWN if probe_mode else Worker.CONFIG
    try:
        args = build_parser().parse_args(argv)
    except UsageError as exc:
        sys.stderr.write(f"{PROG}: error: {exc}; run {PROG} --help for usage\n")
        return int(bad_args)
    overrides = {var: str(getattr(args, name)) for name, var in OVERRIDES.items() if getattr(args, name) is not None}
    try:
        settings = load_settings(args.env, overrides=overrides)
    except ConfigError as exc:
        for problem in exc.problems:
            flag = FLAG_OF.get(problem.setting)
            name = f"{flag} ({problem.setting})" if flag and problem.source == "command line" else str(problem.setting)
            sys.stderr.write(f"{PROG}: error: {name}: {problem.message}; fix: {problem.fix}\n")
        if not probe_mode and any(problem.setting == "FEEDOPS_SINK_URL" for problem in exc.problems):
            return int(Worker.SINK)  # a malformed sink URL is SINK (docs/ops/worker.md), whatever else is wrong
        return int(bad_args)
    configure(level=settings.feed.log_level, fmt=settings.feed.log_format)
    log = get_logger("worker")

    # imported late: the settings decide the channel (the real binding needs its locale)
    from .errors import WorkerError
    from .probe import probe
    from .service import FeedWorker, stop_on_signals

    if args.probe:
        # the real library prints to fd 1: keep stdout for the JSON report alone
        sys.stdout.flush()
        report_fd = os.dup(1)
        os.dup2(2, 1)
        try:
            code, report = probe(settings)
        except Exception as exc:  # a checker never dies with a traceback
            log.critical("worker.probe.internal", f"probe failed unexpectedly: {exc.__class__.__name__}: {exc}")
            return int(Check.UNKNOWN)
        finally:
            sys.stdout.flush()
            os.dup2(report_fd, 1)
            os.close(report_fd)
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
        level = "info" if code == Check.OK else "warning" if code == Check.WARNING else "error"
        log.log(level, "worker.probe.done", report["message"] or report["status"], status=report["status"])
        return int(code)

    worker = None
    try:
        dump_stacks_on_signal()  # SIGUSR1 (the runbook's, before a SIGKILL): every thread's stack to the log
        worker = FeedWorker(settings)

        stop_on_signals(worker.request_stop)
        return int(worker.run())
    except WorkerError as exc:
        if exc.code == Worker.OK:
            return int(Worker.OK)
        log.error(exc.event, str(exc), exit_code=int(exc.code))
        return int(exc.code)
    except Exception as exc:  # exit 17 with one line, never a traceback
        log.critical("worker.internal", f"unexpected error: {exc.__class__.__name__}: {exc}", exit_code=int(Worker.INTERNAL))
        return int(Worker.INTERNAL)

