"""Grafana building blocks, as code: the datasource, PromQL selectors shared by the panels' queries,
value mappings and thresholds, the panel kinds (time series, state timeline, stat, bar gauge),
the template variables and the dashboard frame that lays rows of panels out on Grafana's grid.
The dashboards themselves are :mod:`.dashboards`.
"""

from __future__ import annotations

from .. import metric_names as mn
from ..exitcodes import Check, Runbook

DATASOURCE_UID = "feedops-prometheus"
DATASOURCE = {"type": "prometheus", "uid": DATASOURCE_UID}
SCHEMA_VERSION = 41  # Grafana 11.6
TAG = "feedops"

# Label matchers shared by the queries.
ENV = 'env=~"$env"'
WORKER = ENV + ',instance=~"$worker"'
EXCHANGE = WORKER + ',exchange=~"$exchange"'
STREAM = ENV + ',stream=~".+:$exchange"'  # the Redis sink writes one stream per exchange, <prefix>:<EXCHANGE>
RATE = "[$__rate_interval]"


def sel(spec: mn.MetricSpec | str, matchers: str, suffix: str = "") -> str:
    """``name{matchers}`` for a metric spec (or an exporter's metric name)."""
    name = spec.name if isinstance(spec, mn.MetricSpec) else spec
    return f"{name}{suffix}{{{matchers}}}"


def events(spec: mn.MetricSpec, by: str, fn: str = "increase") -> str:
    """A worker counter's events per rate window (``fn="rate"``: per second) by ``by``, or one 0 labelled
    ``none`` while a worker is scraped and nothing happened: a labelled counter has no series before its
    first event, and "No data" would not tell "none" from "no worker"."""
    zero = f'label_replace(0 * max({sel(mn.WORKER_UP, WORKER)}), "{by}", "none", "", "")'
    return f"sum by ({by}) ({fn}({sel(spec, WORKER)}{RATE})) or on () {zero}"


def quantile(q: float, spec: mn.MetricSpec, matchers: str, by: str = "") -> str:
    return f"histogram_quantile({q}, sum by ({by}le) (rate({sel(spec, matchers, '_bucket')}{RATE})))"


# ---------------------------------------------------------------- panel builders
def mappings_of(codes: dict[int, tuple[str, str]]) -> list[dict]:
    return [{"type": "value", "options": {str(value): {"text": text, "color": color, "index": i}
                                          for i, (value, (text, color)) in enumerate(sorted(codes.items()))}}]


CHECK_MAPPINGS = mappings_of({int(c): (c.name, color) for c, color in
                            zip(Check, ("green", "yellow", "red", "purple"), strict=True)})
RUNBOOK_MAPPINGS = mappings_of({int(c): (f"{int(c)} {c.name}", "green" if c == Runbook.OK else "red") for c in Runbook})
YES_NO = mappings_of({0: ("no", "red"), 1: ("yes", "green")})
ACTIVE_STANDBY = mappings_of({0: ("standby", "text"), 1: ("active", "green")})


def threshold_steps(*steps: tuple[str, float | None]) -> dict:
    return {"mode": "absolute", "steps": [{"color": color, "value": value} for color, value in steps]}


def panel(kind: str, title: str, description: str, queries: list[tuple[str, str]], *, w: int = 12, h: int = 8,
          unit: str = "short", instant: bool = False, mappings: list | None = None, thresholds: dict | None = None,
          custom: dict | None = None, options: dict | None = None, overrides: list | None = None,
          **defaults) -> dict:
    """One panel; ``queries`` are (expr, legend) pairs. Its position is set by :func:`dashboard`."""
    field_defaults = {"unit": unit, **defaults}
    if mappings:
        field_defaults["mappings"] = mappings
    custom = dict(custom or {})
    if thresholds:
        field_defaults["thresholds"] = thresholds
        if kind == "timeseries":  # drawn as lines; the series keep their own colours
            custom["thresholdsStyle"] = {"mode": "line"}
        else:
            field_defaults["color"] = {"mode": "thresholds"}
    if custom:
        field_defaults["custom"] = custom
    targets = [{"datasource": DATASOURCE, "refId": chr(ord("A") + i), "expr": expr, "legendFormat": legend,
                "range": not instant, "instant": instant} for i, (expr, legend) in enumerate(queries)]
    return {"type": kind, "title": title, "description": description, "datasource": DATASOURCE,
            "gridPos": {"w": w, "h": h}, "targets": targets,
            "fieldConfig": {"defaults": field_defaults, "overrides": overrides or []}, "options": options or {}}


_LEGEND = {"displayMode": "list", "placement": "bottom", "showLegend": True}
_TOOLTIP = {"mode": "multi", "sort": "desc"}


def timeseries(title: str, description: str, queries: list[tuple[str, str]], *, bars: bool = False,
               axis_label: str = "", **kw) -> dict:
    custom = {"drawStyle": "bars" if bars else "line", "lineInterpolation": "stepAfter",
              "fillOpacity": 60 if bars else 10,
              "showPoints": "never", "axisLabel": axis_label, "spanNulls": False}
    return panel("timeseries", title, description, queries, custom=custom,
                 options={"legend": _LEGEND, "tooltip": _TOOLTIP}, **kw)


def state_timeline(title: str, description: str, queries: list[tuple[str, str]], **kw) -> dict:
    options = {"showValue": "never", "mergeValues": True, "alignValue": "left", "rowHeight": 0.85,
               "legend": {**_LEGEND, "showLegend": False}, "tooltip": {"mode": "single", "sort": "none"}}
    return panel("state-timeline", title, description, queries, custom={"lineWidth": 0, "fillOpacity": 80},
                 options=options, **kw)


def stat(title: str, description: str, queries: list[tuple[str, str]], **kw) -> dict:
    options = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}, "colorMode": "value",
               "graphMode": "none", "justifyMode": "auto", "textMode": "value_and_name", "orientation": "auto"}
    return panel("stat", title, description, queries, instant=True, options=options, **kw)


def bar_gauge(title: str, description: str, queries: list[tuple[str, str]], **kw) -> dict:
    options = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}, "orientation": "horizontal",
               "displayMode": "basic", "showUnfilled": True, "valueMode": "color"}
    return panel("bargauge", title, description, queries, instant=True, options=options, **kw)


# ---------------------------------------------------------------- dashboard assembly
def _variable(name: str, query: str) -> dict:
    return {"name": name, "label": name, "type": "query", "datasource": DATASOURCE,
            "definition": query, "query": {"query": query, "refId": f"{name}-variable"},
            "refresh": 2, "sort": 1, "regex": "", "hide": 0, "options": [],
            "includeAll": True, "allValue": ".*", "multi": True,
            "current": {"selected": True, "text": ["All"], "value": ["$__all"]}}


def variables(*, baseline: bool = False) -> list[dict]:
    result = [
        _variable("env", f"label_values({mn.WORKER_UP.name}, env)"),
        _variable("exchange", f"label_values({sel(mn.INSTRUMENTS_KNOWN, ENV)}, exchange)"),
        _variable("worker", f"label_values({sel(mn.WORKER_UP, ENV)}, instance)"),
    ]
    if baseline:
        choices = ("1d", "3d", "7d")
        result.append({"name": "baseline", "label": "compare with", "type": "custom", "query": ",".join(choices),
                       "hide": 0, "includeAll": False, "multi": False,
                       "current": {"selected": True, "text": choices[0], "value": choices[0]},
                       "options": [{"selected": c == choices[0], "text": c, "value": c} for c in choices]})
    return result


def dashboard(uid: str, title: str, description: str, rows: list[tuple[str, list[dict]]], *,
              annotations: tuple[dict, ...] = (), baseline: bool = False) -> dict:
    """Lay the rows out on Grafana's 24-column grid (panels left to right, wrapping) and number the panels."""
    panels: list[dict] = []
    y = 0
    for row_title, row_panels in rows:
        panels.append({"type": "row", "title": row_title, "collapsed": False, "panels": [],
                       "gridPos": {"x": 0, "y": y, "w": 24, "h": 1}})
        y += 1
        x = line_height = 0
        for p in row_panels:
            w, h = p["gridPos"]["w"], p["gridPos"]["h"]
            if x + w > 24:
                x, y, line_height = 0, y + line_height, 0
            p["gridPos"] = {"x": x, "y": y, "w": w, "h": h}
            x, line_height = x + w, max(line_height, h)
            panels.append(p)
        y += line_height
    for number, p in enumerate(panels, start=1):
        p["id"] = number
    builtin = {"builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"}, "enable": True, "hide": True,
               "iconColor": "rgba(0, 211, 255, 1)", "name": "Annotations & Alerts", "type": "dashboard"}
    return {
        "uid": uid, "title": title, "description": description, "tags": [TAG],
        "editable": False, "graphTooltip": 1, "timezone": "browser", "refresh": "30s",
        "time": {"from": "now-12h", "to": "now"}, "schemaVersion": SCHEMA_VERSION, "version": 1,
        "links": [{"type": "dashboards", "tags": [TAG], "asDropdown": False, "includeVars": True, "keepTime": True,
                   "title": "feedops dashboards", "icon": "external link", "targetBlank": False}],
        "annotations": {"list": [builtin, *annotations]},
        "templating": {"list": variables(baseline=baseline)},
        "panels": panels,
    }
