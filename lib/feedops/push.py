"""Push a run's outcome to Pushgateway (shared by every pushing program).

A failed push never raises: it returns the reason so the caller can put it in its
report and log, and the verdict of the run is unchanged.
"""

from __future__ import annotations

import http.client
import socket
from urllib.error import URLError

from prometheus_client import CollectorRegistry, push_to_gateway

from . import httpclient


def _bounded_handler(url: str, method: str, timeout: float | None, headers: list[tuple[str, str]], data: bytes):
    """prometheus-client's push handler, with the whole request bounded by ``timeout`` (feedops.httpclient)."""
    def handle() -> None:
        status, reason, _ = httpclient.request(url, timeout or 2.0, method=method, headers=dict(headers), data=data)
        if status >= 400:
            raise OSError(f"error talking to pushgateway: {status} {reason}")
    return handle


def push(url: str, job: str, registry: CollectorRegistry, *, grouping_key: dict[str, str] | None = None,
         timeout: float = 2.0) -> str | None:
    """PUT ``registry`` to ``url`` under ``job`` and the grouping key.

    Returns None on success, else a one-line reason (never a secret: the registry
    holds only metrics, the URL is the Pushgateway's).
    """
    try:
        push_to_gateway(url, job=job, registry=registry, grouping_key=grouping_key or {}, timeout=timeout,
                        handler=_bounded_handler)
        return None
    except URLError as exc:
        return f"push to {url} failed: {getattr(exc, 'reason', exc)}"
    except (OSError, socket.timeout, ValueError, http.client.HTTPException) as exc:
        return f"push to {url} failed: {exc}"


def push_run(url: str, job: str, registry: CollectorRegistry, grouping_key: dict[str, str], *,
             success_registry: CollectorRegistry | None = None, timeout: float = 2.0) -> str | None:
    """Push one run's outcome; on a successful run also push ``success_registry``
    (the last-success timestamp) to its own group (``result="success"``), so a
    failing run never erases when the last good one happened (a PUT replaces a group).
    """
    error = push(url, job, registry, grouping_key=grouping_key, timeout=timeout)
    if error is None and success_registry is not None:
        error = push(url, job, success_registry, grouping_key={**grouping_key, "result": "success"}, timeout=timeout)
    return error
