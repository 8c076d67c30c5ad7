"""The reference consumer: what a subscriber sees of the feed (docs/ops/consumer.md).

It reads the ticks the worker's sink wrote, as a downstream consumer does, and counts
per instrument and in total: the last tick, gaps (exchange-time distance between
consecutive ticks beyond the instrument's usual rhythm, the closed part of the trading
session not counted), duplicates, out-of-order ticks and its own lag (clock.time()
minus the tick's receive and exchange time). Operators run it to verify a switchover
from the subscriber's side; ``start_live_env.sh drill`` and the fault matrix attach it.

Sources (:func:`open_source`):

* ``redis://host:port/db``: every stream ``<prefix>:*`` (one per exchange, found by
  ``SCAN`` every 2 s) read with a consumer group (``XREADGROUP``, own pending entries
  first, then ``>``), each entry acknowledged (``XACK``) once counted;
* ``file:<dir>``: follows ``<dir>/<trading_day>/ticks-*.jsonl`` (whole lines only; a
  file that shrinks is re-read from its new end).

In-process (tests, the fault matrix)::

    from feedops.consumer import ReferenceConsumer, open_source
    consumer = ReferenceConsumer(open_source("redis://127.0.0.1:6379/0", group="drill"))
    consumer.start()                      # a daemon thread reads and counts
    consumer.wait_for(lambda r: r["totals"]["instruments"] >= 200, timeout=30)
    consumer.mark_outage("failover")      # just before the fault
    ...                                   # the fault, the recovery
    consumer.mark_resume("failover")      # just before the new session starts (old one stopped)
    consumer.wait_recovered("failover", timeout=60)
    report = consumer.stop()              # the final report (dict, below)

As a process (``python -m feedops.consumer``, console script ``feedops-consumer``)::

    feedops-consumer --source redis://127.0.0.1:6379/0 --group drill --listen 127.0.0.1:9110 \
        --report-file var/state/consumer-report.json [--duration 60] [--push] [--fail-on duplicates,gaps]

HTTP on ``--listen``: ``GET /metrics`` (Prometheus), ``GET /report`` (JSON;
``?instruments=0`` leaves out the per-instrument table), ``GET /livez``, ``POST
/outage?phase=NAME&event=start|resume`` (the marks above). SIGTERM/SIGINT or
``--duration`` stop it; the report is written to ``--report-file`` (and stdout with
``--print-report``) at exit, and on SIGUSR1. Exit codes: :class:`feedops.exitcodes.Consumer`.

The report (``version`` 1)::

    {"version": 1, "source": "redis://127.0.0.1:6379/0", "group": "drill", "started_at": <unix>, "at": <unix>,
     "coverage_ratio": 0.9,                                  # the threshold recovery is judged at
     "totals": {"ticks": n, "instruments": n, "duplicates": n, "out_of_order": n, "gaps": n,
                "gap_missed_ticks": n, "acknowledged": n, "pending": n,
                "last_tick": {"instrument": .., "exchange_ts": .., "recv_ts": .., "seen_at": ..},
                "lag_seconds": {"receive": {"last", "p50", "p99", "max"}, "exchange": {...}}},
     "by_exchange": {"SHFE": {"ticks": n, "duplicates": n, "out_of_order": n, "gaps": n}, ...},
     "outages": {"failover": {"start": <unix>, "resume": <unix> | null, "instruments": n (fresh at start),
                              "back": n, "recovered": bool, "recovery_seconds": s | null,
                              "ticks_missed": n, "duplicates": n, "out_of_order": n,
                              "lag_seconds": {"p50", "p99", "max"}}, ...},
     "gaps_outside_outages": n,
     "gaps": [{"instrument", "exchange", "from_exchange_ts", "to_exchange_ts", "open_seconds",
               "missed", "seen_at", "in_outage": phase | null}, ...],   # the last 1000
     "instruments": {"rb2701": {"exchange", "ticks", "last_exchange_ts", "last_recv_ts", "last_seen_at",
                                "update_time", "last", "volume", "interval_seconds", "duplicates",
                                "out_of_order", "gaps", "missed"}, ...}}

Time is an input: :class:`~feedops.consumer.tracker.TickTracker` takes the time each
tick was seen as an argument; the service reads it from :mod:`feedops.clock`.
"""

from __future__ import annotations

from .service import ReferenceConsumer
from .sources import FileSource, RedisSource, SourceError, open_source
from .tracker import TickTracker

__all__ = ["ReferenceConsumer", "FileSource", "RedisSource", "SourceError", "open_source", "TickTracker"]
