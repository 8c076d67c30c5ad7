"""Where a component listens: host and port of a URL or front address, and whether it is this host.

Shared by the runbook (what the native runtime starts here) and the monitoring configuration
(what Prometheus scrapes, which webhooks are local); a leaf below both.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from .settings import PROFILE_NAMES, Settings

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})


def listen_of(url: str) -> tuple[str, int]:
    """host, port of a worker base URL or a front address (tcp://host:port)."""
    parts = urlsplit(url if "://" in url else f"tcp://{url}")
    if not parts.hostname or not parts.port:
        raise ValueError(f"{url!r} has no host:port")
    return parts.hostname, parts.port


def is_loopback(url: str) -> bool:
    """True when a base URL or front address names this host (the native runtime may start it)."""
    return listen_of(url)[0] in LOOPBACK_HOSTS


def local_sim_profiles(settings: Settings) -> list[str]:
    """Profiles whose market-data front is a local ctp-sim (channel=sim, loopback front)."""
    if settings.feed.channel != "sim":
        return []
    return [name for name in PROFILE_NAMES if (fronts := settings.profile(name).md_fronts) and is_loopback(fronts[0])]
