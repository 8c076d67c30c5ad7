"""Interpreter settings for the worker and its sink writer process (one place for both).

Every tick allocates tuples, so with the default thresholds a full collection (walking
every object of the process, ~100 ms with 20,000 instruments loaded) runs every few
seconds and shows as latency spikes. The long-lived objects are frozen (never walked
again) and collections run less often; the tick path creates no cycles. Threads switch
every 1 ms instead of 5 ms: a thread handed work (the pipeline after the callback, the
writer's writing thread after its receiving thread) gets the interpreter lock sooner.
"""

from __future__ import annotations

import gc
import sys

GC_THRESHOLD = 100_000  # allocations between young-generation collections (default 700)
#: How long a thread waiting for the interpreter lock waits before the holder must yield (default 5 ms).
SWITCH_INTERVAL_SECONDS = 0.001


def tune_interpreter() -> None:
    """Freeze what exists now out of the cyclic collector, collect rarely, switch threads every 1 ms."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_THRESHOLD, 50, 1000)
    sys.setswitchinterval(SWITCH_INTERVAL_SECONDS)
