"""The health report: IETF health-check shape, verdict, exit code and renderings.

Shape (``lib/feedops/schemas/health-report.schema.json``): ``status`` pass/warn/fail,
``checks`` keyed ``component:measurement``, each an array of entries with
``componentId``, ``observedValue``, ``observedUnit``, ``status``, ``time`` and
``output``; plus the verdict and exit code (Nagios), the thresholds applied, the
market state, the coverage detail and the push outcome.

Verdict: CRITICAL when a judged check failed; else UNKNOWN when a source could not be
read; else WARNING when a check warned; else OK. UNKNOWN reports ``status: fail``
(the feed's health could not be confirmed).
"""

from __future__ import annotations

import datetime as _dt
import json
from typing import Any

from .. import __version__
from ..exitcodes import Check
from ..log import utc_timestamp
from .checks import FAIL, PASS, WARN, CheckResult

SERVICE_ID = "feedops-feed"
FORMATS = ("json", "text", "nagios")
STATUS_OF = {Check.OK: PASS, Check.WARNING: WARN, Check.CRITICAL: FAIL, Check.UNKNOWN: FAIL}


def verdict(results: list[CheckResult]) -> Check:
    if any(r.status == FAIL and not r.unknown for r in results):
        return Check.CRITICAL
    if any(r.unknown for r in results):
        return Check.UNKNOWN
    if any(r.status == WARN for r in results):
        return Check.WARNING
    return Check.OK


def _problems(results: list[CheckResult]) -> list[CheckResult]:
    order = {FAIL: 0, WARN: 1}
    return sorted((r for r in results if r.status != PASS), key=lambda r: order[r.status])


def summary(results: list[CheckResult], code: Check) -> str:
    """One line: the verdict and the reasons (fails first)."""
    problems = _problems(results)
    if not problems:
        return f"{code.name}: all {len(results)} checks pass"
    shown = [f"{r.key}{'[' + r.component_id + ']' if r.component_id and r.component_id != 'all' else ''}: {r.output}"
             for r in problems[:3]]
    more = f" (+{len(problems) - 3} more)" if len(problems) > 3 else ""
    return f"{code.name}: " + " | ".join(shown) + more


def build(results: list[CheckResult], *, at: _dt.datetime, extra: dict[str, Any]) -> dict[str, Any]:
    code = verdict(results)
    time = utc_timestamp(at)
    checks: dict[str, list[dict[str, Any]]] = {}
    for r in results:
        checks.setdefault(r.key, []).append(r.as_dict(time))
    report: dict[str, Any] = {
        "status": STATUS_OF[code],
        "verdict": code.name,
        "exitCode": int(code),
        "version": "1",
        "releaseId": __version__,
        "serviceId": SERVICE_ID,
        "description": "feedops market-data feed health (check_feed_health.py)",
        "time": utc_timestamp(),
        "at": time,
        "output": summary(results, code),
        "checks": checks,
    }
    report.update(extra)
    return report


def unknown(reason: str, *, at: _dt.datetime | None = None, component: str = "checker:arguments") -> dict[str, Any]:
    """The report of a run that could not start (bad arguments, settings, holiday file)."""
    result = CheckResult(component, FAIL, None, None, reason, None, "system", unknown=True)
    report = build([result], at=at or _dt.datetime.now(_dt.timezone.utc), extra={})
    report["output"] = f"UNKNOWN: {reason}"
    return report


# ---------------------------------------------------------------------------- renderings
def render(report: dict[str, Any], fmt: str) -> str:
    if fmt == "json":
        return json.dumps(report, indent=2, ensure_ascii=False)
    if fmt == "nagios":
        return render_nagios(report)
    return render_text(report)


def _value(entry: dict[str, Any]) -> str:
    value, unit = entry.get("observedValue"), entry.get("observedUnit")
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if unit == "ratio" and isinstance(value, (int, float)):
        return f"{value * 100:.2f}%"
    if isinstance(value, float):
        value = f"{value:.3f}".rstrip("0").rstrip(".")
    return f"{value}{' ' + unit if unit and unit not in ('ratio',) else ''}"


def render_text(report: dict[str, Any]) -> str:
    market = report.get("market") or {}
    head = f"feedops health: {report['verdict']} ({report['status']})  at {report['at']}"
    if market:
        head += f"  trading day {market.get('tradingDay')}  market {'open' if market.get('open') else 'closed'}"
    lines = [head, report["output"]]
    cov = report.get("coverage")
    if cov and cov.get("by_exchange"):
        lines.append("")
        lines.append(f"{'EXCHANGE':<9}{'OPEN':>7}{'FRESH':>7}{'COVERAGE':>10}")
        for ex, b in cov["by_exchange"].items():
            ratio = "closed" if b.get("ratio") is None else f"{b['ratio'] * 100:.2f}%"
            lines.append(f"{ex:<9}{b['open']:>7}{b['fresh']:>7}{ratio:>10}")
        total = "closed" if cov.get("ratio") is None else f"{cov['ratio'] * 100:.2f}%"
        lines.append(f"{'all':<9}{cov['open']:>7}{cov['fresh']:>7}{total:>10}")
    lines.append("")
    rows = [("STATUS", "CHECK", "COMPONENT", "VALUE", "OUTPUT")]
    for key, entries in report["checks"].items():
        for e in entries:
            rows.append((e["status"].upper(), key, str(e.get("componentId") or ""), _value(e), e["output"]))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for r in rows:
        lines.append("  ".join(c.ljust(widths[i]) for i, c in enumerate(r[:4])) + "  " + r[4])
    push = report.get("push") or {}
    if push.get("enabled"):
        lines.append("")
        lines.append(f"push: {'ok' if push.get('ok') else 'FAILED: ' + str(push.get('error'))}")
    return "\n".join(lines)


_PERFDATA = (  # (check key, perfdata label, unit, warn threshold, crit threshold, min, max)
    ("coverage:ratio", "coverage", "", "coverage_warn_ratio", "coverage_crit_ratio", 0, 1),
    ("staleness:newest-tick-age", "staleness", "s", "staleness_warn_seconds", "staleness_crit_seconds", 0, None),
    ("throughput:ticks-per-second", "ticks_per_second", "", None, None, 0, None),
    ("latency:p99", "latency_p99", "s", "latency_p99_warn_seconds", "latency_p99_crit_seconds", 0, None),
    ("ratelimit:incidents", "rate_limit_incidents", "", "rate_limit_incidents_warn", None, 0, None),
    ("latency:clock-skew", "clock_skew", "s", None, None, None, None),
    ("ticks:lost", "ticks_lost", "", None, None, 0, None),
    ("errors:count", "errors", "", None, None, 0, None),
    ("redis:consumer-lag", "consumer_lag", "", "consumer_lag_warn", "consumer_lag_crit", 0, None),
    ("premarket:age", "premarket_age", "s", "premarket_max_age_seconds", None, 0, None),
)


def render_nagios(report: dict[str, Any]) -> str:
    """``FEEDOPS HEALTH <VERDICT> - <reasons> | perfdata`` on one line."""
    thresholds = report.get("thresholds") or {}
    perf = []
    for key, label, unit, warn, crit, lo, hi in _PERFDATA:
        values = [e["observedValue"] for e in report["checks"].get(key, [])
                  if isinstance(e.get("observedValue"), (int, float)) and not isinstance(e.get("observedValue"), bool)]
        if not values:
            continue
        value = values[0] if key == "coverage:ratio" else max(values)
        fields = [f"{value:g}{unit}", _num(thresholds.get(warn)), _num(thresholds.get(crit)), _num(lo), _num(hi)]
        perf.append(f"{label}=" + ";".join(fields).rstrip(";"))
    text = report["output"].split(": ", 1)[1] if ": " in report["output"] else report["output"]
    line = f"FEEDOPS HEALTH {report['verdict']} - {text}".replace("|", "/").replace("\n", " ")
    return line + (" | " + " ".join(perf) if perf else "")


def _num(value: Any) -> str:
    return "" if value is None else f"{value:g}"
