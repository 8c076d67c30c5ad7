"""A batch's rows as one text (encode.Rows): what the writer hands the file sink, written as it is.

Every path is compared with the rows built line by line (Encoder.rows), byte for byte: the rows
themselves, the file sink's files (a two-day batch, an outage with the batch buffered and written
later), the writer's accounting and the joining of batches that queued up."""

from __future__ import annotations

import numpy as np
import pytest

from feedops.worker.encode import Encoder, Rows
from feedops.worker.metrics import LATENCY_BUCKETS
from feedops.worker.sinks import FileSink
from feedops.worker.ticks import RECORD_DTYPE
from feedops.worker.writerproc import Accountant, columns, joined

MAX = 1.7976931348623157e308


def batch(start: int, size: int, days=("20261127",)) -> np.ndarray:
    records = np.zeros(size, dtype=RECORD_DTYPE)
    names = [b"rb2601", b'q"x', "\u94dc2601".encode("gb18030"), b"a,b"]
    records["instrument"] = [names[(start + i) % 4] for i in range(size)]
    records["exchange"] = [(b"SHFE", b"DCE", b"CZCE")[(start + i) % 3] for i in range(size)]
    records["trading_day"] = [days[(start + i) % len(days)].encode() for i in range(size)]
    records["action_day"] = b"20261127"
    records["update_time"] = [b"10:00:%02d" % ((start + i) % 60) for i in range(size)]
    records["last"] = [(3000.5 + start + i, MAX, 0.1 + 0.2)[i % 3] for i in range(size)]
    records["volume"] = np.arange(start, start + size)
    records["exchange_ts"] = 1_795_744_800.0 + np.arange(start, start + size) / 3
    records["recv_ts"] = records["exchange_ts"] + 0.25
    return records


def test_rows_as_one_text_are_the_rows_line_by_line():
    encoder, records = Encoder(), batch(0, 50)
    lines, text = encoder.rows(records), encoder.text_rows(records)
    assert len(text) == 50 and list(text) == lines and text[3] == lines[3] and text[-1] == lines[-1]
    assert text[10:20] == lines[10:20] and text.lines() == [row[0] for row in lines]
    assert text.text == b"".join(row[0] + b"\n" for row in lines)
    with pytest.raises(IndexError):
        text[50]
    empty = encoder.text_rows(records[:0])
    assert len(empty) == 0 and list(empty) == [] and empty.text == b""
    second = encoder.text_rows(batch(50, 7))
    both = Rows.concat([text, second, empty])
    assert list(both) == lines + encoder.rows(batch(50, 7)) and both.text == text.text + second.text


def _files(root) -> dict[str, bytes]:
    return {str(path.relative_to(root)): path.read_bytes() for path in sorted(root.rglob("*.jsonl"))}


def test_the_file_sink_writes_rows_as_one_text_byte_for_byte_as_line_by_line(tmp_path):
    """One-day batches (the text as it is), a two-day batch, and an outage: a batch buffered while the day's
    directory cannot be made, written with the next one once it can."""
    encoder = Encoder()
    for kind, make in (("lines", encoder.rows), ("text", encoder.text_rows)):
        root = tmp_path / kind
        sink = FileSink(root, (0, 1), buffer_max=1000, reconnect_interval=0.0)
        sink.use_rows()
        assert sink.open()
        assert len(sink.publish(make(batch(0, 40)))) == 40
        assert len(sink.publish(make(batch(40, 30, days=("20261127", "20261130"))))) == 30
        (root / "20261201").write_text("in the way")  # the next day's directory cannot be made
        assert sink.publish(make(batch(70, 20, days=("20261201",)))) == [] and sink.buffered == 20
        (root / "20261201").unlink()
        assert len(sink.publish(make(batch(90, 10, days=("20261201",))))) == 30 and sink.buffered == 0
        sink.close()
    lines, text = _files(tmp_path / "lines"), _files(tmp_path / "text")
    assert sorted(lines) == ["20261127/ticks-0of1.jsonl", "20261130/ticks-0of1.jsonl", "20261201/ticks-0of1.jsonl"]
    assert text == lines


def test_accounting_and_joining_take_rows_as_one_text_as_they_take_rows(monkeypatch):
    monkeypatch.setattr("feedops.worker.writerproc.time.time", lambda: 1_795_745_000.0)
    encoder, first, second = Encoder(), batch(0, 30), batch(30, 12)
    lines = joined([encoder.rows(first), encoder.rows(second)])
    text = joined([encoder.text_rows(first), encoder.text_rows(second)])
    assert isinstance(text, Rows) and list(text) == lines
    assert [c.tolist() for c in columns(text)] == [c.tolist() for c in columns(lines)]
    assert Accountant(LATENCY_BUCKETS).account(text) == Accountant(LATENCY_BUCKETS).account(lines)
    assert joined([encoder.rows(first), encoder.text_rows(second)]) == lines  # a mix: rows line by line
