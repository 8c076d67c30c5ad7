"""Helpers for tests that need a ctp-sim front inside the test process.

:class:`SimThread` runs a :class:`~feedops.sim.server.SimServer` on its own event
loop in a daemon thread (faster to start than a subprocess)::

    with SimThread(SimConfig(port=0, instruments=200)) as front:
        api.RegisterFront(front.url)
        front.set_fault("disconnect", True)

:class:`Recorder` is an SPI-side event log with a bounded wait.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any, Callable

from ..calendar import TradingCalendar
from .config import SimConfig
from .server import SimServer


class SimThread:
    """A sim front on a background thread. ``port=0`` picks a free port (see :attr:`port`)."""

    def __init__(self, config: SimConfig, calendar: TradingCalendar | None = None) -> None:
        self.config = config
        self.server = SimServer(config, calendar or TradingCalendar("always-open"))
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="ctp-sim-test-front", daemon=True)
        self.running = False

    @property
    def port(self) -> int:
        return self.config.port

    @property
    def url(self) -> str:
        return f"tcp://{self.config.host}:{self.config.port}"

    def call(self, func: Callable[..., Any], *args: Any) -> Any:
        """Run ``func(*args)`` on the server's loop and return its result."""
        async def wrapper() -> Any:
            return func(*args)

        return asyncio.run_coroutine_threadsafe(wrapper(), self.loop).result(timeout=10)

    def start(self) -> "SimThread":
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.server.start(), self.loop).result(timeout=30)
        self.running = True
        return self

    def set_fault(self, name: str, on: bool = True) -> None:
        self.call(self.server.set_fault, name, on)

    def stop(self) -> None:
        if self.running:
            asyncio.run_coroutine_threadsafe(self.server.stop(), self.loop).result(timeout=30)
            self.running = False
        if self.loop.is_running():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=10)
        if not self.loop.is_running() and not self.loop.is_closed():
            self.loop.close()

    def __enter__(self) -> "SimThread":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


class Recorder:
    """Thread-safe list of (name, args) events with :meth:`wait` (poll with a deadline, never a fixed sleep)."""

    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []
        self.threads: set[str] = set()
        self._cond = threading.Condition()

    def add(self, *event: Any) -> None:
        with self._cond:
            self.events.append(event)
            self.threads.add(threading.current_thread().name)
            self._cond.notify_all()

    def named(self, name: str) -> list[tuple[Any, ...]]:
        with self._cond:
            return [e for e in self.events if e[0] == name]

    def wait(self, predicate: Callable[["Recorder"], Any], timeout: float = 10.0, what: str = "event") -> Any:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                value = predicate(self)
                if value:
                    return value
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"timed out after {timeout}s waiting for {what}; events: {self.events[-10:]}")
                self._cond.wait(min(remaining, 0.1))

    def count(self, name: str) -> int:
        return len(self.named(name))
