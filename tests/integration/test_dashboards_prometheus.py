"""Every dashboard query is accepted by the Prometheus the stack runs (Debian's 2.42, like the
compose image v2.42.0): promql-parser in the unit tests knows newer PromQL than that.

The TSDB is empty, so this checks the language and the functions, not the data (the live
test, tests/integration/test_monitoring_live.py, evaluates the same queries on a running feed).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request

import pytest

from feedops.monitoring import dashboard_queries as dq
from feedops.monitoring import dashboards as gen

pytestmark = pytest.mark.integration


def evaluate(url: str, expr: str) -> dict:
    query = urllib.parse.urlencode({"query": expr, "time": "1700000000"})
    try:
        with urllib.request.urlopen(f"{url}/api/v1/query?{query}", timeout=10) as resp:
            return json.load(resp)
    except urllib.error.HTTPError as exc:  # 400 with the parse error in the body
        return json.load(exc)


def test_every_query_evaluates_on_the_stacks_prometheus(prometheus_factory):
    prom = prometheus_factory("global: {scrape_interval: 15s}\nscrape_configs: []\n")
    queries = [(title, expr) for build in gen.DASHBOARDS.values()
               for title, expr in dq.panel_queries(build()) + dq.annotation_queries(build())]
    failures = {title: result.get("error") for title, expr in queries
                if (result := evaluate(prom.url, expr))["status"] != "success"}
    assert not failures
    assert len(queries) > 50
    # and the check can fail: a function newer than 2.42 is refused
    assert evaluate(prom.url, "limitk(1, up)")["status"] == "error"
