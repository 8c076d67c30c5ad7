"""The callback queue's hand-off to the pipeline thread, and the latency samples /status reads."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from feedops.worker.pipeline import LatencySamples, Pipeline, TickQueue
from tick_support import depth_struct


def test_latency_samples_keep_the_last_capacity_values_across_wrap_arounds():
    samples = LatencySamples(capacity=5)
    assert len(samples) == 0 and Pipeline.percentiles(samples, (0.5,)) == [None]
    written = []
    for size in (3, 4, 0, 1, 7, 2):  # short reports, one longer than the ring, wrapping at every position
        values = np.arange(len(written), len(written) + size, dtype=np.float64) / 10
        samples.extend(values.tobytes())
        written.extend(values.tolist())
        assert sorted(samples.values().tolist()) == sorted(written[-5:])
        assert len(samples) == min(5, len(written))


def test_percentiles_are_nearest_rank_over_the_samples_held():
    samples = LatencySamples(capacity=100)
    samples.extend(np.arange(1, 101, dtype=np.float64)[::-1].tobytes())  # order does not matter
    assert Pipeline.percentiles(samples, (0.0, 0.5, 0.99, 1.0)) == [1.0, 51.0, 99.0, 100.0]  # rank round(q x 99)
    assert all(type(v) is float for v in Pipeline.percentiles(samples, (0.5,)))  # JSON-ready, not numpy scalars
    assert Pipeline.percentiles([3.0, 1.0, 2.0], (0.5,)) == [2.0]


def test_an_idle_pipeline_is_woken_once_per_idle_spell_not_once_per_tick():
    queue = TickQueue(16)
    calls = []

    class CountingEvent(threading.Event):
        def set(self):
            calls.append(1)
            super().set()

    queue.wakeup = CountingEvent()
    depth = depth_struct(InstrumentID="rb2601", ExchangeID="SHFE", UpdateTime="10:00:00")
    queue.offer(depth)  # not idle: nobody waits, no wake-up
    assert calls == []
    queue.idle = True  # what the pipeline says before it waits
    for _ in range(5):
        queue.offer(depth)
    assert len(calls) == 1 and queue.wakeup.is_set() and not queue.idle
    assert len(queue) == 6


@pytest.mark.parametrize("ticks", [1, 40])
def test_a_waiting_pipeline_thread_takes_ticks_offered_while_it_waits(ticks):
    """The pipeline's wait (50 ms timeout) ends on the callback's wake-up, not on the timeout."""
    queue = TickQueue(64)
    taken = threading.Event()
    waits = []

    def pipeline():  # the idle part of Pipeline._loop
        while not len(queue):
            queue.idle = True
            if not len(queue):
                waits.append(queue.wakeup.wait(5.0))  # far longer than the test: a missed wake-up fails it
            queue.idle = False
            queue.wakeup.clear()
        taken.set()

    thread = threading.Thread(target=pipeline, daemon=True)
    thread.start()
    assert not taken.wait(0.05)  # waiting, nothing offered
    depth = depth_struct(InstrumentID="rb2601", ExchangeID="SHFE", UpdateTime="10:00:00")
    for _ in range(ticks):
        queue.offer(depth)
    assert taken.wait(4.0)
    assert waits and waits[-1] is True  # woken by the event, not by the timeout
    thread.join(1.0)


def test_the_allocator_keeps_a_batch_s_buffers_in_its_heap():
    """tune_allocator (both processes, at start): glibc's mallopt accepts both settings; a buffer of a batch's
    size freed and asked for again comes back from the heap, at the same address, not from a new mapping."""
    import ctypes

    from feedops.worker.tuning import tune_allocator

    assert tune_allocator() is True
    libc = ctypes.CDLL(None)
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    first = libc.malloc(600_000)
    libc.free(first)
    second = libc.malloc(600_000)
    libc.free(second)
    assert first == second


def test_the_compiled_callback_side_copies_through_the_pointer_and_counts_drops_without_reading_it():
    from feedops import clock
    from feedops.worker.layout import DEPTH_SIZE

    queue = TickQueue(2)
    first = depth_struct(InstrumentID="rb2601", ExchangeID="SHFE", UpdateTime="10:00:00", Volume=7)
    before = clock.time()
    queue.offer(first)
    queue.offer(depth_struct(InstrumentID="cu2601", ExchangeID="SHFE", UpdateTime="10:00:01"))
    after = clock.time()

    class NoPointer:  # a full ring never looks at the struct
        @property
        def this(self):
            raise AssertionError("read")

    queue.offer(NoPointer())
    assert (queue.received, queue.dropped, len(queue)) == (3, 1, 2)
    rows, recv = queue.take(10)
    assert rows["InstrumentID"].tolist() == [b"rb2601", b"cu2601"] and rows["Volume"].tolist()[0] == 7
    assert rows.view(np.uint8).reshape(2, DEPTH_SIZE)[0].tobytes() == first.rows.view(np.uint8).tobytes()
    assert before <= recv[0] <= recv[1] <= after  # the receive time of each, on the feed's clock
    with pytest.raises(AttributeError):
        queue.offer(object())  # no pointer: the callback raises (the binding prints it), nothing is written
    assert len(queue) == 0 and queue.head == 2


def test_the_ring_refuses_buffers_that_do_not_hold_whole_structs():
    from feedops.worker.compiled import _jsonlines

    with pytest.raises(ValueError, match="whole structs"):
        _jsonlines.Ring(bytearray(10), bytearray(8), 4, float, print)
    with pytest.raises(ValueError, match="at least one struct"):
        _jsonlines.Ring(bytearray(0), bytearray(0), 4, float, print)
    with pytest.raises(TypeError):
        _jsonlines.Ring(bytes(8), bytearray(8), 8, float, print)  # read-only
