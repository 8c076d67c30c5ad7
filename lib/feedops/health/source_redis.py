"""The health check's Redis source: ``XINFO GROUPS`` of every ``<prefix>:*`` stream, within one timeout
however slowly the replies come."""

from __future__ import annotations

import re
import threading

from .sources import ConsumerGroup, SourceError, safe_url

_REDIS_URL = re.compile(r"^rediss?://")


def read_consumer_groups(url: str, stream_prefix: str, timeout: float = 2.0) -> list[ConsumerGroup]:
    """Consumer groups of every stream ``<stream_prefix>:*`` (lag may be None)."""
    shown = safe_url(url)
    if not _REDIS_URL.match(url):
        raise SourceError("redis", shown, "is not a redis:// URL", "pass --redis redis://host:port/db or set FEEDOPS_SINK_URL")
    import redis

    expired = threading.Event()
    timer: threading.Timer | None = None
    try:
        client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout, decode_responses=True)

        def cut() -> None:  # a reply trickling in byte by byte never trips the per-read socket timeout
            expired.set()
            client.connection_pool.disconnect()

        timer = threading.Timer(timeout, cut)
        timer.daemon = True
        timer.start()
        groups: list[ConsumerGroup] = []
        try:
            for stream in sorted(client.scan_iter(match=f"{stream_prefix}:*", _type="STREAM", count=1000)):
                for info in client.xinfo_groups(stream):
                    groups.append(ConsumerGroup(stream=stream, group=str(info.get("name")), lag=info.get("lag"),
                                                pending=int(info.get("pending") or 0), consumers=int(info.get("consumers") or 0)))
        finally:
            client.close()
        if expired.is_set():
            raise redis.exceptions.TimeoutError()
        return groups
    except redis.exceptions.AuthenticationError:
        raise SourceError("redis", shown, "refused the credentials", "check the password in the Redis URL") from None
    except (redis.exceptions.RedisError, OSError, ValueError) as exc:
        if expired.is_set():
            raise SourceError("redis", shown, f"no complete answer within {timeout:g}s",
                              "check that Redis is not stalled (SLOWLOG, a paused server) or pass the right --redis URL") from None
        reason = str(exc).split("\n", 1)[0] or type(exc).__name__
        raise SourceError("redis", shown, f"unreachable ({reason})", "start Redis or pass the right --redis URL") from None
    finally:
        if timer is not None:
            timer.cancel()
