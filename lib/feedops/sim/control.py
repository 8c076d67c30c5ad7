"""The control endpoint of a running ctp-sim front (HTTP on loopback).

* ``GET  /metrics``            Prometheus text (ticks sent, sessions, logins, faults active, refusals)
* ``GET  /status``             JSON: listen address, sessions, faults, ticks sent
* ``GET  /faults``             JSON: every fault, whether it is on, what it does
* ``POST /faults/<name>?on=1`` switch a fault on (``on=0`` off); 404 for an unknown fault;
  ``POST /faults/burst?on=1&factor=2.5`` also sets the burst factor (1-50; 400 otherwise)
* ``GET  /healthz``            200 while the front runs

Requests are served on a thread of their own and handed to the server's event loop.
"""

from __future__ import annotations

import asyncio
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ..log import get_logger
from .server import FAULTS, SimServer

log = get_logger("ctp-sim.control")


class _Handler(BaseHTTPRequestHandler):
    server: "_ControlHTTPServer"

    def log_message(self, format: str, *args: Any) -> None:  # silence http.server's stderr lines
        pass

    def _send(self, code: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _json(self, code: int, obj: Any) -> None:
        self._send(code, json.dumps(obj, ensure_ascii=False).encode() + b"\n")

    def _on_loop(self, func: Any, *args: Any) -> Any:
        future = asyncio.run_coroutine_threadsafe(_call(func, *args), self.server.loop)
        return future.result(timeout=10)

    def do_GET(self) -> None:
        sim = self.server.sim
        path = urlsplit(self.path).path
        if path == "/metrics":
            self._send(200, generate_latest(sim.metrics.registry), CONTENT_TYPE_LATEST)
        elif path == "/status":
            self._json(200, self._on_loop(sim.status))
        elif path == "/faults":
            self._json(200, {name: {"on": name in sim.faults, "description": text} for name, text in FAULTS.items()})
        elif path == "/healthz":
            self._json(200, {"status": "pass"})
        else:
            self._json(404, {"error": f"no such endpoint {path}; use /metrics, /status, /faults, /healthz"})

    def do_POST(self) -> None:
        parts = urlsplit(self.path)
        segments = [p for p in parts.path.split("/") if p]
        if len(segments) != 2 or segments[0] != "faults":
            self._json(404, {"error": "use POST /faults/<name>?on=1 or ?on=0"})
            return
        name = segments[1]
        if name not in FAULTS:
            self._json(404, {"error": f"unknown fault {name!r}; use one of {', '.join(FAULTS)}"})
            return
        value = (parse_qs(parts.query).get("on") or ["1"])[0].lower()
        if value not in ("1", "0", "true", "false", "on", "off"):
            self._json(400, {"error": f"on={value!r}: use on=1 or on=0"})
            return
        on = value in ("1", "true", "on")
        factor = parse_qs(parts.query).get("factor")
        if factor is not None:
            if name != "burst":
                self._json(400, {"error": "factor applies to the burst fault only: POST /faults/burst?on=1&factor=2.5"})
                return
            try:
                self._on_loop(self.server.sim.set_burst_factor, float(factor[0]))
            except ValueError as exc:
                self._json(400, {"error": str(exc)})
                return
        self._on_loop(self.server.sim.set_fault, name, on)
        self._json(200, {"fault": name, "on": on, "faults": sorted(self.server.sim.faults),
                         "burst_factor": self.server.sim.config.burst_factor})


async def _call(func: Any, *args: Any) -> Any:
    return func(*args)


class _ControlHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], sim: SimServer, loop: asyncio.AbstractEventLoop) -> None:
        self.sim = sim
        self.loop = loop
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """One log line instead of http.server's traceback on stderr."""
        import sys

        log.warning("sim.control.error", "control request failed", peer=f"{client_address[0]}:{client_address[1]}",
                    error=repr(sys.exc_info()[1]))


class ControlServer:
    """Runs the control endpoint on a daemon thread; :meth:`close` stops it."""

    def __init__(self, host: str, port: int, sim: SimServer, loop: asyncio.AbstractEventLoop) -> None:
        from .server import ListenError

        try:
            self.httpd = _ControlHTTPServer((host, port), sim, loop)
        except OSError as exc:
            raise ListenError(exc.errno, f"cannot listen on control address {host}:{port}: "
                                         f"{exc.strerror or exc}") from None
        self.address = f"{host}:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="ctp-sim-control", daemon=True)
        self.thread.start()
        log.info("sim.control.listen", "control endpoint listening", control=self.address)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)
