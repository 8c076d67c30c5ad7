"""The checklist's frame: what a check gets (:class:`Context`) and returns (:class:`CheckResult`), the
registry the ``@check`` decorator fills (:data:`CHECKS`, in the order the checks are declared:
configuration checks in :mod:`.checks`, then network probes in :mod:`.probes`), which check owns a
configuration problem about a variable (:func:`owner_of`) and the pass/warn/fail verdict.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from ..settings import Problem, Settings, secret_env_vars

STATUSES = ("pass", "warn", "fail", "skip")
STRICT_ENVS = ("staging", "prod")  # environments where a missing backup halts startup
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


def verdict(check_id: str, problems: list[Problem], fail: bool, ok_summary: str, bad_summary: str | None = None) -> CheckResult:
    if not problems:
        return CheckResult(check_id, "pass", ok_summary)
    status = "fail" if fail else "warn"
    summary = bad_summary or (str(problems[0]) if len(problems) == 1 else f"{len(problems)} problems")
    return CheckResult(check_id, status, summary, problems)
