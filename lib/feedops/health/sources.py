"""Where the health check reads the feed's state, normalised into observations.

* :func:`read_workers`: ``GET <worker>/status?instruments=1`` on every shard (in
  parallel); the instrument tables are merged so that coverage is judged across
  shards by our own calendar at ``--at``;
* :func:`read_prometheus`: the same facts from the Prometheus HTTP API (instant
  queries evaluated at ``--at``), for hosts that cannot reach the workers;
* :func:`read_consumer_groups`: ``XINFO GROUPS`` of every ``<prefix>:*`` stream;
* :func:`read_premarket`: ``<state_dir>/runs/premarket.last-success`` written by the runbook.

A source that cannot be read raises :class:`SourceError`, whose message names the
target (never with credentials) and the fix.
"""

from __future__ import annotations

import http.client
import json
import re
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import httpclient
from .. import metric_names as mn

DEFAULT_TIMEOUT = 3.0
PREMARKET_FILE = ("runs", "premarket.last-success")


class SourceError(Exception):
    """A source could not be read: ``component`` (worker, prometheus, redis), ``target``, reason and fix."""

    def __init__(self, component: str, target: str, reason: str, fix: str):
        self.component, self.target, self.reason, self.fix = component, target, reason, fix
        super().__init__(f"{component} {target}: {reason}; fix: {fix}")


def safe_url(url: str) -> str:
    """``url`` without user information (a password in a Redis URL never reaches a report)."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return "<malformed url>"
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


@dataclass
class WorkerObservation:
    """One worker (shard) as the health check sees it."""

    source: str  # the worker URL or the Prometheus instance label
    shard: str | None = None
    profile: str | None = None
    front_address: str | None = None
    connected: bool = False
    logged_in: bool = False
    reconnects: int | None = None
    recent_disconnects: int | None = None
    ticks_per_second: float | None = None
    expected_ticks_per_second: float | None = None
    latency_p99_seconds: float | None = None
    rate_limit_incidents: float = 0
    errors: float = 0
    sink_kind: str | None = None
    sink_up: bool | None = None
    sink_buffered: int | None = None
    dropped: float = 0  # queue and sink drops (since start, or in lost_window_seconds when that is set)
    lost_recent: float | None = None  # ticks lost (queue and sink drops) in the last lost_window_seconds
    lost_window_seconds: float | None = None
    clock_skew_seconds: float | None = None  # measured clock offset; latency_p99_seconds excludes it
    instrument_list: dict[str, Any] | None = None  # /status instrument_list: source, listed, expected, suspicious
    started_unix: float | None = None
    rate_warming_up: bool = False  # connected for less than the worker's rate window: ticks/s still ramping up
    instruments: dict[str, int] | None = None  # known, subscribed, acknowledged, failed, ...
    instrument_table: dict[str, list[Any]] | None = None
    coverage_summary: dict[str, Any] | None = None  # the worker's own coverage (its clock and calendar)
    newest_tick_age_seconds: float | None = None  # the worker's own view


@dataclass
class ConsumerGroup:
    stream: str
    group: str
    lag: int | None  # None when Redis cannot tell (XDEL, group created at an arbitrary id)
    pending: int
    consumers: int


@dataclass
class PremarketRun:
    ts: float
    env: str | None = None
    profile: str | None = None


# ---------------------------------------------------------------------------- HTTP
def _left(component: str, target: str, deadline: float, timeout: float, fix: str) -> float:
    """What is left of a source's --timeout budget; SourceError when nothing is."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise SourceError(component, safe_url(target), f"no complete answer within --timeout {timeout:g}s", fix)
    return left


def _get_json(component: str, url: str, timeout: float, fix: str, target: str, deadline: float | None = None) -> Any:
    """``GET url`` as JSON within ``timeout`` s, or within what is left until ``deadline`` (monotonic) when that
    is sooner: several reads of one source (shards, queries) share one --timeout budget."""
    shown = safe_url(target)
    budget = timeout if deadline is None else min(timeout, _left(component, target, deadline, timeout, fix))
    try:
        status, _, body = httpclient.request(url, budget, headers={"Accept": "application/json"})
    except httpclient.Deadline:
        raise SourceError(component, shown, f"no complete answer within --timeout {timeout:g}s", fix) from None
    except http.client.HTTPException as exc:
        raise SourceError(component, shown, f"answered something that is not HTTP ({type(exc).__name__})", fix) from None
    except (OSError, ValueError) as exc:  # timeouts, resets, refused connections, malformed URLs
        raise SourceError(component, shown, f"unreachable ({exc or type(exc).__name__})", fix) from None
    if status >= 400:
        raise SourceError(component, shown, f"answered HTTP {status}", fix)
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise SourceError(component, shown, f"answered something that is not JSON ({body[:40]!r})", fix) from None


# ---------------------------------------------------------------------------- worker
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
    doc = _get_json("worker", f"{base}/status?instruments=1", timeout, _WORKER_FIX, base, deadline)
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


# ---------------------------------------------------------------------------- prometheus
@dataclass
class PrometheusView:
    workers: list[WorkerObservation]
    open_by_exchange: dict[str, float]
    fresh_by_exchange: dict[str, float]
    newest_tick_age_seconds: float | None
    never_ticked: int


def _prom_query(base: str, query: str, at_unix: float, timeout: float,
                deadline: float | None = None) -> list[tuple[dict[str, str], float]]:
    url = f"{base.rstrip('/')}/api/v1/query?" + urllib.parse.urlencode({"query": query, "time": f"{at_unix:.3f}"})
    doc = _get_json("prometheus", url, timeout, "start Prometheus or pass the right --prometheus URL", base, deadline)
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


# ---------------------------------------------------------------------------- redis
_REDIS_URL = re.compile(r"^rediss?://")


def read_consumer_groups(url: str, stream_prefix: str, timeout: float = 2.0) -> list[ConsumerGroup]:
    """Consumer groups of every stream ``<stream_prefix>:*`` (lag may be None)."""
    shown = safe_url(url)
    if not _REDIS_URL.match(url):
        raise SourceError("redis", shown, "is not a redis:// URL", "pass --redis redis://host:port/db or set FEEDOPS_SINK_URL")
    import redis

    expired = threading.Event()
    timer: threading.Timer | None = None
    try:
        client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout, decode_responses=True)

        def cut() -> None:  # a reply trickling in byte by byte never trips the per-read socket timeout
            expired.set()
            client.connection_pool.disconnect()

        timer = threading.Timer(timeout, cut)
        timer.daemon = True
        timer.start()
        groups: list[ConsumerGroup] = []
        try:
            for stream in sorted(client.scan_iter(match=f"{stream_prefix}:*", _type="STREAM", count=1000)):
                for info in client.xinfo_groups(stream):
                    groups.append(ConsumerGroup(stream=stream, group=str(info.get("name")), lag=info.get("lag"),
                                                pending=int(info.get("pending") or 0), consumers=int(info.get("consumers") or 0)))
        finally:
            client.close()
        if expired.is_set():
            raise redis.exceptions.TimeoutError()
        return groups
    except redis.exceptions.AuthenticationError:
        raise SourceError("redis", shown, "refused the credentials", "check the password in the Redis URL") from None
    except (redis.exceptions.RedisError, OSError, ValueError) as exc:
        if expired.is_set():
            raise SourceError("redis", shown, f"no complete answer within {timeout:g}s",
                              "check that Redis is not stalled (SLOWLOG, a paused server) or pass the right --redis URL") from None
        reason = str(exc).split("\n", 1)[0] or type(exc).__name__
        raise SourceError("redis", shown, f"unreachable ({reason})", "start Redis or pass the right --redis URL") from None
    finally:
        if timer is not None:
            timer.cancel()


# ---------------------------------------------------------------------------- premarket
def read_premarket(state_dir: Path) -> PremarketRun | None:
    """The last successful pre-market run, or None when there is none yet.

    Raises :class:`SourceError` when the file exists but cannot be trusted.
    """
    from ..runbook.state import StateError, read_json

    path = state_dir.joinpath(*PREMARKET_FILE)
    try:
        data = read_json(path)
    except StateError as exc:
        raise SourceError("premarket", str(path), str(exc).split(";")[0].removeprefix(f"state file {path} "),
                          "move the file away; the next successful `make premarket` rewrites it") from None
    if data is None:
        return None
    ts = data.get("ts")
    if not isinstance(ts, (int, float)) or isinstance(ts, bool):
        raise SourceError("premarket", str(path), "has no numeric 'ts'",
                          "move the file away; the next successful `make premarket` rewrites it")
    return PremarketRun(float(ts), data.get("env"), data.get("profile"))


# ---------------------------------------------------------------------------- runbook pid files
@dataclass
class ExpectedWorker:
    """A worker the native runbook started and has not stopped (its pid file is there)."""

    name: str  # worker-0 ...
    pid: int | None
    address: str | None
    running: bool
    problem: str | None = None  # the pid file could not be read


def _alive(pid: int, start_ticks: int) -> bool:
    """``pid`` runs and is the process the pid file recorded (same kernel start time), not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    fields = stat[stat.rfind(")") + 2:].split()
    return fields[0] not in ("Z", "X") and int(fields[19]) == start_ticks


def _supervised_child(state_dir: Path, name: str) -> tuple[bool, str | None]:
    """Whether the supervisor's child (the worker itself) runs, from ``<state>/supervisor/<name>.json``
    (lib/feedops/runbook/supervisor.py): (True, None) when it runs or there is no record, else (False, why)."""
    from ..runbook.state import StateError, read_json

    try:
        record = read_json(state_dir / "supervisor" / f"{name}.json")
    except StateError:
        return True, None  # the keeper's own record is not ours to judge; the keeper runs
    if not record:
        return True, None
    child = record.get("child_pid")
    restarts = record.get("restarts")
    if isinstance(child, int) and not isinstance(child, bool):
        try:
            stat = Path(f"/proc/{child}/stat").read_text()
            if stat[stat.rfind(")") + 2:].split()[0] not in ("Z", "X"):
                return True, None
        except OSError:
            pass
    return False, (f"its supervisor runs but the worker does not (last exit {record.get('last_exit')}, "
                   f"{restarts} restart(s) so far; it is being restarted)")


def read_expected_workers(state_dir: Path) -> list[ExpectedWorker]:
    """The workers that should be running: the runbook writes ``<state>/pids/worker-<n>.pid`` (the worker's
    supervisor, whose child the worker is) when it starts one and removes it when it stops one
    (lib/feedops/runbook/procs.py), so a pid file whose process is gone is a worker that died and is not
    restarted; a supervisor whose child is gone is a worker down until its restart."""
    from ..runbook.state import StateError, read_json

    found = []
    for path in sorted(state_dir.joinpath("pids").glob("worker-*.pid")):
        try:
            data = read_json(path)
        except StateError as exc:
            found.append(ExpectedWorker(path.stem, None, None, False, str(exc).split(";")[0]))
            continue
        if data is None:  # removed meanwhile: stopped
            continue
        pid, ticks = data.get("pid"), data.get("start_ticks")
        if not isinstance(pid, int) or not isinstance(ticks, int):
            found.append(ExpectedWorker(path.stem, None, None, False, f"pid file {path} is corrupt"))
            continue
        running, problem = _alive(pid, ticks), None
        if running:
            running, problem = _supervised_child(state_dir, path.stem)
        found.append(ExpectedWorker(path.stem, pid, data.get("address"), running, problem))
    return found


@dataclass
class Sources:
    """Everything read for one run."""

    workers: list[WorkerObservation] = field(default_factory=list)
    prometheus: PrometheusView | None = None
    consumer_groups: list[ConsumerGroup] | None = None
    premarket: PremarketRun | None = None
    errors: list[SourceError] = field(default_factory=list)
    premarket_error: SourceError | None = None
    premarket_skipped: bool = False
    redis_target: str | None = None  # the Redis URL read, without credentials
    expected_workers: list[ExpectedWorker] = field(default_factory=list)
