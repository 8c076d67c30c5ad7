"""Bounded readiness polling of the worker(s) with progress lines.

A worker is ready when its ``/readyz`` answers 2xx and, when a profile is expected
(after a failover), its ``/status`` reports that profile.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import TextIO


@dataclass
class Probe:
    ready: bool
    detail: str


def probe(url: str, expect_profile: str | None = None, timeout: float = 1.0) -> Probe:
    """One look at one worker."""
    try:
        with urllib.request.urlopen(f"{url}/readyz", timeout=timeout) as resp:
            resp.read(4096)
    except urllib.error.HTTPError as exc:
        body = exc.read(300).decode("utf-8", "replace").strip().replace("\n", " ")
        return Probe(False, f"not ready (HTTP {exc.code}{': ' + body if body else ''})")
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return Probe(False, f"not answering ({reason})")
    if expect_profile is None:
        return Probe(True, "ready")
    try:
        with urllib.request.urlopen(f"{url}/status", timeout=timeout) as resp:
            profile = json.loads(resp.read()).get("profile")
    except (urllib.error.URLError, OSError, ValueError, AttributeError) as exc:
        return Probe(False, f"ready but /status unreadable ({exc})")
    if profile != expect_profile:
        return Probe(False, f"ready on profile {profile}, waiting for {expect_profile}")
    return Probe(True, f"ready on profile {profile}")


def wait_ready(urls: list[str], timeout: float, out: TextIO, *, expect_profile: str | None = None,
               interval: float = 0.25, progress_every: float = 2.0,
               alive: Callable[[int], str | None] | None = None) -> tuple[bool, str]:
    """Poll every worker until all are ready or ``timeout`` passes.

    ``alive(index)`` returns a reason when worker ``index`` died (native runtime), which
    ends the wait at once. Returns (all ready, summary); progress lines go to ``out``.
    """
    start = time.monotonic()
    deadline = start + timeout
    next_progress = start
    pending = {i: Probe(False, "not probed yet") for i in range(len(urls))}
    while True:
        for i in list(pending):
            result = probe(urls[i], expect_profile)
            if result.ready:
                del pending[i]
                out.write(f"ready: {urls[i]} {result.detail} after {time.monotonic() - start:.1f}s\n")
                out.flush()
            else:
                pending[i] = result
                dead = alive(i) if alive else None
                if dead:
                    return False, dead
        if not pending:
            return True, f"{len(urls)}/{len(urls)} worker(s) ready after {time.monotonic() - start:.1f}s"
        now = time.monotonic()
        if now >= deadline:
            details = "; ".join(f"{urls[i]}: {p.detail}" for i, p in pending.items())
            return False, f"{len(urls) - len(pending)}/{len(urls)} worker(s) ready after {timeout:g}s ({details})"
        if now >= next_progress:
            first = next(iter(pending))
            out.write(f"waiting: {len(urls) - len(pending)}/{len(urls)} ready, {now - start:.1f}s of {timeout:g}s "
                      f"({urls[first]}: {pending[first].detail})\n")
            out.flush()
            next_progress = now + progress_every
        time.sleep(min(interval, max(0.0, deadline - time.monotonic())))
