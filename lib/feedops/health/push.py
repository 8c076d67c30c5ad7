"""Push a health run's outcome to Pushgateway (job ``feedops_check_feed_health``).

Two groups, so that a failing run never erases the last success:

* ``{job, instance=<env>}`` (replaced by every run): status, per-check observed
  values and statuses, duration, last-run time;
* ``{job, instance=<env>, result="success"}`` (replaced only by runs whose verdict is
  OK or WARNING): the last success time.

A failed push returns its reason; the caller reports and logs it, the verdict stays.
"""

from __future__ import annotations

from .. import metric_names as mn
from ..exitcodes import Check
from ..push import push_run
from .checks import CheckResult

CHECKER = "check_feed_health"
STATUS_CODE = {"pass": 0, "warn": 1, "fail": 2}
SUCCESS = (Check.OK, Check.WARNING)


def grouping_key(instance: str) -> dict[str, str]:
    return {"instance": instance}


def check_label(result: CheckResult) -> str:
    component = result.component_id
    return result.key if component in (None, "all") else f"{result.key}/{component}"


def push_results(results: list[CheckResult], code: Check, url: str, instance: str, *, duration_seconds: float,
                 run_unix: float, timeout: float = 2.0) -> str | None:
    """Push a run; None on success, else the reason (for the report and the log)."""
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry()
    mn.CHECK_STATUS.create(registry).labels(CHECKER).set(int(code))
    mn.CHECK_DURATION.create(registry).labels(CHECKER).set(duration_seconds)
    mn.CHECK_LAST_RUN.create(registry).labels(CHECKER).set(run_unix)
    values = mn.CHECK_VALUE.create(registry)
    statuses = mn.CHECK_CHECK_STATUS.create(registry)
    for result in results:
        label = check_label(result)
        statuses.labels(CHECKER, label).set(3 if result.unknown else STATUS_CODE[result.status])
        if isinstance(result.observed_value, (bool, int, float)):
            values.labels(CHECKER, label).set(float(result.observed_value))
    success = None
    if code in SUCCESS:
        success = CollectorRegistry()
        mn.CHECK_LAST_SUCCESS.create(success).labels(CHECKER).set(run_unix)
    error = push_run(url, mn.PUSH_JOB_HEALTH, registry, grouping_key(instance), success_registry=success, timeout=timeout)
    return error
