"""The Redis sink against a real redis-server: stream layout, entry fields, the approximate MAXLEN."""

from __future__ import annotations

import json
import sys
from types import SimpleNamespace

import pytest

from feedops.calendar import TradingCalendar
from feedops.worker.sinks import open_sink
from feedops.worker.ticks import RAW_FIELDS, Normaliser, raw_tick
from feedops.worker.writer import rows_of

DAY = "20261127"


def prepared(normaliser, instrument, exchange, second):
    values = {name: sys.float_info.max for name in RAW_FIELDS}
    values.update(InstrumentID=instrument, ExchangeID=exchange, TradingDay=DAY, ActionDay=DAY,
                  UpdateTime=f"10:{second // 60 % 60:02d}:{second % 60:02d}", UpdateMillisec=0, LastPrice=float(second))
    return normaliser.prepare(raw_tick(SimpleNamespace(**values), now=lambda: 1795744801.0 + second))


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
