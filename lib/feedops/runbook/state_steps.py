"""The runbook subcommands that read or change the runbook's state and release record: ``config``
(the values bash needs), ``mark-good``, ``set-profile``, ``rollback-apply``, ``rotate``, ``unpin``,
``check-state``, ``record``, ``schedule-gate`` and ``status``. Each takes the parsed arguments
and the :class:`~.config.RunbookContext`, prints its report and raises :class:`~.step.StepFailed`
with the exit code when it fails.
"""

from __future__ import annotations

import os
import sys

from .. import log as feedlog
from ..exitcodes import Runbook
from .config import RunbookContext
from .state import StateError, atomic_write_json
from .step import StepFailed

log = feedlog.get_logger("runbook")


def cmd_config(args, ctx: RunbookContext) -> int:
    if not args.lenient_state:  # every state file is read before anything starts or is overwritten
        problems = ctx.state.check()
        if problems:
            for problem in problems:
                log.error("runbook.state.corrupt", problem)
            raise StepFailed(Runbook.STATE_CORRUPT, f"{len(problems)} corrupt state file(s) in {ctx.state.root} "
                                                    "(above); nothing was started or changed")
    if args.write_release_env and ctx.runtime == "compose":
        write_release_env(ctx)
    for key, value in ctx.shell_values().items():
        print(f"{key}={value}")
    for key, value in ctx.child_overrides().items():
        print(f"ENV.{key}={value}")
    return Runbook.OK


def write_release_env(ctx: RunbookContext) -> None:
    """<state>/release.env: the pin as an env file docker compose hands to the containers (no secrets)."""
    values = (ctx.pin or {}).get("values", {})
    target = ctx.state.path("release.env")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(".release.env.tmp")
    tmp.write_text("".join(f"{k}={v}\n" for k, v in sorted(values.items())), encoding="utf-8")
    os.replace(tmp, target)


def cmd_mark_good(args, ctx: RunbookContext) -> int:
    """Record the release that just passed its checks (feedops.runbook.releases): once per distinct release."""
    from . import releases

    rel = releases.current(ctx)
    tag = rel.tag
    snap_id = ctx.state.write_snapshot({"env": ctx.env, "profile": ctx.profile, "image": rel.image, "tag": tag,
                                        "revision": rel.revision, "release": rel.id, "values": rel.values})
    ctx.state.set_deployed(ctx.feed.image, tag)
    ctx.state.append_ledger({"kind": "release", "mode": args.mode, "release": rel.id, "image": rel.image, "tag": tag,
                             "revision": rel.revision, "dirty": rel.dirty, "profile": ctx.profile, "snapshot": snap_id})
    ctx.state.set_last_good(snap_id, tag, ctx.profile)
    if args.mode == "premarket":
        ctx.state.mark_premarket_success(ctx.env, ctx.profile)
    print(f"last-known-good: release {rel.id}, snapshot {snap_id}, image tag {tag}, revision {rel.revision or 'none'}, "
          f"profile {ctx.profile}")
    return Runbook.OK


def cmd_set_profile(args, ctx: RunbookContext) -> int:
    previous = ctx.profile
    ctx.state.set_active_profile(args.profile, args.reason)
    ctx.state.append_ledger({"kind": "profile", "reason": args.reason, "from": previous, "profile": args.profile,
                             "tag": ctx.image_tag()})
    print(f"profile: {previous} -> {args.profile}")
    return Runbook.OK


def cmd_rollback_apply(args, ctx: RunbookContext) -> int:
    """Pin the release ``--to`` names (default: the one before the running one). Everything that can fail
    (no such release, a missing snapshot, a revision git no longer has) fails before the state changes."""
    from . import releases

    try:
        target = releases.choose(ctx, args.to)
        snapshot = releases.snapshot_of(ctx, target)
        revision = target.get("revision")
        if revision and ctx.runtime == "native" and not args.plan and releases.git_revision()[0] != revision:
            releases.tree(ctx, revision)  # the native runtime runs that revision's code
    except releases.ReleaseError as exc:
        raise StepFailed(exc.code, str(exc)) from None
    tag, profile, snap_id = target["tag"], target.get("profile") or ctx.profile, snapshot["id"]
    lines = (f"RELEASE={target['release']}\nTAG={tag}\nIMAGE_REF={ctx.feed.image}{_ref_suffix(tag)}\n"
             f"REVISION={revision or ''}\nPROFILE={profile}\nSNAPSHOT={snap_id}")
    if args.plan:  # --dry-run, and the runbook's pull before anything changes: say what would be deployed
        print(lines)
        return Runbook.OK
    from_release = releases.current(ctx)
    extra = {"revision": revision} if revision else {}
    ctx.state.set_pin(snapshot["values"], "rollback", snapshot=snap_id, tag=tag, release=target["release"], **extra)
    ctx.state.set_deployed(ctx.feed.image, tag)
    ctx.state.set_active_profile(profile, "rollback")
    ctx.state.append_ledger({"kind": "rollback", "release": target["release"], "tag": tag, "revision": revision,
                             "profile": profile, "snapshot": snap_id, "from_release": from_release.id,
                             "from_tag": from_release.tag})
    print(lines)
    return Runbook.OK


def _ref_suffix(tag: str) -> str:
    from ..release import image_ref

    try:
        return image_ref("", tag)
    except ValueError:
        return f":{tag}"


def _refuse_shadowed(secrets_dir: str) -> None:
    """A rotated secret also exported in the environment: the environment would win, the new file not be used."""
    from ..settings import shadowed_secrets

    shadowed = shadowed_secrets(secrets_dir, os.environ)
    if shadowed:
        raise StepFailed(Runbook.VALIDATION_FAILED, f"rotation refused: {', '.join(shadowed)} "
                                                    f"{'is' if len(shadowed) == 1 else 'are'} also set in the environment, "
                                                    f"which takes precedence over the files in {secrets_dir}: the new "
                                                    f"value{'s' if len(shadowed) > 1 else ''} would not be used; unset "
                                                    f"{' '.join(shadowed)} in the environment the runbook runs in (shell, "
                                                    "systemd unit, env file of the timer) and re-run; nothing was changed")


def cmd_rotate(args, ctx: RunbookContext) -> int:
    previous_path = ctx.state.path("pin.previous.json")
    if args.action in ("apply", "check"):
        if not args.secrets_dir:
            raise StepFailed(Runbook.USAGE, f"rotate {args.action} needs --secrets-dir DIR (the directory holding the new secrets)")
        _refuse_shadowed(args.secrets_dir)
        if args.action == "check":
            print(f"rotate: no secret of {args.secrets_dir} is shadowed by the environment")
            return Runbook.OK
        atomic_write_json(previous_path, {"pin": ctx.pin})
        kept = {k: v for k, v in (ctx.pin or {}).items() if k in ("snapshot", "tag", "revision", "release")}
        values = {**(ctx.pin["values"] if ctx.pin else {}), "FEEDOPS_SECRETS_DIR": args.secrets_dir}
        ctx.state.set_pin(values, "rotate", **kept)
        ctx.state.append_ledger({"kind": "rotate", "secrets_dir": args.secrets_dir, "profile": ctx.profile})
        print(f"rotate: secrets directory {args.secrets_dir} applied")
        return Runbook.OK
    saved, old = ctx.state.pin_previous()
    if not saved:
        raise StateError(f"state file {previous_path} is missing; restore the secrets directory by hand with "
                         "`rotate --secrets-dir`")
    if old:
        ctx.state.set_pin(old["values"], old["reason"], **{k: v for k, v in old.items() if k in ("snapshot", "tag", "revision", "release")})
    else:
        ctx.state.clear_pin()
    previous_path.unlink(missing_ok=True)
    ctx.state.append_ledger({"kind": "rotate-revert", "profile": ctx.profile})
    print("rotate: previous credentials restored")
    return Runbook.OK


def cmd_check_state(args, ctx: RunbookContext) -> int:
    """Read every state file (feedops.runbook.state.StateStore.check): STATE_CORRUPT naming each corrupt one."""
    problems = ctx.state.check()
    for problem in problems:
        log.error("runbook.state.corrupt", problem)
    if problems:
        raise StepFailed(Runbook.STATE_CORRUPT, f"{len(problems)} corrupt state file(s) in {ctx.state.root} (above)")
    print(f"state: every file in {ctx.state.root} is readable")
    return Runbook.OK


def cmd_unpin(args, ctx: RunbookContext) -> int:
    print("unpin: configuration pin removed" if ctx.state.clear_pin() else "unpin: no pin")
    return Runbook.OK


def cmd_schedule_gate(args, ctx: RunbookContext) -> int:
    """--scheduled runs: run, skip (exit 0) or refuse (SCHEDULE_REFUSED) at the clock's time (feedops.schedule)."""
    from .. import clock, schedule
    from ..calendar import CalendarError, TradingCalendar

    try:
        clock.check()
        decision = schedule.decide(args.mode, TradingCalendar.from_settings(ctx.feed), clock.now())
    except (CalendarError, clock.ClockError) as exc:
        raise StepFailed(Runbook.VALIDATION_FAILED, f"cannot decide whether the scheduled {args.mode} acts: {exc}") from None
    sys.stdout.write(decision.lines())  # the runbook logs the decision and records its reason
    return Runbook.SCHEDULE_REFUSED if decision.action == "refuse" else Runbook.OK


def cmd_record(args, ctx: RunbookContext) -> int:
    from . import outcome  # prometheus_client only where it is needed

    reason = outcome.record(ctx, args.mode, args.rc, args.duration, args.detail, skipped=args.skipped)
    if reason and args.mode == "shutdown" and args.rc == Runbook.OK and ctx.runtime == "native":
        # the native shutdown stopped the runbook's own Pushgateway with the feed: expected, not a warning
        log.info("runbook.push.skipped", f"the Pushgateway stopped with the feed ({reason}); the outcome is in the "
                 "state: make status", mode=args.mode)
    elif reason:
        log.warning("runbook.push.failed", reason, mode=args.mode)
    return Runbook.OK


def cmd_status(args, ctx: RunbookContext) -> int:
    from .status import render_status

    sys.stdout.write(render_status(ctx))
    problems = ctx.state.check()  # shown above as far as they touch the report; named here, exit STATE_CORRUPT
    for problem in problems:
        log.error("runbook.state.corrupt", problem)
    if problems:
        raise StepFailed(Runbook.STATE_CORRUPT, f"{len(problems)} corrupt state file(s) in {ctx.state.root} (above)")
    return Runbook.OK
