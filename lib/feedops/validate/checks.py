"""The pre-market checklist's configuration checks: named checks with stable ids.

Each check looks at the loaded :class:`~feedops.settings.Settings` and returns a
:class:`~.registry.CheckResult`: a status (pass, warn, fail, skip), a one-line summary and
the problems found, each naming the setting at fault and the fix. The ``probe.*`` checks,
which look at the network, are :mod:`.probes`; the frame (context, result, registry) is
:mod:`.registry`. docs/ops/premarket-checklist.md lists the same ids (a test keeps them in
step). Nothing here prints or exits; secret values never enter a summary or a problem.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path

from .. import clock, paths
from ..addresses import FRONT_RE
from ..devsecrets import DEV_SECRET_PREFIX
from ..settings import (
    CTP_MAX_SUBSCRIBE_BATCH,
    CtpProfile,
    Problem,
    secret_env_vars,
)
from .registry import STRICT_ENVS, CheckResult, Context, check, verdict

GB18030_LOCALE = "zh_CN.GB18030"
#: Secret values an operator obviously has not filled in (compared case-insensitively).
PLACEHOLDER_SECRETS = frozenset({
    "changeme", "change-me", "change_me", "password", "passwd", "secret", "placeholder", "todo", "tbd",
    "fixme", "example", "dummy", "test", "none", "null", "123456", "000000", "<secret>",
})
_PLACEHOLDER_PATTERNS = (re.compile(r"^<.*>$"), re.compile(r"^\$\{.*\}$"), re.compile(r"^(x+|\*+|\.+)$", re.I))
#: Host names reserved for documentation (RFC 2606 / RFC 6761): a front there is a placeholder.
_RESERVED_HOST = re.compile(r"(^|\.)(example|invalid|test)$|(^|\.)example\.(com|net|org)$", re.I)


def writable_dir_problem(path: Path) -> str | None:
    """None when ``path`` is (or can be created as) a writable directory, else the reason.

    Writes and removes a probe entry for real (``os.access`` says yes to root on a
    read-only file system); never creates ``path`` itself.
    """
    if path.exists() and not path.is_dir():
        return f"{path} exists and is not a directory"
    existing = path
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        return f"{existing} (a parent of {path}) is not a directory"
    try:
        probe = tempfile.mkdtemp(prefix=".feedops-write-probe-", dir=existing)
        os.rmdir(probe)
    except OSError as exc:
        where = path if existing == path else f"{existing} (nearest existing parent of {path})"
        return f"{where} is not writable ({exc.strerror})"
    return None


def _profile_name(profile: CtpProfile) -> str:
    return profile.model_config.get("env_prefix", "").removeprefix("CTP_").rstrip("_").lower()


def _missing_problem(var: str, env: str, why: str) -> Problem:
    if var in secret_env_vars():
        fix = (f"put it in a file named {var} in the secrets directory (FEEDOPS_SECRETS_DIR) or export {var}; "
               "never in envs/*.env" + ("; make bootstrap generates dev secrets" if env == "dev" else ""))
    else:
        fix = f"set {var} in envs/{env}.env or the environment (see .env.example)"
    return Problem(var, why, fix)


# --------------------------------------------------------------------------- checks
@check("settings.load", "The configuration loads: env file parses, every variable is known and every value is valid")
def check_settings_load(ctx: Context) -> CheckResult:
    s = ctx.settings
    where = str(s.env_file) if s.env_file else "built-in defaults (no env file)"
    dirs = ", ".join(str(d) for d in s.secrets_dirs) or "none"
    return verdict("settings.load", list(s.warnings), False, f"loaded {where}; secrets directories: {dirs}")


@check("profile.required", "The active CTP profile has fronts, broker id, user id and app id")
def check_profile_required(ctx: Context) -> CheckResult:
    profile = ctx.settings.active
    name = _profile_name(profile)
    secrets = secret_env_vars()
    problems = [_missing_problem(var, ctx.env, f"required for the active profile ({name}) but not set")
                for var in profile.missing() if var not in secrets]
    return verdict("profile.required", problems, True,
                    f"{name}: user {profile.user_id} at broker {profile.broker_id}, "
                    f"{len(profile.md_fronts)} md / {len(profile.td_fronts)} td fronts")


@check("profile.backup_complete", "The backup CTP profile is complete (required in staging and prod) and differs from the primary")
def check_backup_complete(ctx: Context) -> CheckResult:
    s = ctx.settings
    strict = ctx.env in STRICT_ENVS
    why = f"the backup profile is incomplete; failover needs it{' in ' + ctx.env if strict else ''}"
    problems = [_missing_problem(var, ctx.env, why) for var in s.backup.missing()]
    if not problems and s.backup.user_id == s.primary.user_id and s.backup.broker_id == s.primary.broker_id \
            and s.backup.md_fronts == s.primary.md_fronts:
        problems.append(Problem("CTP_BACKUP_USER_ID", "the backup profile has the primary's account and fronts; failing over would change nothing",
                                "configure a second account or at least other fronts in CTP_BACKUP_*"))
    return verdict("profile.backup_complete", problems, strict,
                    f"backup: user {s.backup.user_id} at broker {s.backup.broker_id}, {len(s.backup.md_fronts)} md fronts")


@check("fronts.well_formed", "Every front is tcp://host:port (host an RFC 1123 hostname or an IP literal) with a port in 1-65535, "
                            "no duplicates, no placeholder hosts outside dev")
def check_fronts(ctx: Context) -> CheckResult:
    hard: list[Problem] = []  # malformed; placeholder hosts in staging/prod
    soft: list[Problem] = []  # duplicates; placeholder hosts in dev
    count = 0
    for profile in (ctx.settings.primary, ctx.settings.backup):
        for name in ("md_fronts", "td_fronts"):
            var = profile.env_var(name)
            fronts = getattr(profile, name)
            count += len(fronts)
            for url in fronts:
                m = FRONT_RE.match(url)
                if not m:  # load_settings rejects these already; kept for settings built in code
                    hard.append(Problem(var, f"{url!r} is not of the form tcp://host:port", f"correct {var}"))
                elif _RESERVED_HOST.search(m.group("host")):
                    (hard if ctx.env in STRICT_ENVS else soft).append(
                        Problem(var, f"{url} uses a documentation placeholder host", f"set {var} to the broker's real front addresses"))
            if len(set(fronts)) != len(fronts):
                soft.append(Problem(var, "lists the same front twice", f"remove the duplicate from {var}"))
    problems = hard + soft
    fail = bool(hard)
    return verdict("fronts.well_formed", problems, fail, f"{count} front addresses well formed")


@check("secrets.present", "The active profile's password and auth code are provided (environment or secrets directory)")
def check_secrets_present(ctx: Context) -> CheckResult:
    profile = ctx.settings.active
    name = _profile_name(profile)
    problems = []
    origins = []
    for field_name in ("password", "auth_code"):
        var = profile.env_var(field_name)
        if profile.secret_value(field_name):  # type: ignore[arg-type]
            origins.append(f"{var} from {ctx.settings.sources.get(var, 'unknown')}")
        else:
            problems.append(_missing_problem(var, ctx.env, f"not set for the active profile ({name})"))
    return verdict("secrets.present", problems, True, "; ".join(origins))


def is_placeholder_secret(value: str, env: str) -> bool:
    lowered = value.strip().lower()
    if lowered in PLACEHOLDER_SECRETS or any(p.match(lowered) for p in _PLACEHOLDER_PATTERNS):
        return True
    return env != "dev" and value.startswith(DEV_SECRET_PREFIX)


@check("secrets.not_placeholder", "No secret is a placeholder (changeme, <secret>, ...) or a generated dev secret outside dev")
def check_secrets_not_placeholder(ctx: Context) -> CheckResult:
    problems = []
    seen = 0
    for profile in (ctx.settings.primary, ctx.settings.backup):
        for field_name in ("password", "auth_code"):
            value = profile.secret_value(field_name)  # type: ignore[arg-type]
            if not value:
                continue
            seen += 1
            var = profile.env_var(field_name)
            if is_placeholder_secret(value, ctx.env):
                dev = value.startswith(DEV_SECRET_PREFIX) and ctx.env != "dev"
                why = f"is a generated dev secret, not valid in {ctx.env}" if dev else "looks like a placeholder, not a real secret"
                problems.append(Problem(var, why, f"provide the real value (secrets directory or environment); source: "
                                                  f"{ctx.settings.sources.get(var, 'unknown')}"))
    return verdict("secrets.not_placeholder", problems, True, f"{seen} secrets set, none a placeholder")


@check("ratelimits.ctp_limits", "Rate limits respect CTP: subscribe batch <= 1000, query rate and backoff sane")
def check_rate_limits(ctx: Context) -> CheckResult:
    f = ctx.settings.feed
    hard: list[Problem] = []
    soft: list[Problem] = []
    if f.subscribe_batch_size > CTP_MAX_SUBSCRIBE_BATCH:
        hard.append(Problem("FEEDOPS_SUBSCRIBE_BATCH_SIZE", f"{f.subscribe_batch_size} is above CTP's limit of {CTP_MAX_SUBSCRIBE_BATCH}",
                            f"set FEEDOPS_SUBSCRIBE_BATCH_SIZE to {CTP_MAX_SUBSCRIBE_BATCH} or less"))
    if f.retry_backoff_max_seconds < f.retry_backoff_seconds:
        hard.append(Problem("FEEDOPS_RETRY_BACKOFF_MAX_SECONDS", f"{f.retry_backoff_max_seconds} s is below the first retry delay "
                            f"FEEDOPS_RETRY_BACKOFF_SECONDS={f.retry_backoff_seconds}",
                            "set FEEDOPS_RETRY_BACKOFF_MAX_SECONDS to at least FEEDOPS_RETRY_BACKOFF_SECONDS"))
    if f.query_rate_per_second > 2:
        soft.append(Problem("FEEDOPS_QUERY_RATE_PER_SECOND", f"{f.query_rate_per_second}/s is above the 1-2 queries/s fronts usually allow",
                            "set FEEDOPS_QUERY_RATE_PER_SECOND to 1 unless the broker allows more"))
    if f.channel == "ctp" and f.subscribe_batch_interval_seconds < 1.0:
        soft.append(Problem("FEEDOPS_SUBSCRIBE_BATCH_INTERVAL_SECONDS", f"{f.subscribe_batch_interval_seconds} s between batches; SFIT advises 1 s",
                            "set FEEDOPS_SUBSCRIBE_BATCH_INTERVAL_SECONDS=1.0 for real fronts"))
    return verdict("ratelimits.ctp_limits", hard + soft, bool(hard),
                    f"batch {f.subscribe_batch_size} (limit {CTP_MAX_SUBSCRIBE_BATCH}), "
                    f"{f.query_rate_per_second} queries/s, {f.subscribe_batch_interval_seconds} s between batches")


@check("image.pinned", "staging and prod run an image pinned by digest (FEEDOPS_IMAGE_TAG=tag@sha256:...); dev may float")
def check_image_pinned(ctx: Context) -> CheckResult:
    from ..release import image_ref, is_pinned

    f = ctx.settings.feed
    ref = image_ref(f.image, f.image_tag)
    if is_pinned(f.image_tag):
        return CheckResult("image.pinned", "pass", f"{ref} (pinned by digest)")
    problems = [Problem("FEEDOPS_IMAGE_TAG", f"{f.image_tag!r} is a floating tag: the image it names can change under a running "
                        f"{ctx.env}", "set FEEDOPS_IMAGE_TAG to the release's tag@sha256:<digest> from its release record, "
                        "e.g. FEEDOPS_IMAGE_TAG=v1.5.0@sha256:<digest> (docs/ops/releases.md)",
                        ctx.settings.sources.get("FEEDOPS_IMAGE_TAG"))]
    if ctx.env not in STRICT_ENVS:
        return CheckResult("image.pinned", "pass", f"{ref} (floating; allowed in {ctx.env})")
    return verdict("image.pinned", problems, True, "")


@check("flow_dir.writable", "The CTP flow directory exists or can be created, and is writable")
def check_flow_dir(ctx: Context) -> CheckResult:
    path = ctx.settings.feed.path("flow_dir")
    reason = writable_dir_problem(path)
    problems = [Problem("FEEDOPS_FLOW_DIR", reason, "point FEEDOPS_FLOW_DIR at a writable directory (the CTP API crashes without one)",
                        ctx.settings.sources.get("FEEDOPS_FLOW_DIR"))] if reason else []
    state = "writable" if path.is_dir() else "will be created (parent writable)"
    return verdict("flow_dir.writable", problems, True, f"{path} {state}")


def calendar_horizon(mode: str, holidays_file: str | None, source: str | None) -> CheckResult:
    """calendar.horizon from the two settings it needs (FEEDOPS_CALENDAR, FEEDOPS_HOLIDAYS_FILE)."""
    from ..calendar import CalendarError, TradingCalendar

    if mode == "always-open":
        return CheckResult("calendar.horizon", "skip", "not needed: FEEDOPS_CALENDAR=always-open")
    try:
        calendar = TradingCalendar.from_file("exchange", holidays_file)
    except CalendarError as exc:
        reason, _, fix = str(exc).partition("; fix: ")
        return verdict("calendar.horizon", [Problem("FEEDOPS_HOLIDAYS_FILE", reason, fix or "fix the file", source)], True, "")
    horizon = calendar.horizon(clock.now())
    if horizon.status == "ok":
        return CheckResult("calendar.horizon", "pass", horizon.reason)
    # a warning, never a failure: the calendar judges health, it does not decide what is subscribed
    problem = Problem("FEEDOPS_HOLIDAYS_FILE", horizon.reason, horizon.fix, source)
    return CheckResult("calendar.horizon", "warn", str(problem), [problem], loud=horizon.status == "missing")


def _calendar_horizon_raw(values: Mapping[str, str]) -> CheckResult:
    mode = (values.get("FEEDOPS_CALENDAR") or "exchange").strip()
    return calendar_horizon(mode, (values.get("FEEDOPS_HOLIDAYS_FILE") or "").strip() or None, None)


@check("calendar.horizon", "The holiday calendar covers this year and, from 1 December, next year "
                           "(skipped on the always-open calendar; runs even when the configuration did not load)",
       standalone=_calendar_horizon_raw, standalone_vars=("FEEDOPS_CALENDAR", "FEEDOPS_HOLIDAYS_FILE"))
def check_calendar_horizon(ctx: Context) -> CheckResult:
    feed = ctx.settings.feed
    return calendar_horizon(feed.calendar, feed.holidays_file, ctx.settings.sources.get("FEEDOPS_HOLIDAYS_FILE"))


def locale_available(name: str, environ: Mapping[str, str]) -> str | None:
    """None when the C library can load locale ``name`` under ``environ`` (LOCPATH), else the reason."""
    code = "import locale,sys\ntry:\n locale.setlocale(locale.LC_ALL, sys.argv[1])\nexcept locale.Error as e:\n sys.exit(str(e))"
    try:
        done = subprocess.run([sys.executable, "-c", code, name], env=dict(environ), capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"could not test the locale ({exc})"
    return None if done.returncode == 0 else (done.stderr.strip().splitlines() or ["unsupported locale setting"])[-1]


@check("locale.gb18030", "The zh_CN.GB18030 locale openctp-ctp needs is available (only when FEEDOPS_CHANNEL=ctp)", ctp_only=True)
def check_locale(ctx: Context) -> CheckResult:
    reason = locale_available(GB18030_LOCALE, ctx.environ)
    locpath = ctx.environ.get("LOCPATH", "")
    problems = [Problem("LOCPATH", f"locale {GB18030_LOCALE} is not available ({reason}; LOCPATH={locpath or 'unset'})",
                        f"run make bootstrap and export LOCPATH={paths.ROOT / '.venv' / 'locale'}, or as root: "
                        "localedef -c -i zh_CN -f GB18030 zh_CN.GB18030")] if reason else []
    return verdict("locale.gb18030", problems, True, f"{GB18030_LOCALE} available" + (f" (LOCPATH={locpath})" if locpath else ""))
