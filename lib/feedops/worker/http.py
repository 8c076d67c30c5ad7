"""The worker's HTTP endpoints on one port: /metrics /livez /readyz /status.

``/status`` is JSON (lib/feedops/schemas/worker-status.schema.json);
``/status?instruments=1`` adds the per-instrument column table. ``/livez`` is 200
while the process works (main loop and pipeline alive), ``/readyz`` 200 when logged
in, subscribed and coverage is at or above FEEDOPS_COVERAGE_CRIT_RATIO (else 503
with the reasons).
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import parse_qs, urlparse

from prometheus_client.exposition import CONTENT_TYPE_LATEST

from ..log import get_logger

_log = get_logger("worker")


class HealthServer:
    """ThreadingHTTPServer on its own daemon thread; bound in the constructor (port errors surface early)."""

    def __init__(self, host: str, port: int, *, metrics: Callable[[], bytes], live: Callable[[], tuple[bool, str]],
                 ready: Callable[[], tuple[bool, list[str]]], status: Callable[[bool], dict[str, Any]]):
        handler = _handler(metrics, live, ready, status)
        self.server = ThreadingHTTPServer((host, port), handler)  # raises OSError when the port is in use
        self.server.daemon_threads = True
        self.address = f"{host}:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, name="feedops-http", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        if self.thread.is_alive():  # shutdown() waits forever when serve_forever never ran
            self.server.shutdown()
        self.server.server_close()


def _handler(metrics, live, ready, status):
    class Handler(BaseHTTPRequestHandler):
        server_version = "feedops-worker"

        def log_message(self, format: str, *args: Any) -> None:  # silence stdlib access logs
            return

        def _send(self, code: int, body: bytes, content_type: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _json(self, code: int, payload: Any) -> None:
            self._send(code, json.dumps(payload, separators=(",", ":")).encode(), "application/json")

        def do_GET(self) -> None:
            url = urlparse(self.path)
            try:
                if url.path == "/metrics":
                    self._send(200, metrics(), CONTENT_TYPE_LATEST)
                elif url.path == "/livez":
                    ok, reason = live()
                    self._json(200 if ok else 503, {"status": "pass" if ok else "fail", "reason": reason})
                elif url.path == "/readyz":
                    ok, reasons = ready()
                    self._json(200 if ok else 503, {"status": "pass" if ok else "fail", "reasons": reasons})
                elif url.path == "/status":
                    query = parse_qs(url.query)
                    with_table = query.get("instruments", ["0"])[0] in ("1", "true", "yes")
                    self._json(200, status(with_table))
                else:
                    self._json(404, {"error": f"no such endpoint {url.path}; try /metrics /livez /readyz /status"})
            except (BrokenPipeError, ConnectionResetError):
                pass
            except Exception as exc:  # a bad request must not kill the server thread
                _log.error("worker.http.error", f"{url.path} failed: {exc.__class__.__name__}: {exc}")
                try:
                    self._json(500, {"error": f"{exc.__class__.__name__}"})
                except OSError:
                    pass

    return Handler
