"""Tick sinks: JSON lines per trading day (file) and Redis Streams (redis).

Both share :class:`Sink`'s buffering: while the target refuses writes the records
wait in a bounded buffer (``FEEDOPS_SINK_BUFFER_MAX``); beyond it the oldest are
dropped and counted. Reconnection is attempted at most once per
``reconnect_interval`` seconds, in the sink writer process (:mod:`feedops.worker.writer`),
so a dead sink never blocks CTP's callback thread. Layouts for consumers are in
docs/ops/worker.md.

* ``file:<dir>``: ``<dir>/<TradingDay>/ticks-<i>of<N>.jsonl``, one JSON object per
  line, appended, written with ``os.write`` after every batch (one file per shard:
  several workers never interleave writes); only whole batches stay (:class:`FileSink`).
* ``redis://host:port/db``: one stream per exchange, ``<prefix>:<EXCHANGE>``; every tick
  is one entry ``XADD <stream> * instrument <id> tick <json>``, issued by a small Lua
  script per stream and batch (which then trims the stream once, ``MAXLEN ~ <maxlen>``)
  in one pipelined round trip, applied at most once per writer id and sequence number
  (:class:`RedisSink`).
"""

from __future__ import annotations

from typing import Callable

from .. import paths
from ..addresses import check_sink_url, public_target
from .filesink import FileSink, repair_torn_tail
from .redissink import RedisSink, applied_key
from .sinkbase import Sink, SinkError

__all__ = ["FileSink", "RedisSink", "Sink", "SinkError", "applied_key", "open_sink", "public_target",
           "repair_torn_tail"]


def open_sink(feed, shard: tuple[int, int], on_error: Callable[[str], None] | None = None) -> Sink:
    """Build the sink named by FEEDOPS_SINK_URL; raise :class:`SinkError` when it is unusable."""
    url = feed.sink_url
    reason = check_sink_url(url)  # the settings model checked it already; a FeedSettings built otherwise too
    if reason:
        raise SinkError(reason)
    if url.startswith("file:"):
        directory = paths.resolve(url[len("file:"):].removeprefix("//"))
        return FileSink(directory, shard, feed.sink_buffer_max, on_error=on_error)
    return RedisSink(url, feed.redis_stream_prefix, feed.redis_stream_maxlen, feed.sink_buffer_max, on_error=on_error)

