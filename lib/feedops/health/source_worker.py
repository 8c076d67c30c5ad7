"""The health check's worker source: ``GET <worker>/status?instruments=1`` on every shard, in parallel,
checked field by field and normalised into a :class:`~.sources.WorkerObservation`."""

from __future__ import annotations

import time
from typing import Any

from .sources import DEFAULT_TIMEOUT, SourceError, WorkerObservation, get_json, safe_url

_WORKER_REQUIRED = ("service", "front", "coverage", "throughput", "latency", "sink", "queue")


def _field(doc: dict, path: str, kinds: tuple[type, ...], url: str) -> Any:
    value: Any = doc
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            raise SourceError("worker", url, f"/status lacks {path!r}", "point --worker at a feedops worker of this version")
        value = value[part]
    if value is not None and not isinstance(value, kinds):
        raise SourceError("worker", url, f"/status field {path!r} has the wrong type ({type(value).__name__})",
                          "point --worker at a feedops worker of this version")
    return value


def parse_worker_status(url: str, doc: Any) -> WorkerObservation:
    """Check the parts of a /status document the health check uses and normalise them."""
    shown = safe_url(url)
    if not isinstance(doc, dict) or doc.get("service") != "feedops-worker":
        raise SourceError("worker", shown, "answered a JSON document that is not a feedops worker /status",
                          "point --worker at the worker's base URL (FEEDOPS_WORKER_URLS)")
    for key in _WORKER_REQUIRED:
        _field(doc, key, (dict, str), shown)
    num = (int, float)
    obs = WorkerObservation(
        source=shown,
        shard=doc.get("shard"),
        profile=doc.get("profile"),
        front_address=_field(doc, "front.address", (str,), shown),
        connected=bool(_field(doc, "front.connected", (bool,), shown)),
        logged_in=bool(_field(doc, "front.logged_in", (bool,), shown)),
        reconnects=_field(doc, "front.reconnects", (int,), shown),
        recent_disconnects=doc["front"].get("recent_disconnects"),
        ticks_per_second=_field(doc, "throughput.ticks_per_second", num, shown),
        expected_ticks_per_second=doc["throughput"].get("expected_ticks_per_second"),
        latency_p99_seconds=_field(doc, "latency.p99_seconds", num, shown),
        rate_limit_incidents=_field(doc, "rate_limit_incidents_total", (int,), shown) or 0,
        errors=_field(doc, "errors_total", (int,), shown) or 0,
        sink_kind=_field(doc, "sink.kind", (str,), shown),
        sink_up=_field(doc, "sink.up", (bool,), shown),
        sink_buffered=_field(doc, "sink.buffered", (int,), shown),
        dropped=(_field(doc, "queue.dropped_total", (int,), shown) or 0) + (_field(doc, "sink.dropped_total", (int,), shown) or 0),
        started_unix=doc.get("started_unix"),
        rate_warming_up=_warming_up(doc),
        instruments=_field(doc, "instruments", (dict,), shown) if "instruments" in doc else None,
        coverage_summary=_field(doc, "coverage", (dict,), shown),
        newest_tick_age_seconds=(doc.get("staleness") or {}).get("newest_tick_age_seconds"),
        clock_skew_seconds=doc["latency"].get("clock_skew_seconds") if "clock_skew_seconds" in doc["latency"] else None,
    )
    if obs.clock_skew_seconds is not None:
        _field(doc, "latency.clock_skew_seconds", num, shown)
    if doc.get("instrument_list") is not None:
        obs.instrument_list = _field(doc, "instrument_list", (dict,), shown)
        _field(doc, "instrument_list.listed", (int,), shown)
        _field(doc, "instrument_list.suspicious", (str,), shown)
    if "ticks_lost_recent" in doc:
        obs.lost_window_seconds = _field(doc, "ticks_lost_recent.window_seconds", num, shown)
        obs.lost_recent = (_field(doc, "ticks_lost_recent.queue_dropped", (int,), shown) or 0) + \
            (_field(doc, "ticks_lost_recent.sink_dropped", (int,), shown) or 0)
    table = doc.get("instrument_table")
    if table is not None:
        columns = ("instrument", "exchange", "product", "product_class", "last_tick_unix")
        if not isinstance(table, dict) or any(not isinstance(table.get(c), list) for c in columns) \
                or len({len(table[c]) for c in columns}) != 1:
            raise SourceError("worker", shown, "/status instrument_table is malformed (columns missing or of unequal length)",
                              "point --worker at a feedops worker of this version")
        if any(t is not None and (isinstance(t, bool) or not isinstance(t, (int, float))) for t in table["last_tick_unix"]):
            raise SourceError("worker", shown, "/status instrument_table.last_tick_unix holds a value that is neither "
                              "a number nor null", "point --worker at a feedops worker of this version")
        obs.instrument_table = table
    return obs


#: The worker's ticks_per_second averages the last 10 s (worker-status.schema.json).
WORKER_RATE_WINDOW_SECONDS = 10.0


def _warming_up(doc: dict) -> bool:
    since, now = doc["front"].get("connected_since_unix"), doc.get("now_unix")
    if not isinstance(since, (int, float)) or not isinstance(now, (int, float)):
        return False
    return now - since < WORKER_RATE_WINDOW_SECONDS


_WORKER_FIX = "start the worker (make premarket) or pass the right --worker URL"


def read_worker(url: str, timeout: float = DEFAULT_TIMEOUT, deadline: float | None = None) -> WorkerObservation:
    """``timeout`` bounds the whole read; ``deadline`` (monotonic), when given, is the budget shared with
    the other reads of the same source."""
    base = url.rstrip("/")
    doc = get_json("worker", f"{base}/status?instruments=1", timeout, _WORKER_FIX, base, deadline)
    return parse_worker_status(base, doc)


def read_workers(urls: list[str], timeout: float = DEFAULT_TIMEOUT) -> tuple[list[WorkerObservation], list[SourceError]]:
    """Read every shard, in parallel when there are several; errors are returned, not raised."""
    deadline = time.monotonic() + timeout
    if len(urls) == 1:
        results: list[Any] = [_capture(read_worker, urls[0], timeout, deadline)]
    else:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=min(8, len(urls))) as pool:
            results = list(pool.map(lambda u: _capture(read_worker, u, timeout, deadline), urls))
    return [r for r in results if isinstance(r, WorkerObservation)], [r for r in results if isinstance(r, SourceError)]


def _capture(fn, *args):
    try:
        return fn(*args)
    except SourceError as exc:
        return exc
