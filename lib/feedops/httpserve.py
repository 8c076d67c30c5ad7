"""The small HTTP servers of feedops programs (worker, reference consumer): JSON and text replies,
no access log, served from a daemon thread."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class JsonHandler(BaseHTTPRequestHandler):
    """A request handler with ``_send`` (bytes) and ``_json`` (compact JSON) replies and no access log."""

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - silence stdlib access logs
        return

    def _send(self, code: int, body: bytes, content_type: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _json(self, code: int, payload: Any) -> None:
        self._send(code, json.dumps(payload, separators=(",", ":")).encode(), "application/json")


class BackgroundServer:
    """ThreadingHTTPServer on its own daemon thread; bound in the constructor (port errors surface early)."""

    def __init__(self, host: str, port: int, handler: type[BaseHTTPRequestHandler], thread_name: str):
        self.server = ThreadingHTTPServer((host, port), handler)  # raises OSError when the port is in use
        self.server.daemon_threads = True
        self.address = f"{host}:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, name=thread_name, daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        if self.thread.is_alive():  # shutdown() waits forever when serve_forever never ran
            self.server.shutdown()
        self.server.server_close()
