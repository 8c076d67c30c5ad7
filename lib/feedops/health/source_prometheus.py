"""The health check's Prometheus source: the facts the worker source gives, from the worker metrics
Prometheus scraped (instant queries evaluated at ``--at``), for hosts that cannot reach the workers."""

from __future__ import annotations

import time
import urllib.parse

from .. import metric_names as mn
from .sources import DEFAULT_TIMEOUT, PrometheusView, SourceError, WorkerObservation, get_json, safe_url


def _prom_query(base: str, query: str, at_unix: float, timeout: float,
                deadline: float | None = None) -> list[tuple[dict[str, str], float]]:
    url = f"{base.rstrip('/')}/api/v1/query?" + urllib.parse.urlencode({"query": query, "time": f"{at_unix:.3f}"})
    doc = get_json("prometheus", url, timeout, "start Prometheus or pass the right --prometheus URL", base, deadline)
    if not isinstance(doc, dict) or doc.get("status") != "success":
        error = doc.get("error") if isinstance(doc, dict) else None
        raise SourceError("prometheus", safe_url(base), f"query {query!r} failed ({error or 'bad answer'})",
                          "check the Prometheus version and the query")
    result = (doc.get("data") or {}).get("result")
    if not isinstance(result, list):
        raise SourceError("prometheus", safe_url(base), f"query {query!r} returned no vector", "check the Prometheus URL")
    rows = []
    for item in result:
        try:
            value = float(item["value"][1])
        except (KeyError, IndexError, TypeError, ValueError):
            continue
        if value != value:  # NaN (e.g. histogram_quantile without data)
            continue
        rows.append((item.get("metric") or {}, value))
    return rows


def read_prometheus(base: str, at_unix: float, window_seconds: float, timeout: float = DEFAULT_TIMEOUT) -> PrometheusView:
    """The feed's state from the worker metrics Prometheus scraped, as of ``at_unix``."""
    w = f"{max(int(window_seconds), 60)}s"
    queries = {
        "connected": f"max by (instance) ({mn.FRONT_CONNECTED.name})",
        "logged_in": f"max by (instance) ({mn.LOGGED_IN.name})",
        "disconnects": f"sum by (instance) (increase({mn.DISCONNECTS.name}[{w}]))",
        "reconnects": f"sum by (instance) ({mn.RECONNECTS.name})",
        "tps": f"sum by (instance) (rate({mn.TICKS_RECEIVED.name}[1m]))",
        "p99": f"histogram_quantile(0.99, sum by (instance, le) (rate({mn.TICK_LATENCY.name}_bucket[5m])))",
        "rate_limits": f"sum by (instance) (increase({mn.FLOW_CONTROL_REFUSALS.name}[{w}]))",
        "errors": f"sum by (instance) (increase({mn.SINK_ERRORS.name}[{w}]))",
        "queue_dropped": f"sum by (instance) (increase({mn.QUEUE_DROPS.name}[{w}]))",
        "sink_dropped": f"sum by (instance) (increase({mn.SINK_DROPPED.name}[{w}]))",
        "sink_up": f"min by (instance) ({mn.SINK_UP.name})",
        "skew": f"max by (instance) ({mn.CLOCK_SKEW.name})",
        "open": f"sum by (exchange) ({mn.INSTRUMENTS_OPEN.name})",
        "fresh": f"sum by (exchange) ({mn.INSTRUMENTS_FRESH.name})",
        "newest_age": f"time() - max({mn.LAST_TICK_TIMESTAMP.name})",
        "never": f"sum({mn.INSTRUMENTS_NEVER_TICKED.name})",
    }
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=6) as pool:
        deadline = time.monotonic() + timeout  # the queries share one --timeout budget
        futures = {k: pool.submit(_prom_query, base, q, at_unix, timeout, deadline) for k, q in queries.items()}
        answers = {k: f.result() for k, f in futures.items()}  # re-raises the first SourceError
    if not answers["connected"]:
        raise SourceError("prometheus", safe_url(base), f"has no {mn.FRONT_CONNECTED.name} series at that time",
                          "make Prometheus scrape the worker(s) (monitoring/prometheus) or use --worker")

    def by_instance(key: str) -> dict[str, float]:
        return {labels.get("instance", "?"): value for labels, value in answers[key]}

    def by_exchange(key: str) -> dict[str, float]:
        return {labels.get("exchange", "?"): value for labels, value in answers[key]}

    per = {k: by_instance(k) for k in ("connected", "logged_in", "disconnects", "reconnects", "tps", "p99",
                                       "rate_limits", "errors", "queue_dropped", "sink_dropped", "sink_up", "skew")}
    workers = []
    for instance in sorted(per["connected"]):
        workers.append(WorkerObservation(
            source=instance,
            connected=per["connected"][instance] >= 1,
            logged_in=per["logged_in"].get(instance, 0) >= 1,
            reconnects=int(per["reconnects"][instance]) if instance in per["reconnects"] else None,
            recent_disconnects=round(per["disconnects"].get(instance, 0)),
            ticks_per_second=per["tps"].get(instance),
            latency_p99_seconds=per["p99"].get(instance),
            rate_limit_incidents=round(per["rate_limits"].get(instance, 0)),
            errors=round(per["errors"].get(instance, 0)),
            dropped=(lost := round(per["queue_dropped"].get(instance, 0) + per["sink_dropped"].get(instance, 0))),
            lost_recent=lost,
            lost_window_seconds=float(w.removesuffix("s")),
            clock_skew_seconds=per["skew"].get(instance),
            sink_up=(per["sink_up"][instance] >= 1) if instance in per["sink_up"] else None,
        ))
    newest = answers["newest_age"][0][1] if answers["newest_age"] else None
    never = int(answers["never"][0][1]) if answers["never"] else 0
    return PrometheusView(workers, by_exchange("open"), by_exchange("fresh"), newest, never)
