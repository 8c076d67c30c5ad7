"""Helpers for the health-check tests: worker /status documents built to the schema,
a small real HTTP server that serves them, and the report schema validator.

Importable from any test because pytest puts tests/ (the conftest.py directory) on sys.path.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from functools import lru_cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jsonschema

from feedops import coverage
from feedops.calendar import TradingCalendar
from feedops.paths import SCHEMAS_DIR


@lru_cache(maxsize=None)
def schema(name: str) -> dict:
    return json.loads((SCHEMAS_DIR / name).read_text())


def validate_report(report: dict) -> dict:
    jsonschema.Draft202012Validator(schema("health-report.schema.json")).validate(report)
    return report


def universe(n: int, now: float, *, stale_every: int = 0, never_every: int = 0) -> list[tuple]:
    """``n`` instruments over a few products; every k-th one stale (10 min old) or never ticked."""
    products = [("SHFE", "rb", "futures"), ("SHFE", "au", "futures"), ("CZCE", "SR", "futures"),
                ("CFFEX", "IF", "futures"), ("DCE", "m_o", "options"), ("DCE", "jd", "futures")]
    rows = []
    for i in range(n):
        exchange, product, cls = products[i % len(products)]
        last: float | None = now - 1.0
        if never_every and i % never_every == 0:
            last = None
        elif stale_every and i % stale_every == 0:
            last = now - 600.0
        rows.append((f"{product}{i:05d}", exchange, product, cls, last))
    return rows


def status_doc(rows: list[tuple], *, now: float, connected: bool = True, logged_in: bool = True, tps: float = 500.0,
               expected_tps: float | None = None, p99: float | None = 0.02, rate_limits: int = 0, errors: int = 0,
               sink_kind: str = "file", sink_up: bool = True, recent_disconnects: int = 0, shard: str = "0/1",
               with_table: bool = True, validate: bool = True, skew: float | None = 0.0,
               lost_recent: tuple[int, int] | None = (0, 0), dropped_total: tuple[int, int] = (0, 0)) -> dict[str, Any]:
    """A worker /status?instruments=1 document (validated against worker-status.schema.json).

    ``lost_recent``: (queue, sink) ticks discarded in the last 60 s, None for a worker without the
    window; ``dropped_total``: (queue, sink) since start; ``skew``: clock_skew_seconds (None: absent)."""
    names, exchanges, products, classes, ticks = (list(col) for col in zip(*rows)) if rows else ([], [], [], [], [])
    at = dt.datetime.fromtimestamp(now, dt.timezone.utc)
    cov = coverage.compute(names, exchanges, products, classes, ticks, calendar=TradingCalendar("always-open"),
                           at=at, window_seconds=60)
    doc: dict[str, Any] = {
        "service": "feedops-worker", "version": "test", "time": at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "now_unix": now, "started_unix": now - 3600, "profile": "primary", "channel": "sim", "env": "dev",
        "shard": shard, "calendar": "always-open",
        "front": {"address": "tcp://127.0.0.1:17001", "connected": connected, "logged_in": logged_in,
                  "connected_since_unix": now - 3000 if connected else None, "reconnects": 1,
                  "disconnects": {"4097": 1}, "recent_disconnects": recent_disconnects, "login_failures": 0},
        "trading_day": at.strftime("%Y%m%d"),
        "instruments": {"known": len(rows), "subscribed": len(rows), "acknowledged": len(rows), "failed": 0,
                        "never_ticked": cov.never_ticked.count, "open": cov.open, "fresh": cov.fresh},
        "coverage": {"ratio": cov.ratio, "window_seconds": 60,
                     "by_exchange": {k: v.as_dict() for k, v in cov.by_exchange.items()},
                     "by_product_class": {k: v.as_dict() for k, v in cov.by_product_class.items()}},
        "staleness": {"newest_tick_age_seconds": cov.newest_tick_age_seconds,
                      "oldest_open_tick_age_seconds": cov.oldest_open_tick_age_seconds},
        "throughput": {"ticks_per_second": tps, "ticks_received_total": 100000, "ticks_published_total": 99990,
                       "expected_ticks_per_second": expected_tps},
        "latency": {"p50_seconds": None if p99 is None else p99 / 4, "p99_seconds": p99},
        "rate_limit_incidents_total": rate_limits, "errors_total": errors,
        "queue": {"depth": 0, "capacity": 200000, "dropped_total": dropped_total[0]},
        "sink": {"kind": sink_kind, "target": "var/feed", "up": sink_up, "buffered": 0, "dropped_total": dropped_total[1],
                 "errors_total": 0},
        "ready": connected and logged_in, "ready_reasons": [] if connected else ["front not connected"],
        "never_ticked": cov.never_ticked.as_dict(), "stale": cov.stale.as_dict(),
    }
    if skew is not None:
        doc["latency"]["clock_skew_seconds"] = skew
    if lost_recent is not None:
        doc["ticks_lost_recent"] = {"window_seconds": 60, "queue_dropped": lost_recent[0], "sink_dropped": lost_recent[1]}
    if with_table:
        doc["instrument_table"] = {"instrument": names, "exchange": exchanges, "product": products,
                                   "product_class": classes, "last_tick_unix": ticks}
    if validate:
        jsonschema.Draft202012Validator(schema("worker-status.schema.json")).validate(doc)
    return doc


class FakeWorker:
    """A real HTTP server on 127.0.0.1 serving ``body`` at /status (a stand-in until the worker runs)."""

    def __init__(self):
        self.body: bytes = b"{}"
        self.code = 200
        self.requests: list[str] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                owner.requests.append(self.path)
                if not self.path.startswith("/status"):
                    self.send_error(404)
                    return
                self.send_response(owner.code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(owner.body)))
                self.end_headers()
                self.wfile.write(owner.body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def serve(self, doc: Any) -> "FakeWorker":
        self.body = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
        return self

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
