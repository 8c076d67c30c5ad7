"""The sink writer process, the normalised-tuple path and its accounting."""

from __future__ import annotations

import array
import bisect
import json
import os
import signal
import sys
import time
from types import SimpleNamespace

import numpy as np
import pytest

from conftest import wait_for
from feedops.calendar import TradingCalendar
from feedops.worker import sinks
from feedops.worker.encode import encode, row_of, rows_of_records
from feedops.worker.layout import DEPTH_DTYPE
from feedops.worker.metrics import LATENCY_BUCKETS
from feedops.worker.sinks import SinkError
from feedops.worker.ticks import VALUE_FIELDS, Normaliser, depth_rows, record_of
from feedops.worker.writer import Accountant, SinkWriter
from feedops.worker.writerproc import Msg, columns

DAY = "20261127"


def raw(instrument="rb2601", exchange="SHFE", update_time="10:00:01", recv=None, **fields):
    """(struct fields, receive time) of one tick: every price "no value" unless given."""
    values = {field: sys.float_info.max for _, field in VALUE_FIELDS if DEPTH_DTYPE.fields[field][0].kind == "f"}
    values.update(InstrumentID=instrument, ExchangeID=exchange, TradingDay=DAY, ActionDay=DAY, UpdateTime=update_time,
                  UpdateMillisec=500, LastPrice=4000.0, Volume=7)
    values.update(fields)
    stamp = recv if recv is not None else 1795744801.6  # 2026-11-27 10:00:01.6 Beijing
    return values, stamp


def records(n, *raws):
    """The records the pipeline hands to the writer for these ticks (one batch)."""
    return n.batch(depth_rows([f for f, _ in raws]), np.array([t for _, t in raws], dtype=np.float64)).records


def feed(tmp_path, url=None):
    return SimpleNamespace(sink_url=url or f"file:{tmp_path / 'feed'}", redis_stream_prefix="feedops:md",
                           redis_stream_maxlen=1000, sink_buffer_max=1000)


def test_batch_rows_encode_exactly_like_records():
    n = Normaliser(TradingCalendar("exchange", set()), {"m2601": "DCE"})
    raws = [raw(), raw("m2601", exchange="", Volume=3), raw(LastPrice=float("nan"), Turnover=-sys.float_info.max),
            raw("SR601", exchange="CZCE", OpenPrice=1e301, HighestPrice=float("inf"))]
    prepared = records(n, *raws)
    rows = rows_of_records(prepared)
    assert [row[0] for row in rows] == [encode(n.normalise(*r)) for r in raws]
    assert rows == [row_of(p) for p in prepared]
    first, third, fourth = (json.loads(rows[i][0]) for i in (0, 2, 3))
    assert first["settlement"] is None and first["last"] == 4000.0 and first["exchange_ts"] == pytest.approx(1795744801.5)
    assert third["last"] is None and third["turnover"] is None  # NaN and -DBL_MAX: no value
    assert fourth["open"] == 1e301 and fourth["high"] is None  # a huge number stays; infinity has no value
    assert rows[1][1:4] == (b"m2601", "DCE", DAY) and record_of(prepared[1])["exchange"] == "DCE"


@pytest.mark.parametrize("instrument", ["a,b", 'q"x', "back\\slash", "],[", "汉字"])
def test_strange_instrument_ids_take_the_per_record_path_with_the_same_output(instrument):
    n = Normaliser(TradingCalendar("exchange", set()))
    prepared = records(n, raw(instrument), raw("rb2601", update_time="10:00:02"))
    rows = rows_of_records(prepared)
    assert [json.loads(row[0])["instrument"] for row in rows] == [instrument, "rb2601"]
    assert rows == [row_of(p) for p in prepared] and rows[0][1] == instrument.encode()


def test_the_date_cache_follows_the_session_trading_day():
    n = Normaliser(TradingCalendar("exchange", set()))
    czce = raw("SR601", exchange="CZCE", TradingDay="20261127", ActionDay="20261127")
    assert records(n, czce)[0]["trading_day"] == b"20261127"
    n.session_trading_day = "20261130"  # a new login: CZCE's trading day follows it
    assert records(n, czce)[0]["trading_day"] == b"20261130"


def test_accounting_buckets_match_one_observation_per_tick(monkeypatch):
    accountant = Accountant(LATENCY_BUCKETS)
    now = 0.0  # so that now - (now - latency) is the latency exactly (bounds included)
    monkeypatch.setattr("feedops.worker.writerproc.time.time", lambda: now)
    latencies = [0.0, *LATENCY_BUCKETS, 0.0007, 0.3, 99.0, -3.0]  # exact bounds included ("le")
    # exchange latency `lat`, callback-to-sink (pipeline) latency the same reversed
    rows = [(b"{}", b"x", "SHFE" if i % 2 else "DCE", DAY, now - lat, now - latencies[-1 - i])
            for i, lat in enumerate(latencies)]
    acct = accountant.account(rows)
    expected: dict[str, list[int]] = {}
    pipeline = [0] * (len(LATENCY_BUCKETS) + 1)
    for i, (row, lat) in enumerate(zip(rows, latencies)):
        counts = expected.setdefault(row[2], [0] * (len(LATENCY_BUCKETS) + 1))
        counts[bisect.bisect_left(LATENCY_BUCKETS, max(0.0, lat))] += 1
        pipeline[bisect.bisect_left(LATENCY_BUCKETS, latencies[-1 - i])] += 1
    assert acct["histogram"] == expected
    assert acct["pipeline_histogram"] == pipeline and sum(pipeline) == len(rows)
    assert acct["pipeline_sum"] == pytest.approx(sum(max(0.0, lat) for lat in latencies))  # never negative
    half = len(latencies) // 2
    assert acct["per_exchange"] == {"DCE": len(latencies) - half, "SHFE": half} and acct["delivered"] == len(latencies)


def test_accounting_from_the_columns_read_before_the_write_is_the_same(monkeypatch, tmp_path):
    """WriterProcess.write reads the rows' times once, for the skew and for the accounting, when the sink
    delivered the very rows it was given (the usual write); any other delivery is read again."""
    monkeypatch.setattr("feedops.worker.writerproc.time.time", lambda: 1_000.0)
    rows = [(b"{}", b"x", ("SHFE", "DCE", "CZCE")[i % 3], DAY, 990.0 + i / 7, 999.0 - i / 11) for i in range(40)]
    first, second = Accountant(LATENCY_BUCKETS), Accountant(LATENCY_BUCKETS)
    assert first.account(rows, columns(rows)) == second.account(rows)
    sink = sinks.open_sink(feed(tmp_path), (0, 1))
    sink.use_rows()
    sink.open()
    assert sink.publish(rows) is rows  # delivered whole, nothing before it: the same list
    sink.close()


def test_writer_writes_reports_and_flushes(tmp_path):
    n = Normaliser(TradingCalendar("exchange", set()))
    writer = SinkWriter(feed(tmp_path), (0, 1), LATENCY_BUCKETS)
    seen = []
    writer.on_account = seen.append
    try:
        assert writer.open() is True and writer.up
        nts = records(n, *[raw(f"rb26{i:02d}", recv=time.time()) for i in range(10)])
        assert writer.wait_room(5)
        writer.submit(nts)
        writer.flush(5)
        assert writer.published_total == 10 and sum(a["delivered"] for a in seen) == 10
        samples = array.array("d", seen[0]["sink_latency"])
        assert len(samples) == 10 and all(0 <= s < 60 for s in samples)  # measured after the write
        lines = (tmp_path / "feed" / DAY / "ticks-0of1.jsonl").read_text().splitlines()
        assert [json.loads(line)["instrument"] for line in lines] == [f"rb26{i:02d}" for i in range(10)]
    finally:
        writer.close()


def test_writer_keeps_order_across_coalesced_batches_and_close_writes_what_is_queued(tmp_path):
    n = Normaliser(TradingCalendar("exchange", set()))
    writer = SinkWriter(feed(tmp_path), (0, 1), LATENCY_BUCKETS, max_in_flight=64)
    names = [f"x{i:04d}" for i in range(3000)]
    try:
        assert writer.open() is True
        for start in range(0, 3000, 50):  # 60 batches sent as fast as they go: the writer coalesces them
            assert writer.wait_room(5)
            writer.submit(records(n, *[raw(name) for name in names[start:start + 50]]))
    finally:
        writer.close()  # right away: the close queues behind the batches, which are written first
    lines = (tmp_path / "feed" / DAY / "ticks-0of1.jsonl").read_text().splitlines()
    assert [json.loads(line)["instrument"] for line in lines] == names


def test_a_batch_the_writer_cannot_build_ends_it_loudly_after_writing_the_rest(tmp_path, capfd, monkeypatch):
    from feedops import log as log_mod

    monkeypatch.setitem(log_mod._defaults, "fmt", "json")  # what the child is told to log like
    monkeypatch.setitem(log_mod._defaults, "level", "info")
    n = Normaliser(TradingCalendar("exchange", set()))
    writer = SinkWriter(feed(tmp_path), (0, 1), LATENCY_BUCKETS)
    try:
        assert writer.open() is True
        writer.submit(records(n, raw("rb2601")))
        with pytest.raises(TypeError, match="RECORD_DTYPE"):
            writer.submit([("not a tick",)])  # a bug upstream: refused in the worker, nothing sent
        with writer._send_lock:  # a batch whose bytes are not records (a bug on the pipe): the child cannot build rows
            writer._conn.send((Msg.BATCH, 3))
            writer._conn.send_bytes(b"not records")
        wait_for(lambda: writer.error is not None, timeout=20, what="writer exit noticed")
        assert "exited unexpectedly (exit code 1)" in writer.error
    finally:
        writer.close()
    err = capfd.readouterr().err
    crashed = [json.loads(line) for line in err.splitlines() if '"worker.sink.receiver_crashed"' in line]
    assert crashed and crashed[0]["level"] == "critical" and "ValueError" in crashed[0]["msg"]
    lines = (tmp_path / "feed" / DAY / "ticks-0of1.jsonl").read_text().splitlines()
    assert [json.loads(line)["instrument"] for line in lines] == ["rb2601"]


def test_writer_death_is_reported_not_hidden(tmp_path):
    writer = SinkWriter(feed(tmp_path), (0, 1), LATENCY_BUCKETS)
    try:
        writer.open()
        os.kill(writer._process.pid, signal.SIGKILL)
        wait_for(lambda: writer.error is not None, timeout=10, what="writer death noticed")
        assert "exited unexpectedly" in writer.error and not writer.up
        with pytest.raises(RuntimeError):
            writer.submit([])
    finally:
        writer.close()


def test_unusable_sink_is_a_sink_error_before_any_process(tmp_path):
    with pytest.raises(SinkError):
        SinkWriter(feed(tmp_path, "redis://127.0.0.1:notaport/0"), (0, 1), LATENCY_BUCKETS)


def _write_back_calls(tmp_path, monkeypatch, start_write_back: bool) -> tuple[list, list, int]:
    """(sync_file_range ranges, posix_fadvise ranges, file size) of 20 batches appended to a day file of 1000 lines."""
    import os as os_mod

    from feedops.worker import filesink, sinks

    started, advised = [], []
    real_advise, real_start = os_mod.posix_fadvise, filesink._START_WRITE_BACK

    def advise(fd, offset, length, advice):
        assert advice == os_mod.POSIX_FADV_DONTNEED
        advised.append((offset, length))
        return real_advise(fd, offset, length, advice)

    def start(fd, offset, length, flags):
        assert flags == filesink._SYNC_FILE_RANGE_WRITE
        started.append((offset, length))
        return real_start(fd, offset, length, flags)

    monkeypatch.setattr(filesink, "WRITEBACK_BYTES", 4096)
    monkeypatch.setattr(filesink, "DROP_LAG_BYTES", 8192)
    monkeypatch.setattr(filesink.os, "posix_fadvise", advise)
    monkeypatch.setattr(filesink, "_START_WRITE_BACK", start if start_write_back else None)
    path = tmp_path / "feed" / DAY / "ticks-0of1.jsonl"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"{}\n" * 1000)  # a restart on the same day appends to this
    sink = sinks.open_sink(feed(tmp_path), (0, 1))
    sink.use_rows()
    assert sink.open()
    n = Normaliser(TradingCalendar("exchange", set()))
    written = 0
    for batch in range(20):
        nts = records(n, *[raw(f"rb{batch:02d}{i:02d}") for i in range(10)])
        written += len(sink.publish(rows_of_records(nts)))
    sink.close()
    assert written == 200 and len(path.read_bytes().splitlines()) == 1200
    return started, advised, path.stat().st_size


def _contiguous_from_old_end(ranges: list) -> bool:
    return bool(ranges) and ranges[0][0] == 3000 and all(a[0] + a[1] == b[0] for a, b in zip(ranges, ranges[1:]))


def test_file_sink_starts_write_back_in_steps_and_drops_what_lies_behind(tmp_path, monkeypatch):
    """Every WRITEBACK_BYTES the range just written is written back (sync_file_range, no wait); the page cache is
    told to drop only what lies DROP_LAG_BYTES behind the end: never the recent tail readers tail."""
    started, advised, size = _write_back_calls(tmp_path, monkeypatch, start_write_back=True)
    assert _contiguous_from_old_end(started) and all(length >= 4096 for _, length in started)
    assert 0 <= size - (started[-1][0] + started[-1][1]) < 4096  # the rest (< 4096) not yet
    assert _contiguous_from_old_end(advised)
    assert advised[-1][0] + advised[-1][1] <= size - 8192


def test_file_sink_without_sync_file_range_advises_the_written_ranges(tmp_path, monkeypatch):
    started, advised, size = _write_back_calls(tmp_path, monkeypatch, start_write_back=False)
    assert not started and _contiguous_from_old_end(advised) and all(length >= 4096 for _, length in advised)
    assert 0 <= size - (advised[-1][0] + advised[-1][1]) < 4096


def test_lines_follow_the_tick_record_schema_in_key_order():
    """lib/feedops/schemas/tick-record.schema.json is the consumers' contract for the lines both sinks write."""
    import jsonschema

    from feedops.paths import SCHEMAS_DIR
    from feedops.worker.ticks import RECORD_KEYS

    schema = json.loads((SCHEMAS_DIR / "tick-record.schema.json").read_text())
    assert schema["required"] == list(schema["properties"]) == list(RECORD_KEYS)
    n = Normaliser(TradingCalendar("exchange", set()), {"m2601": "DCE"})
    deep = {f"{side}{level}": 4000.0 + level for level in range(1, 6) for side in ("BidPrice", "AskPrice")}
    deep.update({f"{side}{level}": level for level in range(1, 6) for side in ("BidVolume", "AskVolume")})
    rows = rows_of_records(records(n, raw(**deep), raw("m2601", exchange="DCE", BidPrice1=3.0, BidVolume1=2)))
    shfe, dce = (json.loads(row[0]) for row in rows)
    for record in (shfe, dce):
        jsonschema.validate(record, schema)
        assert list(record) == list(RECORD_KEYS) and record["schema"] == 2
    assert [shfe[f"bid{k}"] for k in range(1, 6)] == [4001.0, 4002.0, 4003.0, 4004.0, 4005.0]
    assert [shfe[f"ask_volume{k}"] for k in range(1, 6)] == [1, 2, 3, 4, 5]
    assert dce["bid1"] == 3.0 and dce["bid_volume1"] == 2 and dce["bid2"] is None and dce["bid_volume5"] is None
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**dce, "bid_volume1": None}, schema)  # level 1 volumes are always numbers
