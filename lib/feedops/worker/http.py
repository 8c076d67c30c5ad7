"""The worker's HTTP endpoints on one port: /metrics /livez /readyz /status.

``/status`` is JSON (lib/feedops/schemas/worker-status.schema.json);
``/status?instruments=1`` adds the per-instrument column table. ``/livez`` is 200
while the process works (main loop and pipeline alive), ``/readyz`` 200 when logged
in, subscribed and coverage is at or above FEEDOPS_COVERAGE_CRIT_RATIO (else 503
with the reasons).
"""

from __future__ import annotations

from typing import Any, Callable
from urllib.parse import parse_qs, urlparse

from prometheus_client.exposition import CONTENT_TYPE_LATEST

from ..httpserve import BackgroundServer, JsonHandler
from ..log import get_logger

_log = get_logger("worker")


class HealthServer(BackgroundServer):
    """The worker's endpoints on a daemon thread; bound in the constructor (port errors surface early)."""

    def __init__(self, host: str, port: int, *, metrics: Callable[[], bytes], live: Callable[[], tuple[bool, str]],
                 ready: Callable[[], tuple[bool, list[str]]], status: Callable[[bool], dict[str, Any]]):
        super().__init__(host, port, _handler(metrics, live, ready, status), "feedops-http")


def _handler(metrics, live, ready, status):
    class Handler(JsonHandler):
        server_version = "feedops-worker"

        def do_GET(self) -> None:  # noqa: N802 - stdlib name
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
            except Exception as exc:  # noqa: BLE001 - a bad request must not kill the server thread
                _log.error("worker.http.error", f"{url.path} failed: {exc.__class__.__name__}: {exc}")
                try:
                    self._json(500, {"error": f"{exc.__class__.__name__}"})
                except OSError:
                    pass

    return Handler
