"""The full-feed worker (full_feed_subscription.py): CTP side, tick path, process; one module per job.

CTP side: :mod:`.callbacks` (SPI classes, event queue), :mod:`.gateway` (market-data session),
:mod:`.subscriptions` (per-instrument subscription and retries), :mod:`.instrument_list` (the
day's list, shard selection), :mod:`.trader_front` (instrument query), :mod:`.instruments` (cache
file and checks), :mod:`.pacing` (flow-control refusals, backoff). Tick path: :mod:`.layout`,
:mod:`.pipeline` (callback ring, pipeline thread), :mod:`.ticks` (record, date normalisation),
:mod:`.dedupe`, :mod:`.book`, :mod:`.writer`, :mod:`.sinks`, :mod:`.resume`. Process:
:mod:`.service` (wiring, run, stop, shutdown), :mod:`.book_coverage`, :mod:`.status`
(/livez /readyz /status), :mod:`.http`, :mod:`.metrics`, :mod:`.inputs`, :mod:`.tuning`,
:mod:`.probe`, :mod:`.errors`, :mod:`.cli` (the command line).
"""
