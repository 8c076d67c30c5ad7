"""A webhook receiver on 127.0.0.1 for Alertmanager's notifications (the tests' ops channel)."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class WebhookReceiver:
    """Records every POST: its path, arrival time (monotonic) and JSON body."""

    def __init__(self) -> None:
        self.received: list[tuple[str, float, dict]] = []
        self._lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with owner._lock:
                    owner.received.append((self.path, time.monotonic(), json.loads(body or b"{}")))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def bodies(self, path: str) -> list[dict]:
        with self._lock:
            return [body for p, _, body in self.received if p == path]

    def alerts(self, name: str, status: str = "firing", since: float = 0.0) -> list[tuple[float, dict]]:
        """(arrival, alert) of every notified alert named ``name`` in ``status``, on any path."""
        with self._lock:
            return [(at, alert) for _, at, body in self.received if at >= since for alert in body.get("alerts", [])
                    if alert["labels"].get("alertname") == name and alert.get("status") == status]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
