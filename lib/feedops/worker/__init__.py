"""The full-feed worker (full_feed_subscription.py): gateway, pipeline, sinks, HTTP, metrics.

Modules: :mod:`.gateway` (CTP session state machine), :mod:`.ticks` (callback copy,
normalisation, de-duplication), :mod:`.pipeline` (bounded queue, pipeline thread),
:mod:`.sinks` (file, Redis Streams), :mod:`.http` (/metrics /livez /readyz /status),
:mod:`.metrics` (the registry), :mod:`.service` (wiring, run loop, probe), :mod:`.cli` (the command line).
"""
