"""One HTTP request bounded in total by its timeout (the checkers' reads and pushes).

A socket timeout bounds each read only: a server trickling its answer one byte a
second never trips it. :func:`request` starts a timer when the connection is up and
shuts the socket down at the deadline, so connect, request, headers and body together
take at most about ``timeout`` seconds; it then raises :class:`Deadline`.
"""

from __future__ import annotations

import http.client
import socket
import threading
import time
import urllib.parse


class Deadline(OSError):
    """No complete answer within the timeout."""


def request(url: str, timeout: float, *, method: str = "GET", headers: dict[str, str] | None = None,
            data: bytes | None = None) -> tuple[int, str, bytes]:
    """(status, reason, body) of one request to an http(s) URL. Raises :class:`Deadline`, OSError,
    http.client.HTTPException, or ValueError for a URL that is not http(s)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("not an http(s) URL")
    cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    deadline = time.monotonic() + timeout
    conn = cls(parts.hostname, parts.port, timeout=timeout)  # bounds the connect and each read
    expired = threading.Event()
    timer: threading.Timer | None = None
    try:
        conn.connect()
        sock = conn.sock  # kept: http.client drops conn.sock before the body of a closing response is read

        def cut() -> None:
            expired.set()
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

        timer = threading.Timer(max(0.0, deadline - time.monotonic()), cut)
        timer.daemon = True
        timer.start()
        path = urllib.parse.urlunsplit(("", "", parts.path or "/", parts.query, ""))
        conn.request(method, path, body=data, headers=headers or {})
        resp = conn.getresponse()
        body = resp.read()
        if expired.is_set():
            raise Deadline(f"no complete answer within {timeout:g}s")
        return resp.status, resp.reason, body
    except (OSError, http.client.HTTPException):
        if expired.is_set():
            raise Deadline(f"no complete answer within {timeout:g}s") from None
        raise
    finally:
        if timer is not None:
            timer.cancel()
        conn.close()
