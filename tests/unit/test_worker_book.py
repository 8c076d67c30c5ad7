"""The book's last tick times: written a batch at a time by instrument id, read by the listed instruments."""

from __future__ import annotations

import math

import numpy as np
import pytest

from feedops.worker.book import Instrument, InstrumentBook
from feedops.worker.dedupe import Deduper
from feedops.worker.pipeline import Pipeline


def listed(*names: str) -> list[Instrument]:
    return [Instrument(name, "SHFE", name[:2], "futures") for name in names]


def test_snapshot_reads_the_last_time_of_each_listed_instrument_by_its_id():
    book = InstrumentBook()
    book.load(listed("rb2601", "cu2601", "au2602"))
    ids = book.ids.of(np.array([b"cu2601", b"zz9999", b"cu2601", b"rb2601"], dtype="S81"))
    book.record(ids, np.array([1.0, 2.0, 3.0, 4.0]))  # cu2601 twice: the later tick wins; zz9999 is not listed
    columns, _, last = book.snapshot()
    assert columns["instrument"] == ["rb2601", "cu2601", "au2602"]
    assert last[:2].tolist() == [4.0, 3.0] and math.isnan(last[2])
    assert book.last_tick_of("zz9999") == 2.0 and book.last_tick_of("au2602") is None
    assert book.last_tick_of("never-met") is None


def test_ids_beyond_the_array_grow_it_without_losing_a_time():
    book = InstrumentBook()
    names = [f"x{i:05d}" for i in range(5000)]  # more than the first array holds
    book.load(listed(*names))
    ids = book.ids.of(np.array([n.encode() for n in names], dtype="S81"))
    book.record(ids[:10], np.arange(10.0))
    book.record(ids, np.arange(5000.0) + 100)
    _, _, last = book.snapshot()
    assert last.tolist() == (np.arange(5000.0) + 100).tolist()


def test_a_pipeline_refuses_a_deduper_that_does_not_share_the_books_ids():
    book = InstrumentBook()
    with pytest.raises(ValueError, match="share their instrument ids"):
        Pipeline(None, None, Deduper(), book, type("Sink", (), {})(), None)
