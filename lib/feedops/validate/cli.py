"""validate_env.py: the pre-market configuration checklist (scripts/operations/validate_env.py, feedops-validate).

Usage:
    validate_env.py [--env dev|staging|prod] [--env-file PATH] [--profile primary|backup]
                    [--probe] [--probe-timeout SECONDS] [--json] [--no-push]

Loads envs/<env>.env (default: FEEDOPS_ENV, else dev) with the environment and the
secrets directory through the settings model, runs the checks listed in
docs/ops/premarket-checklist.md and prints a table (or, with --json, a report
following lib/feedops/schemas/validate-report.schema.json). When
FEEDOPS_PUSHGATEWAY_ENABLED=true the outcome is pushed to Pushgateway.

Exit codes (feedops.exitcodes.Check): 0 every check passed, 1 warnings only,
2 a check failed (startup must halt), 3 the checker could not run (bad arguments).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from ..exitcodes import Check
from ..log import configure, get_logger, redact
from ..settings import ENV_NAMES, PROFILE_NAMES
from .runner import push_outcome, pushgateway_target, render_table, run_checklist

PROG = "validate_env.py"


class UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse would exit 2; checkers use 3 (UNKNOWN)
        raise UsageError(message)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds, e.g. 2.0") from None
    if not 0 < value <= 60:
        raise argparse.ArgumentTypeError(f"{text} must be greater than 0 and at most 60 seconds")
    return value


def _existing_file(text: str) -> Path:
    path = Path(text)
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"{text} is not a file; give the path of an env file such as envs/dev.env")
    return path


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="Pre-market configuration checklist (docs/ops/premarket-checklist.md).")
    parser.add_argument("--env", choices=ENV_NAMES, help="environment: selects envs/NAME.env (default: FEEDOPS_ENV, else dev)")
    parser.add_argument("--env-file", type=_existing_file, metavar="PATH", help="use this env file instead of envs/NAME.env")
    parser.add_argument("--profile", choices=PROFILE_NAMES, help="check this credential profile as the active one")
    parser.add_argument("--probe", action="store_true", help="also connect to each front, monitoring endpoint and the sink")
    parser.add_argument("--probe-timeout", type=_seconds, default=2.0, metavar="SECONDS", help="timeout of each probe (default 2)")
    parser.add_argument("--json", action="store_true", help="print the JSON report instead of the table")
    parser.add_argument("--no-push", action="store_true", help="do not push the outcome even when Pushgateway is enabled")
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except UsageError as exc:
        sys.stderr.write(f"{PROG}: error: {exc}; run {PROG} --help for usage\n")
        return int(Check.UNKNOWN)
    log = get_logger("validate_env")
    try:
        environ = dict(os.environ)
        report, settings = run_checklist(args.env, profile=args.profile, probe=args.probe, environ=environ,
                                         env_file=args.env_file, probe_timeout=args.probe_timeout)
        if settings is not None:
            configure(level=settings.feed.log_level, fmt=settings.feed.log_format)
        for result in report.results:
            for problem in result.problems:
                (log.error if result.status == "fail" or result.loud else log.warning)(
                    f"validate.check.{result.status}", str(problem), check=result.id, setting=problem.setting)
        url = pushgateway_target(settings, args.env, environ, args.env_file)
        if url and not args.no_push:
            error = push_outcome(report, url)
            if error:
                log.warning("validate.push.failed", redact(error), url=report.push["url"])
        log.info("validate.done", f"validate_env finished: {report.status}", status=report.status,
                 exit_code=report.exit_code, env=report.env, profile=report.profile, **report.counts())
        if args.json:
            sys.stdout.write(json.dumps(report.to_dict(), indent=2, ensure_ascii=False) + "\n")
        else:
            sys.stdout.write(render_table(report))
        return report.exit_code
    except Exception as exc:  # the checker could not run: one line, no traceback
        log.critical("validate.internal_error", f"validate_env could not run: {type(exc).__name__}: {exc}")
        return int(Check.UNKNOWN)

