"""The control endpoint of a running ctp-sim front (HTTP on loopback).

* ``GET  /metrics``            Prometheus text (ticks sent, sessions, logins, faults active, refusals)
* ``GET  /status``             JSON: listen address, sessions, faults, ticks sent
* ``GET  /faults``             JSON: every fault, whether it is on, what it does
* ``POST /faults/<name>?on=1`` switch a fault on (``on=0`` off); 404 for an unknown fault;
  ``POST /faults/burst?on=1&factor=2.5`` also sets the burst factor (1-50). ``on`` is required;
  a missing, repeated, malformed or unknown parameter is a 400 whose JSON names it
  (``{"error": ..., "parameter": ...}``) and changes nothing (:func:`parse_fault_request`)
* ``GET  /healthz``            200 while the front runs

Requests are served on a thread of their own and handed to the server's event loop.
"""

from __future__ import annotations

import asyncio
import json
import math
import threading
from http.server import ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ..httpserve import JsonHandler
from ..log import get_logger
from .config import FAULTS
from .server import SimServer

log = get_logger("ctp-sim.control")

ON_VALUES = {"1": True, "true": True, "on": True, "0": False, "false": False, "off": False}
BURST_FACTOR_RANGE = (1.0, 50.0)


class ParamError(ValueError):
    """A bad parameter of a control request: ``parameter`` names it, the message says the fix."""

    def __init__(self, parameter: str, message: str):
        super().__init__(message)
        self.parameter = parameter


def parse_fault_request(name: str, query: str) -> tuple[bool, float | None]:
    """(on, burst factor or None) of ``POST /faults/<name>?<query>``; :class:`ParamError` when a parameter
    is missing, repeated, malformed or unknown (nothing may change then)."""
    usage = f"POST /faults/{name}?on=1 or ?on=0" + (" (&factor=F, 1-50)" if name == "burst" else "")
    try:
        params = parse_qs(query, keep_blank_values=True, strict_parsing=bool(query), max_num_fields=10)
    except ValueError:
        raise ParamError("query", f"malformed query string; use {usage}") from None
    allowed = ("on", "factor") if name == "burst" else ("on",)
    for key, values in params.items():
        if key not in allowed:
            hint = "factor applies to the burst fault only: POST /faults/burst?on=1&factor=2.5" if key == "factor" \
                else f"unknown parameter {key!r}; use {usage}"
            raise ParamError(key, hint)
        if len(values) > 1:
            raise ParamError(key, f"{key} given {len(values)} times; give it once: {usage}")
    if "on" not in params:
        raise ParamError("on", f"on is required (nothing was changed): {usage}")
    value = params["on"][0].strip().lower()
    if value not in ON_VALUES:
        raise ParamError("on", f"on={params['on'][0]!r} is not a switch; use on=1 or on=0")
    factor = None
    if "factor" in params:
        text = params["factor"][0]
        try:
            factor = float(text)
        except ValueError:
            raise ParamError("factor", f"factor={text!r} is not a number; use a number 1-50, e.g. factor=2.5") from None
        low, high = BURST_FACTOR_RANGE
        if not (math.isfinite(factor) and low <= factor <= high):
            raise ParamError("factor", f"burst factor {factor} is out of range; fix: use 1-50")
    return ON_VALUES[value], factor


class _Handler(JsonHandler):
    server: "_ControlHTTPServer"

    def _json(self, code: int, obj: Any) -> None:  # readable by hand (curl): UTF-8 names, a final newline
        self._send(code, json.dumps(obj, ensure_ascii=False).encode() + b"\n", "application/json")

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
        try:
            self._post()
        except Exception as exc:  # a JSON 500, never a traceback, to the caller
            log.warning("sim.control.error", "control request failed", path=self.path, error=exc.__class__.__name__)
            self._json(500, {"error": f"internal error ({exc.__class__.__name__}); see the sim's log"})

    def _post(self) -> None:
        parts = urlsplit(self.path)
        segments = [p for p in parts.path.split("/") if p]
        if len(segments) != 2 or segments[0] != "faults":
            self._json(404, {"error": "use POST /faults/<name>?on=1 or ?on=0"})
            return
        name = segments[1]
        if name not in FAULTS:
            self._json(404, {"error": f"unknown fault {name!r}; use one of {', '.join(FAULTS)}"})
            return
        try:
            on, factor = parse_fault_request(name, parts.query)
        except ParamError as exc:
            self._json(400, {"error": str(exc), "parameter": exc.parameter})
            return
        if factor is not None:
            self._on_loop(self.server.sim.set_burst_factor, factor)
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
