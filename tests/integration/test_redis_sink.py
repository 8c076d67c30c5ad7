"""The Redis sink against a real redis-server: stream layout, entry fields, the approximate MAXLEN."""

from __future__ import annotations

import json
import os
import signal
import sys
from types import SimpleNamespace

import numpy as np
import pytest

from feedops.calendar import TradingCalendar
from feedops.worker.layout import DEPTH_DTYPE
from feedops.worker.sinks import open_sink
from feedops.worker.ticks import RECORD_DTYPE, VALUE_FIELDS, Normaliser, depth_rows
from feedops.worker.writer import rows_of as _rows_of
from sink_support import duplicates

DAY = "20261127"


def rows_of(records):
    """The writer's rows of records collected one by one (one batch of RECORD_DTYPE)."""
    return _rows_of(np.array(records, dtype=RECORD_DTYPE))


def prepared(normaliser, instrument, exchange, second):
    """The record (RECORD_DTYPE) of one tick, as the pipeline hands it over."""
    values = {field: sys.float_info.max for _, field in VALUE_FIELDS if DEPTH_DTYPE.fields[field][0].kind == "f"}
    values.update(InstrumentID=instrument, ExchangeID=exchange, TradingDay=DAY, ActionDay=DAY,
                  UpdateTime=f"10:{second // 60 % 60:02d}:{second % 60:02d}", UpdateMillisec=0, LastPrice=float(second))
    return normaliser.batch(depth_rows([values]), np.array([1795744801.0 + second])).records[0]


@pytest.mark.parametrize("maxlen", [150, 1000])
def test_streams_per_exchange_with_bounded_length(redis_server, maxlen, tmp_path):
    import redis as redis_lib

    prefix = f"sinktest:{maxlen}"
    config = SimpleNamespace(sink_url=redis_server.url, redis_stream_prefix=prefix, redis_stream_maxlen=maxlen,
                             sink_buffer_max=1000)
    sink = open_sink(config, (0, 1))
    sink.use_rows()
    assert sink.open()
    n = Normaliser(TradingCalendar("exchange", set()))
    sent = 0
    for batch in range(6):  # 6 x 500 ticks: SHFE rb and CZCE SR alternating
        nts = [prepared(n, "rb2601" if i % 2 else "SR601", "SHFE" if i % 2 else "CZCE", batch * 500 + i)
               for i in range(500)]
        assert len(sink.publish(rows_of(nts))) == 500
        sent += 500
    sink.close()
    client = redis_lib.Redis.from_url(redis_server.url, decode_responses=True)
    streams = sorted(client.scan_iter(f"{prefix}:*"))
    assert streams == [f"{prefix}:CZCE", f"{prefix}:SHFE"]
    for stream, instrument in ((f"{prefix}:SHFE", "rb2601"), (f"{prefix}:CZCE", "SR601")):
        length = client.xlen(stream)
        # trimmed after every batch, approximately (whole listpack nodes of 100 entries)
        assert min(maxlen, sent // 2) <= length <= maxlen + 100
        [(_, last)] = client.xrevrange(stream, count=1)
        assert last["instrument"] == instrument
        tick = json.loads(last["tick"])
        assert tick["instrument"] == instrument and tick["last"] == float(sent - 1 if instrument == "rb2601" else sent - 2)


def test_lost_script_cache_and_error_replies(redis_server):
    """A server that forgot the script (restart, SCRIPT FLUSH) is sent it again; an error reply takes the sink
    down with the batch buffered, and the buffer goes out once the stream is usable."""
    import redis as redis_lib

    prefix = "sinktest:errors"
    client = redis_lib.Redis.from_url(redis_server.url, decode_responses=True)
    config = SimpleNamespace(sink_url=redis_server.url, redis_stream_prefix=prefix, redis_stream_maxlen=1000,
                             sink_buffer_max=1000)
    errors: list[str] = []
    sink = open_sink(config, (0, 1), on_error=errors.append)
    sink.use_rows()
    sink.reconnect_interval = 0.0
    assert sink.open()
    n = Normaliser(TradingCalendar("exchange", set()))
    batch = [prepared(n, "rb2601", "SHFE", i) for i in range(3)]
    assert len(sink.publish(rows_of(batch))) == 3
    client.script_flush()
    assert len(sink.publish(rows_of([prepared(n, "rb2601", "SHFE", 3)]))) == 1  # NOSCRIPT: loaded, sent again
    assert client.xlen(f"{prefix}:SHFE") == 4 and errors == []

    client.set(f"{prefix}:CZCE", "not a stream")  # every XADD to it fails with WRONGTYPE
    assert sink.publish(rows_of([prepared(n, "SR601", "CZCE", 4)])) == []
    assert not sink.up and sink.buffered == 1 and errors == ["write"]
    client.delete(f"{prefix}:CZCE")
    delivered = sink.publish(rows_of([prepared(n, "SR601", "CZCE", 5)]))
    assert len(delivered) == 2 and sink.up and sink.buffered == 0
    assert [json.loads(e["tick"])["last"] for _, e in client.xrange(f"{prefix}:CZCE")] == [4.0, 5.0]
    sink.close()


# ---------------------------------------------------------------------------- exactly once per (writer, sequence)
@pytest.fixture
def own_redis(tmp_path):
    """A redis-server of this test alone (it is paused and killed), with an append-only file fsynced per write."""
    import redis as redis_lib

    from conftest import Server, _require, free_port, wait_for

    binary = _require("redis-server", "redis-server")
    port = free_port()
    argv = [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "yes",
            "--appendfsync", "always", "--dir", str(tmp_path)]
    servers = []

    def start() -> Server:
        srv = Server("redis", argv, port, tmp_path / f"redis{len(servers)}.log")
        servers.append(srv)
        wait_for(lambda: redis_lib.Redis(host="127.0.0.1", port=port).ping(), what="redis")
        srv.url = f"redis://127.0.0.1:{port}/0"
        return srv

    start()
    yield servers, start
    for srv in servers:
        if srv.proc.poll() is None:
            os.kill(srv.pid, signal.SIGCONT)
        srv.stop()


def _stream_ticks(url: str, prefix: str) -> list[dict]:
    import redis as redis_lib

    client = redis_lib.Redis.from_url(url, decode_responses=True)
    return [json.loads(fields["tick"]) for stream in sorted(client.scan_iter(f"{prefix}:*"))
            for _, fields in client.xrange(stream)]


def _sink(url: str, prefix: str):
    config = SimpleNamespace(sink_url=url, redis_stream_prefix=prefix, redis_stream_maxlen=1_000_000,
                             sink_buffer_max=100_000)
    sink = open_sink(config, (0, 1))
    sink.use_rows()
    sink.reconnect_interval = 0.0
    assert sink.open()
    return sink


def _batch(n, start, size):
    return rows_of([prepared(n, "rb2601" if i % 2 else "SR601", "SHFE" if i % 2 else "CZCE", i)
                    for i in range(start, start + size)])


def _stalled_sink(server, prefix: str, size: int):
    """A sink that wrote 500 ticks, then a batch of ``size`` to the server stopped (SIGSTOP; the fixture resumes
    it at the end) and got no reply within the socket timeout: down, with that batch held."""
    sink = _sink(server.url, prefix)
    n = Normaliser(TradingCalendar("exchange", set()))
    assert len(sink.publish(_batch(n, 0, 500))) == 500
    os.kill(server.pid, signal.SIGSTOP)
    assert sink.publish(_batch(n, 500, size)) == []  # written to the socket; no reply within the timeout
    assert not sink.up and sink.buffered == size
    return sink, n


def test_a_batch_redis_ran_during_a_stall_is_not_added_again(own_redis):
    """redis-server stopped (SIGSTOP) past the 2 s socket timeout: the batch sent meanwhile is executed when it
    resumes although the sink saw a timeout; re-sent with the same sequence numbers, it is refused."""
    (server,), _start = own_redis
    prefix = "stall"
    # a small batch: the whole of it fits the socket buffers, so Redis reads it all when it resumes
    sink, n = _stalled_sink(server, prefix, 20)
    os.kill(server.pid, signal.SIGCONT)
    from conftest import wait_for

    wait_for(lambda: len(_stream_ticks(server.url, prefix)) == 520, what="the stalled batch executed on resume")
    delivered = sink.publish(_batch(n, 520, 500))
    # the stalled batch's two calls (one per stream) are refused; on a loaded machine a reply can miss the 2 s
    # timeout once more, and the call behind it is refused in its turn on its re-send: the stream's contents
    # below show that nothing went in twice or got lost
    assert len(delivered) == 520 and sink.buffered == 0 and sink.refused_total >= 2
    ticks = _stream_ticks(server.url, prefix)
    assert len(ticks) == 1020 == sink.published_total and duplicates(ticks) == 0
    assert sorted(t["last"] for t in ticks) == [float(i) for i in range(1020)]
    sink.close()


def test_a_batch_lost_with_a_killed_redis_is_added_once_after_the_restart(own_redis):
    """redis-server killed while a batch waits in its socket (never executed): the restarted server (append-only
    file, fsync always) has every earlier batch and their sequence numbers; the re-sent batch is applied once."""
    (server,), start = own_redis
    prefix = "restart"
    sink, n = _stalled_sink(server, prefix, 500)
    os.kill(server.pid, signal.SIGKILL)
    server.proc.wait(10)
    restarted = start()
    assert len(_stream_ticks(restarted.url, prefix)) == 500  # the append-only file kept what was acknowledged
    delivered = sink.publish(_batch(n, 1000, 200))
    # the stalled batch never ran, so nothing is refused as applied, unless a reply of the restarted server
    # misses the 2 s timeout on a loaded machine (seen once in a fresh-clone CI run: 2 refused, 700 delivered):
    # then its re-send is refused (counted in refused_total); the stream's contents below show every tick once
    assert len(delivered) == 700
    ticks = _stream_ticks(restarted.url, prefix)
    assert len(ticks) == 1200 == sink.published_total and duplicates(ticks) == 0
    sink.close()


def test_rows_as_one_text_make_the_same_entries_as_rows_line_by_line(redis_server):
    """The writer hands the file sink a batch as one text (encode.Rows); the Redis sink takes it too, entry for entry."""
    import redis as redis_lib

    from feedops.worker.encode import text_rows_of_records

    n = Normaliser(TradingCalendar("exchange", set()))
    batch = np.array([prepared(n, ("rb2601", "SR601", "m2601")[i % 3], ("SHFE", "CZCE", "DCE")[i % 3], i)
                      for i in range(60)], dtype=RECORD_DTYPE)
    for prefix, rows in (("rowtest:lines", _rows_of(batch)), ("rowtest:text", text_rows_of_records(batch))):
        config = SimpleNamespace(sink_url=redis_server.url, redis_stream_prefix=prefix, redis_stream_maxlen=1000,
                                 sink_buffer_max=1000)
        sink = open_sink(config, (0, 1))
        sink.use_rows()
        assert sink.open() and len(sink.publish(rows)) == 60
        sink.close()
    client = redis_lib.Redis.from_url(redis_server.url, decode_responses=True)
    for exchange in ("SHFE", "CZCE", "DCE"):
        lines, text = ([fields for _, fields in client.xrange(f"rowtest:{kind}:{exchange}")] for kind in ("lines", "text"))
        assert len(lines) == 20 and lines == text
