"""``python -m feedops.runbook SUBCOMMAND``: the steps start_live_env.sh delegates to Python.

Every subcommand exits with a :class:`feedops.exitcodes.Runbook` code; reports go to
stdout, log lines (feedops.log) to stderr. This module is the parser and the exit-code
mapping; the subcommands are :mod:`.native_steps` (the native runtime's processes),
:mod:`.state_steps` (the state and release record) and :mod:`.drill`.
"""

from __future__ import annotations

import argparse

from .. import log as feedlog
from ..exitcodes import Runbook
from ..settings import ConfigError
from .config import RunbookContext
from .native_steps import cmd_start_monitoring, cmd_start_stack, cmd_start_workers, cmd_stop, cmd_wait_ready
from .state import StateError
from .state_steps import (
    cmd_check_state,
    cmd_config,
    cmd_mark_good,
    cmd_record,
    cmd_rollback_apply,
    cmd_rotate,
    cmd_schedule_gate,
    cmd_set_profile,
    cmd_status,
    cmd_unpin,
)
from .step import StepFailed

log = feedlog.get_logger("runbook")


def _ctx(args: argparse.Namespace) -> RunbookContext:
    ctx = RunbookContext.load(args.env, args.runtime, lenient=getattr(args, "lenient_state", False))
    feedlog.configure(level=ctx.feed.log_level, fmt=ctx.feed.log_format)
    return ctx


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
