"""What an alert is: one or more rules (severity, expression, for), annotations with the
observed values, the one command most likely to fix it, and its runbook page."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from .config import RUNBOOK_DIR

#: env label of every alert: the series' own, else Prometheus' external label.
ENV_TEMPLATE = "{{ with $labels.env }}{{ . }}{{ else }}{{ $externalLabels.env }}{{ end }}"


@dataclass(frozen=True)
class Rule:
    severity: str  # critical | warning | none
    expr: str
    for_: str  # e.g. "5m"
    threshold: str = ""  # replaces {threshold} in summary/description


def number(value: float) -> str:
    """A threshold as PromQL writes it: 30 not 30.0, 0.98, 2592000 not 2.592e+06."""
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def warn_crit(expr: str, warn: float, crit: float, for_: str, shown: Callable[[float], str]) -> tuple[Rule, Rule]:
    """The same alert at two thresholds (warning, critical): ``@T@`` in ``expr`` is the
    threshold, ``shown(threshold)`` replaces {threshold} in the annotations."""
    return (Rule("warning", expr.replace("@T@", number(warn)), for_, shown(warn)),
            Rule("critical", expr.replace("@T@", number(crit)), for_, shown(crit)))


@dataclass(frozen=True)
class Page:
    meaning: str
    impact: str
    diagnosis: tuple[str, ...]  # shell lines (comments start with #)
    mitigation: tuple[str, ...]
    escalation: str
    #: why the diagnosis block cannot run on the dev stack (docs/ops/README.md, "The pages run"); "" = it runs
    diagnosis_not_run: str = ""


@dataclass(frozen=True)
class Alert:
    name: str
    group: str  # feed | downstream | operations | meta
    rules: tuple[Rule, ...]
    summary: str
    description: str
    fix: str  # one command from this repository
    page: Page
    extra_labels: dict[str, str] = field(default_factory=dict)

    @property
    def market_hours(self) -> bool:
        """Silent while the market is closed: every rule requires open instruments."""
        return all("feedops_instruments_open" in rule.expr for rule in self.rules)

    @property
    def runbook_url(self) -> str:
        return f"{RUNBOOK_DIR}/{self.name}.md"

    def rule_dicts(self) -> list[dict]:
        out = []
        for rule in self.rules:
            labels = {"severity": rule.severity, "env": ENV_TEMPLATE, **self.extra_labels}
            out.append({
                "alert": self.name,
                "expr": rule.expr,
                "for": rule.for_,
                "labels": labels,
                "annotations": {
                    "summary": self.summary.replace("{threshold}", rule.threshold),
                    "description": self.description.replace("{threshold}", rule.threshold),
                    "runbook_url": self.runbook_url,
                    "fix": self.fix,
                },
            })
        return out
