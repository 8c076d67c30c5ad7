"""Loopback helpers shared by tests, benchmarks and the tools that start servers:
a free 127.0.0.1 port, and bounded polling instead of fixed sleeps."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate: Callable[[], T], timeout: float = 15.0, what: str = "condition", *, interval: float = 0.05) -> T:
    """Poll ``predicate`` until it returns something truthy (returned) or ``timeout`` passes.

    Exceptions from the predicate count as "not yet"; the last one is named in the
    TimeoutError.
    """
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # not ready yet: try again; the last error goes into the timeout message
            last_exc = exc
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:g}s waiting for {what} (last error: {last_exc})")
