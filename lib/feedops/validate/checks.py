"""The pre-market checklist: named checks with stable ids.

Each check looks at the loaded :class:`~feedops.settings.Settings` (and, for the
``probe.*`` checks, at the network) and returns a :class:`CheckResult`: a status
(pass, warn, fail, skip), a one-line summary and the problems found, each naming
the setting at fault and the fix. docs/ops/premarket-checklist.md lists the same
ids (a test keeps them in step). Nothing here prints or exits; secret values
never enter a summary or a problem.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from .. import clock, paths
from ..addresses import FRONT_RE
from ..devsecrets import DEV_SECRET_PREFIX
from ..settings import (
    CTP_MAX_SUBSCRIBE_BATCH,
    CtpProfile,
    Problem,
    Settings,
    secret_env_vars,
)

STATUSES = ("pass", "warn", "fail", "skip")
STRICT_ENVS = ("staging", "prod")  # environments where a missing backup halts startup
GB18030_LOCALE = "zh_CN.GB18030"
#: Secret values an operator obviously has not filled in (compared case-insensitively).
PLACEHOLDER_SECRETS = frozenset({
    "changeme", "change-me", "change_me", "password", "passwd", "secret", "placeholder", "todo", "tbd",
    "fixme", "example", "dummy", "test", "none", "null", "123456", "000000", "<secret>",
})
_PLACEHOLDER_PATTERNS = (re.compile(r"^<.*>$"), re.compile(r"^\$\{.*\}$"), re.compile(r"^(x+|\*+|\.+)$", re.I))
#: Host names reserved for documentation (RFC 2606 / RFC 6761): a front there is a placeholder.
_RESERVED_HOST = re.compile(r"(^|\.)(example|invalid|test)$|(^|\.)example\.(com|net|org)$", re.I)
RATE_LIMIT_SETTINGS = frozenset({
    "FEEDOPS_SUBSCRIBE_BATCH_SIZE", "FEEDOPS_SUBSCRIBE_BATCH_INTERVAL_SECONDS", "FEEDOPS_QUERY_RATE_PER_SECOND",
    "FEEDOPS_MAX_RETRIES", "FEEDOPS_RETRY_BACKOFF_SECONDS", "FEEDOPS_RETRY_BACKOFF_MAX_SECONDS",
})


@dataclass
class CheckResult:
    id: str
    status: str  # one of STATUSES
    summary: str  # one line, no secret
    problems: list[Problem] = field(default_factory=list)
    loud: bool = False  # a warning logged at ERROR level: wrong now, yet no reason to halt


@dataclass
class Context:
    """What a check may look at."""

    settings: Settings
    environ: Mapping[str, str]
    probe_timeout: float = 2.0

    @property
    def env(self) -> str:
        return self.settings.feed.env


@dataclass(frozen=True)
class CheckSpec:
    id: str
    title: str  # what the check enforces, as the operator's checklist says it
    run: Callable[[Context], CheckResult]
    probe: bool = False  # only with --probe
    ctp_only: bool = False  # only when FEEDOPS_CHANNEL=ctp
    #: runs from its own variables (``standalone_vars``, raw strings) when the configuration did not load
    standalone: Callable[[Mapping[str, str]], CheckResult] | None = None
    standalone_vars: tuple[str, ...] = ()


CHECKS: list[CheckSpec] = []


def check(check_id: str, title: str, *, probe: bool = False, ctp_only: bool = False,
          standalone: Callable[[Mapping[str, str]], CheckResult] | None = None, standalone_vars: tuple[str, ...] = ()):
    def register(func: Callable[[Context], CheckResult]) -> Callable[[Context], CheckResult]:
        CHECKS.append(CheckSpec(check_id, title, func, probe, ctp_only, standalone, standalone_vars))
        return func
    return register


def check_ids() -> list[str]:
    return [spec.id for spec in CHECKS]


def owner_of(setting: str) -> str:
    """The check a configuration problem about ``setting`` belongs to."""
    if re.fullmatch(r"CTP_(PRIMARY|BACKUP)_(MD|TD)_FRONTS", setting):
        return "fronts.well_formed"
    if setting in secret_env_vars() or setting == "FEEDOPS_SECRETS_DIR":
        return "secrets.present"
    if setting in RATE_LIMIT_SETTINGS:
        return "ratelimits.ctp_limits"
    if setting == "FEEDOPS_FLOW_DIR":
        return "flow_dir.writable"
    return "settings.load"


def _verdict(check_id: str, problems: list[Problem], fail: bool, ok_summary: str, bad_summary: str | None = None) -> CheckResult:
    if not problems:
        return CheckResult(check_id, "pass", ok_summary)
    status = "fail" if fail else "warn"
    summary = bad_summary or (str(problems[0]) if len(problems) == 1 else f"{len(problems)} problems")
    return CheckResult(check_id, status, summary, problems)


def mask_url(url: str) -> str:
    """``url`` without a password in its user-info part (redis://:pw@host -> redis://:***@host)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


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
    return _verdict("settings.load", list(s.warnings), False, f"loaded {where}; secrets directories: {dirs}")


@check("profile.required", "The active CTP profile has fronts, broker id, user id and app id")
def check_profile_required(ctx: Context) -> CheckResult:
    profile = ctx.settings.active
    name = _profile_name(profile)
    secrets = secret_env_vars()
    problems = [_missing_problem(var, ctx.env, f"required for the active profile ({name}) but not set")
                for var in profile.missing() if var not in secrets]
    return _verdict("profile.required", problems, True,
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
    return _verdict("profile.backup_complete", problems, strict,
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
    return _verdict("fronts.well_formed", problems, fail, f"{count} front addresses well formed")


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
    return _verdict("secrets.present", problems, True, "; ".join(origins))


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
    return _verdict("secrets.not_placeholder", problems, True, f"{seen} secrets set, none a placeholder")


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
    return _verdict("ratelimits.ctp_limits", hard + soft, bool(hard),
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
    return _verdict("image.pinned", problems, True, "")


@check("flow_dir.writable", "The CTP flow directory exists or can be created, and is writable")
def check_flow_dir(ctx: Context) -> CheckResult:
    path = ctx.settings.feed.path("flow_dir")
    reason = writable_dir_problem(path)
    problems = [Problem("FEEDOPS_FLOW_DIR", reason, "point FEEDOPS_FLOW_DIR at a writable directory (the CTP API crashes without one)",
                        ctx.settings.sources.get("FEEDOPS_FLOW_DIR"))] if reason else []
    state = "writable" if path.is_dir() else "will be created (parent writable)"
    return _verdict("flow_dir.writable", problems, True, f"{path} {state}")


def calendar_horizon(mode: str, holidays_file: str | None, source: str | None) -> CheckResult:
    """calendar.horizon from the two settings it needs (FEEDOPS_CALENDAR, FEEDOPS_HOLIDAYS_FILE)."""
    from ..calendar import CalendarError, TradingCalendar

    if mode == "always-open":
        return CheckResult("calendar.horizon", "skip", "not needed: FEEDOPS_CALENDAR=always-open")
    try:
        calendar = TradingCalendar.from_file("exchange", holidays_file)
    except CalendarError as exc:
        reason, _, fix = str(exc).partition("; fix: ")
        return _verdict("calendar.horizon", [Problem("FEEDOPS_HOLIDAYS_FILE", reason, fix or "fix the file", source)], True, "")
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
    return _verdict("locale.gb18030", problems, True, f"{GB18030_LOCALE} available" + (f" (LOCPATH={locpath})" if locpath else ""))


# --------------------------------------------------------------------------- probes
def tcp_probe(host: str, port: int, timeout: float) -> str | None:
    """None when a TCP connection to host:port succeeds within ``timeout``, else the reason."""
    try:
        with socket.create_connection((host.strip("[]"), port), timeout=timeout):
            return None
    except socket.timeout:
        return f"no answer within {timeout:g} s"
    except OSError as exc:
        return exc.strerror or str(exc)


@check("probe.fronts_tcp", "Each front accepts a TCP connection (at least one md and one td front of the active profile)", probe=True)
def check_fronts_tcp(ctx: Context) -> CheckResult:
    s = ctx.settings
    targets: list[tuple[CtpProfile, str, str]] = []
    for profile in (s.active, s.backup if s.active is s.primary else s.primary):
        for name in ("md_fronts", "td_fronts"):
            targets.extend((profile, profile.env_var(name), url) for url in dict.fromkeys(getattr(profile, name)))
    if not targets:
        return CheckResult("probe.fronts_tcp", "skip", "no front configured")

    def probe(target: tuple[CtpProfile, str, str]) -> str | None:
        m = FRONT_RE.match(target[2])
        return tcp_probe(m.group("host"), int(m.group("port")), ctx.probe_timeout) if m else "malformed address"

    with ThreadPoolExecutor(max_workers=min(16, len(targets))) as pool:
        reasons = list(pool.map(probe, targets))
    problems: list[Problem] = []
    fail = False
    for var in dict.fromkeys(t[1] for t in targets):
        rows = [(t, r) for t, r in zip(targets, reasons) if t[1] == var]
        down = [(t, r) for t, r in rows if r]
        for (_, _, url), reason in down:
            problems.append(Problem(var, f"{url} does not accept TCP connections ({reason})",
                                    "check the address with the broker and the network path (firewall, VPN); "
                                    "in dev start ctp-sim (make sim)"))
        if rows and len(down) == len(rows) and rows[0][0][0] is s.active:
            fail = True
    up = reasons.count(None)
    return _verdict("probe.fronts_tcp", problems, fail, f"{up} of {len(targets)} fronts accept TCP connections",
                    f"{up} of {len(targets)} fronts accept TCP connections" + ("; the active profile has no reachable front of a kind" if fail else ""))


MONITORING_ENDPOINTS = (
    ("prometheus", "/-/ready"),
    ("pushgateway", "/-/ready"),
    ("alertmanager", "/-/ready"),
    ("grafana", "/api/health"),
)


def http_probe(url: str, timeout: float) -> str | None:
    """None when GET ``url`` answers 2xx within ``timeout`` (no proxy), else the reason."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=timeout) as resp:
            return None if 200 <= resp.status < 300 else f"HTTP {resp.status}"
    except urllib.error.HTTPError as exc:
        return f"HTTP {exc.code}"
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return str(getattr(exc, "reason", exc))


@check("probe.monitoring", "Each enabled monitoring endpoint (Prometheus, Pushgateway, Alertmanager, Grafana) answers its health URL", probe=True)
def check_monitoring(ctx: Context) -> CheckResult:
    f = ctx.settings.feed
    enabled = [(name, getattr(f, f"{name}_url").rstrip("/"), path) for name, path in MONITORING_ENDPOINTS if getattr(f, f"{name}_enabled")]
    if not enabled:
        return CheckResult("probe.monitoring", "skip", "no monitoring endpoint enabled")
    with ThreadPoolExecutor(max_workers=len(enabled)) as pool:
        reasons = list(pool.map(lambda e: http_probe(e[1] + e[2], ctx.probe_timeout), enabled))
    problems = [Problem(f"FEEDOPS_{name.upper()}_URL", f"{mask_url(base)}{path} did not answer ({reason})",
                        f"start {name} or correct FEEDOPS_{name.upper()}_URL (or set FEEDOPS_{name.upper()}_ENABLED=false)")
                for (name, base, path), reason in zip(enabled, reasons) if reason]
    return _verdict("probe.monitoring", problems, False, f"{len(enabled)} monitoring endpoints answer: {', '.join(e[0] for e in enabled)}")


@check("probe.sink", "The tick sink is reachable: Redis answers PING, or the file sink directory is writable", probe=True)
def check_sink(ctx: Context) -> CheckResult:
    url = ctx.settings.feed.sink_url
    shown = mask_url(url)
    if url.startswith("file:"):
        path = Path(url[len("file:"):].removeprefix("//"))
        reason = writable_dir_problem(paths.resolve(path))
    else:
        reason = redis_ping(url, ctx.probe_timeout)
    problems = [Problem("FEEDOPS_SINK_URL", f"{shown}: {reason}", "start the sink or correct FEEDOPS_SINK_URL",
                        ctx.settings.sources.get("FEEDOPS_SINK_URL"))] if reason else []
    return _verdict("probe.sink", problems, True, f"{shown} reachable")


def redis_ping(url: str, timeout: float) -> str | None:
    import redis

    try:
        client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
        try:
            client.ping()
        finally:
            client.close()
    except (redis.RedisError, OSError, ValueError) as exc:
        return f"Redis did not answer PING ({type(exc).__name__}: {mask_url(str(exc))})"
    return None
