"""Interpreter settings for the worker and its sink writer process (one place for both).

Every tick allocates tuples, so with the default thresholds a full collection (walking
every object of the process, ~100 ms with 20,000 instruments loaded) runs every few
seconds and shows as latency spikes. The long-lived objects are frozen (never walked
again) and collections run less often; the tick path creates no cycles. Threads switch
every 1 ms instead of 5 ms: a thread handed work (the pipeline after the callback, the
writer's writing thread after its receiving thread) gets the interpreter lock sooner.
And glibc's malloc keeps the per-batch buffers in its heap (:func:`tune_allocator`).
"""

from __future__ import annotations

import ctypes
import gc
import sys

GC_THRESHOLD = 100_000  # allocations between young-generation collections (default 700)
#: How long a thread waiting for the interpreter lock waits before the holder must yield (default 5 ms).
SWITCH_INTERVAL_SECONDS = 0.001


#: glibc's malloc serves a block this large or larger with a fresh mmap (default 128 kB, raised as blocks are freed).
MMAP_THRESHOLD_BYTES = 16 << 20
#: ... and gives back the free memory at the top of its heap past this (default: twice the mmap threshold).
TRIM_THRESHOLD_BYTES = 32 << 20
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt(3) parameters


def tune_interpreter() -> None:
    """Freeze what exists now out of the cyclic collector, collect rarely, switch threads every 1 ms; keep a
    batch's buffers in the heap (:func:`tune_allocator`)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_THRESHOLD, 50, 1000)
    sys.setswitchinterval(SWITCH_INTERVAL_SECONDS)
    tune_allocator()


def tune_allocator() -> bool:
    """Serve the tick path's per-batch buffers (a batch's structs and records, a few hundred kB; the writer's
    text of a batch, ~0.5 MB at 40,000 ticks/s) from malloc's heap, reused, instead of a fresh mmap each
    that every page of the first write faults in (measured: the writer's encode 0.84 -> 0.65 us per tick).
    The heap keeps at most TRIM_THRESHOLD_BYTES free before giving memory back. False where the C library
    is not glibc (nothing changes)."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES))
