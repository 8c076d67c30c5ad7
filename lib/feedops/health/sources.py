"""What the health check reads, whatever the source: the observations, :class:`SourceError`, URL
redaction and the JSON GET that every HTTP source shares (one --timeout budget per source).

The readers, one module per source:

* :mod:`.source_worker`: ``GET <worker>/status?instruments=1`` on every shard (in
  parallel); the instrument tables are merged so that coverage is judged across
  shards by our own calendar at ``--at``;
* :mod:`.source_prometheus`: the same facts from the Prometheus HTTP API (instant
  queries evaluated at ``--at``), for hosts that cannot reach the workers;
* :mod:`.source_redis`: ``XINFO GROUPS`` of every ``<prefix>:*`` stream;
* :mod:`.source_state`: the runbook's state: ``<state_dir>/runs/premarket.last-success``
  and the pid files of the workers it started.

A source that cannot be read raises :class:`SourceError`, whose message names the
target (never with credentials) and the fix.
"""

from __future__ import annotations

import http.client
import json
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

from .. import httpclient

DEFAULT_TIMEOUT = 3.0


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


@dataclass
class PrometheusView:
    workers: list[WorkerObservation]
    open_by_exchange: dict[str, float]
    fresh_by_exchange: dict[str, float]
    newest_tick_age_seconds: float | None
    never_ticked: int


@dataclass
class ExpectedWorker:
    """A worker the native runbook started and has not stopped (its pid file is there)."""

    name: str  # worker-0 ...
    pid: int | None
    address: str | None
    running: bool
    problem: str | None = None  # the pid file could not be read



# ---------------------------------------------------------------------------- HTTP
def _left(component: str, target: str, deadline: float, timeout: float, fix: str) -> float:
    """What is left of a source's --timeout budget; SourceError when nothing is."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise SourceError(component, safe_url(target), f"no complete answer within --timeout {timeout:g}s", fix)
    return left


def get_json(component: str, url: str, timeout: float, fix: str, target: str, deadline: float | None = None) -> Any:
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
