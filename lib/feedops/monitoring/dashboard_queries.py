"""The queries of a dashboard's JSON, read back for the tests and the live check: every panel and
annotation query with Grafana's variables substituted, ready for the Prometheus HTTP API."""

from __future__ import annotations

import re

#: What Grafana puts in place of each variable when "All" (or the default) is selected, and the
#: built-in intervals at a plausible zoom; :func:`panel_queries` substitutes these unless told otherwise.
DEFAULT_VALUES = {"env": ".*", "exchange": ".*", "worker": ".*", "baseline": "1d",
                  "__rate_interval": "1m", "__interval": "15s"}

_VARIABLE = re.compile(r"\$(?:\{(\w+)\}|(\w+))")


def substitute(expr: str, values: dict[str, str] | None = None) -> str:
    """``expr`` with ``$name`` / ``${name}`` replaced from :data:`DEFAULT_VALUES` updated by ``values``.

    An unknown variable raises KeyError: a query must not reach Prometheus with a ``$`` left in it.
    """
    table = {**DEFAULT_VALUES, **(values or {})}
    return _VARIABLE.sub(lambda m: table[m.group(1) or m.group(2)], expr)


def iter_panels(dashboard_json: dict):
    """Every non-row panel, including those inside collapsed rows."""
    for p in dashboard_json["panels"]:
        if p["type"] == "row":
            yield from p.get("panels", [])
        else:
            yield p


def panel_queries(dashboard_json: dict, values: dict[str, str] | None = None) -> list[tuple[str, str]]:
    """(panel title, PromQL with the variables substituted) for every query of every panel.

    ``values`` overrides :data:`DEFAULT_VALUES`, e.g. ``{"env": "dev", "__rate_interval": "20s"}``
    (``$__rate_interval`` must span at least four scrapes to give a rate).
    """
    return [(p["title"], substitute(t["expr"], values)) for p in iter_panels(dashboard_json) for t in p["targets"]]


def annotation_queries(dashboard_json: dict, values: dict[str, str] | None = None) -> list[tuple[str, str]]:
    return [(a["name"], substitute(a["expr"], values)) for a in dashboard_json["annotations"]["list"] if "expr" in a]
