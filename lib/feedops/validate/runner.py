"""Run the pre-market checklist and turn it into a report (dict, table, metrics).

The report's JSON shape is lib/feedops/schemas/validate-report.schema.json. A
configuration that does not load is not an error of the checker: every problem
of the :class:`~feedops.settings.ConfigError` becomes a failed check (the one
owning the variable, see :func:`~feedops.validate.registry.owner_of`) and the
checks that need a loaded configuration are skipped.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from .. import __version__, metric_names
from ..addresses import mask_url
from ..envfile import EnvFileError, parse_env_file
from ..exitcodes import Check
from ..log import redact, register_secret, utc_timestamp
from ..push import push_run
from ..settings import ENV_NAMES, ConfigError, FeedSettings, Problem, Settings, load_settings, secret_env_vars
from ..settings_sources import env_file_for
from .registry import CHECKS, CheckResult, Context, owner_of

CHECKER = "validate_env"
STATUS_CODE = {"pass": Check.OK, "warn": Check.WARNING, "fail": Check.CRITICAL, "unknown": Check.UNKNOWN}
CHECK_STATUS_VALUE = {"pass": 0, "warn": 1, "fail": 2}


@dataclass
class Report:
    env: str
    profile: str | None
    channel: str | None
    env_file: str | None
    probe: bool
    results: list[CheckResult]
    started: float = field(default_factory=time.time)
    duration_seconds: float = 0.0
    push: dict[str, Any] = field(default_factory=lambda: {"enabled": False, "url": None, "error": None})

    @property
    def status(self) -> str:
        statuses = {r.status for r in self.results}
        return "fail" if "fail" in statuses else "warn" if "warn" in statuses else "pass"

    @property
    def exit_code(self) -> int:
        return int(STATUS_CODE[self.status])

    def counts(self) -> dict[str, int]:
        return {status: sum(1 for r in self.results if r.status == status) for status in ("pass", "warn", "fail", "skip")}

    def to_dict(self) -> dict[str, Any]:
        titles = {spec.id: spec.title for spec in CHECKS}
        return _scrub({
            "checker": CHECKER,
            "version": __version__,
            "status": self.status,
            "exit_code": self.exit_code,
            "time": utc_timestamp(),
            "duration_seconds": round(self.duration_seconds, 4),
            "env": self.env,
            "profile": self.profile,
            "channel": self.channel,
            "env_file": self.env_file,
            "probe": self.probe,
            "counts": self.counts(),
            "checks": [
                {"id": r.id, "title": titles.get(r.id, ""), "status": r.status, "summary": r.summary,
                 "problems": [{"setting": p.setting, "message": p.message, "fix": p.fix, "source": p.source} for p in r.problems]}
                for r in self.results
            ],
            "push": dict(self.push),
        })


def _scrub(value: Any) -> Any:
    """Redact every registered secret from every string of the report (defence in depth)."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: _scrub(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v) for v in value]
    return value


def register_environment_secrets(environ: Mapping[str, str]) -> None:
    """Register secret values from the environment before anything can fail, so no output shows them."""
    for var in secret_env_vars():
        register_secret(environ.get(var))


def run_checklist(env: str | None = None, *, profile: str | None = None, probe: bool = False,
                  environ: Mapping[str, str] | None = None, env_file: Path | None = None,
                  probe_timeout: float = 2.0) -> tuple[Report, Settings | None]:
    """Load the settings and run every check; never raises ConfigError."""
    started = time.monotonic()
    environ = dict(os.environ if environ is None else environ)
    register_environment_secrets(environ)
    overrides = {"FEEDOPS_ACTIVE_PROFILE": profile} if profile else {}
    env_name = env or environ.get("FEEDOPS_ENV") or "dev"
    try:
        settings: Settings | None = load_settings(env, environ=environ, overrides=overrides, env_file=env_file)
        load_problems: list[Problem] = []
    except ConfigError as exc:
        settings, load_problems = None, exc.problems

    results: list[CheckResult] = []
    for spec in CHECKS:
        if settings is None and spec.standalone is not None:  # needs only a few values of its own
            results.append(spec.standalone(raw_values(spec.standalone_vars, env, environ, env_file)))
        elif settings is None:
            results.append(_from_load_problems(spec.id, load_problems))
        elif spec.probe and not probe:
            results.append(CheckResult(spec.id, "skip", "not run: add --probe to test connectivity"))
        elif spec.ctp_only and settings.feed.channel != "ctp":
            results.append(CheckResult(spec.id, "skip", f"not needed: FEEDOPS_CHANNEL={settings.feed.channel}"))
        else:
            results.append(spec.run(Context(settings, environ, probe_timeout)))
    report = Report(
        env=settings.feed.env if settings else env_name,
        profile=settings.feed.active_profile if settings else profile,
        channel=settings.feed.channel if settings else None,
        env_file=str(settings.env_file) if settings and settings.env_file else (str(env_file) if env_file else None),
        probe=probe,
        results=results,
    )
    report.duration_seconds = time.monotonic() - started
    return report, settings


def _from_load_problems(check_id: str, problems: list[Problem]) -> CheckResult:
    own = [p for p in problems if owner_of(p.setting) == check_id]
    if check_id == "settings.load":
        others = sorted({owner_of(p.setting) for p in problems} - {"settings.load"})
        tail = f"; see also {', '.join(others)}" if others else ""
        return CheckResult(check_id, "fail", f"the configuration did not load: {len(problems)} problem(s){tail}", own)
    if own:
        summary = str(own[0]) if len(own) == 1 else f"{len(own)} problems"
        return CheckResult(check_id, "fail", summary, own)
    return CheckResult(check_id, "skip", "not run: the configuration did not load (see settings.load)")


# --------------------------------------------------------------------------- output
def render_table(report: Report) -> str:
    """The readable report: one line per check, one indented line per problem."""
    width = max(len(r.id) for r in report.results)
    lines = [f"validate_env: env={report.env} profile={report.profile or '-'} channel={report.channel or '-'} "
             f"env_file={report.env_file or '-'}" + (" probe=on" if report.probe else ""),
             f"{'STATUS':<6}  {'CHECK':<{width}}  SUMMARY"]
    for r in report.results:
        shown = r.status.upper() if r.status in ("fail", "warn") else r.status
        lines.append(f"{shown:<6}  {r.id:<{width}}  {r.summary}")
        lines.extend(f"{'':<6}  {'':<{width}}  - {p}" for p in r.problems if not (len(r.problems) == 1 and r.summary == str(p)))
    c = report.counts()
    lines.append(f"result: {report.status.upper()} (exit {report.exit_code}): {c['fail']} failed, {c['warn']} warnings, "
                 f"{c['pass']} passed, {c['skip']} skipped")
    if report.push["enabled"]:
        lines.append(f"push: {report.push['url']}: " + (report.push["error"] or "ok"))
    return redact("\n".join(lines)) + "\n"


# --------------------------------------------------------------------------- push
def raw_values(names: tuple[str, ...], env: str | None, environ: Mapping[str, str],
               env_file: Path | None = None) -> dict[str, str]:
    """``names`` read on their own (environment over env file), for what must work even when the
    configuration as a whole did not load."""
    values: dict[str, str] = {}
    env_name = env or environ.get("FEEDOPS_ENV") or "dev"
    path = env_file or (env_file_for(env_name) if env_name in ENV_NAMES else None)
    if path is not None and path.is_file():
        try:
            values.update({k: v for k, v in parse_env_file(path).items() if k in names})
        except EnvFileError:
            pass
    values.update({k: v for k, v in environ.items() if k in names})
    return values


def pushgateway_target(settings: Settings | None, env: str | None, environ: Mapping[str, str],
                       env_file: Path | None = None) -> str | None:
    """Pushgateway URL when pushing is enabled, else None.

    With a configuration that did not load, the two Pushgateway variables are read
    on their own (environment over env file) so that a misconfiguration still alerts.
    """
    if settings is not None:
        return settings.feed.pushgateway_url if settings.feed.pushgateway_enabled else None
    values = raw_values(("FEEDOPS_PUSHGATEWAY_ENABLED", "FEEDOPS_PUSHGATEWAY_URL"), env, environ, env_file)
    if values.get("FEEDOPS_PUSHGATEWAY_ENABLED", "").strip().lower() not in ("1", "true", "yes", "on"):
        return None
    return values.get("FEEDOPS_PUSHGATEWAY_URL") or FeedSettings.model_fields["pushgateway_url"].default


def outcome_registries(report: Report) -> tuple[CollectorRegistry, CollectorRegistry | None]:
    """The metrics pushed for one run (CHECK_* specs, checker="validate_env"), and the
    last-success timestamp separately when the run did not fail."""
    registry = CollectorRegistry()
    now = time.time()
    metric_names.CHECK_STATUS.create(registry).labels(checker=CHECKER).set(report.exit_code)
    per_check = metric_names.CHECK_CHECK_STATUS.create(registry)
    for r in report.results:  # skipped checks are left out: 3 (unknown) would look like a failure
        if r.status == "skip":
            continue
        per_check.labels(checker=CHECKER, check=r.id).set(CHECK_STATUS_VALUE[r.status])
    metric_names.CHECK_DURATION.create(registry).labels(checker=CHECKER).set(report.duration_seconds)
    metric_names.CHECK_LAST_RUN.create(registry).labels(checker=CHECKER).set(now)
    if report.status == "fail":
        return registry, None
    success = CollectorRegistry()
    metric_names.CHECK_LAST_SUCCESS.create(success).labels(checker=CHECKER).set(now)
    return registry, success


def push_outcome(report: Report, url: str, timeout: float = 2.0) -> str | None:
    """Push the run's outcome; records and returns the failure reason (None on success)."""
    registry, success = outcome_registries(report)
    error = push_run(url, metric_names.PUSH_JOB_VALIDATE, registry, {"instance": socket.gethostname()},
                     success_registry=success, timeout=timeout)
    report.push = {"enabled": True, "url": mask_url(url), "error": redact(mask_url(error)) if error else None}
    return error
