"""The dedupe state read back from a sink (feedops.worker.resume) and the deduper seeded with it."""

from __future__ import annotations

import uuid
from types import SimpleNamespace

import orjson
import pytest

from feedops.worker import resume
from feedops.worker.dedupe import Deduper
from feedops.worker.sinks import FileSink, RedisSink


def tick(instrument: str, ts: float, volume: float | None, day: str = "20261127", exchange: str = "SHFE") -> dict:
    return {"instrument": instrument, "exchange": exchange, "trading_day": day, "action_day": day,
            "update_time": "10:00:00", "millisec": 0, "exchange_ts": ts, "recv_ts": ts, "volume": volume}


def write_file(directory, records) -> None:
    sink = FileSink(directory, (0, 1), 1000)
    sink.open()
    assert sink.publish(records) == records
    sink.close()


def test_file_tail_gives_the_last_tick_per_instrument_of_the_newest_day(tmp_path):
    write_file(tmp_path, [tick("a", 1.0, 5, day="20261126"), tick("z", 9.0, 99, day="20261126")])
    write_file(tmp_path, [tick("a", 1.0, 10), tick("b", 2.0, 3), tick("a", 3.0, 12), tick("b", 4.0, None)])
    state, source = resume.from_file(tmp_path, "ticks-0of1.jsonl", None)
    assert state == {"a": ("20261127", 12.0, 3.0), "b": ("20261127", 0.0, 4.0)}  # z: only on the older day
    assert source.endswith("20261127/ticks-0of1.jsonl")


def test_file_tail_skips_a_torn_last_line_and_stops_once_all_are_seen(tmp_path):
    write_file(tmp_path, [tick("a", 1.0, 1), tick("b", 2.0, 2), tick("a", 3.0, 3)])
    path = tmp_path / "20261127" / "ticks-0of1.jsonl"
    with open(path, "ab") as fh:
        fh.write(orjson.dumps(tick("b", 9.0, 9))[:20])
    assert resume.from_file(tmp_path, "ticks-0of1.jsonl", {"a", "b"})[0] == {"a": ("20261127", 3.0, 3.0),
                                                                         "b": ("20261127", 2.0, 2.0)}
    assert resume.from_file(tmp_path, "ticks-0of1.jsonl", {"a"})[0] == {"a": ("20261127", 3.0, 3.0)}


def test_file_tail_is_bounded_and_reads_lines_across_chunks(tmp_path, monkeypatch):
    monkeypatch.setattr(resume, "_CHUNK", 64)  # lines longer than a chunk still come whole
    records = [tick(f"i{n}", float(n), n) for n in range(50)]
    write_file(tmp_path, records)
    path = tmp_path / "20261127" / "ticks-0of1.jsonl"
    lines = list(resume.lines_backwards(path))
    assert [orjson.loads(line)["instrument"] for line in lines] == [f"i{n}" for n in reversed(range(50))]
    size = path.stat().st_size
    limited = resume.from_file(tmp_path, "ticks-0of1.jsonl", None, limit=size // 2)[0]
    assert 0 < len(limited) < 50 and "i49" in limited and "i0" not in limited


def test_no_day_file_yet(tmp_path):
    assert resume.from_file(tmp_path, "ticks-0of1.jsonl", None) == ({}, "no day file yet")


def test_redis_streams_give_the_last_tick_per_instrument(redis_server, monkeypatch):
    import redis as redis_lib

    monkeypatch.setattr(resume, "_REDIS_PAGE", 3)  # several pages per stream
    prefix = f"resume-{uuid.uuid4().hex[:8]}"
    sink = RedisSink(redis_server.url, prefix, 10_000, 1000)
    sink.open()
    records = [tick("a", 1.0, 1), tick("c", 1.5, 7, exchange="DCE"), tick("b", 2.0, 2), tick("a", 3.0, 3),
               *[tick("b", 4.0 + n, 4 + n) for n in range(7)]]
    assert sink.publish(records) == records
    sink.close()
    client = redis_lib.Redis.from_url(redis_server.url)
    state, source = resume.from_redis(client, prefix, None)
    assert state == {"a": ("20261127", 3.0, 3.0), "b": ("20261127", 10.0, 10.0), "c": ("20261127", 7.0, 1.5)}
    assert source == f"2 stream(s) {prefix}:*"
    feed = SimpleNamespace(sink_url=redis_server.url, redis_stream_prefix=prefix)
    assert resume.from_sink(feed, (0, 1), {"a"})[0]["a"] == ("20261127", 3.0, 3.0)


@pytest.mark.parametrize("replayed, expected", [
    (("20261127", 3.0, 12), "duplicate"),  # the last tick again
    (("20261127", 2.0, 12), "replay"),  # an older time of the same day
    (("20261127", 2.0, 11), "replay"),  # an older tick of the same day
    (("20261127", 3.0, 11), "duplicate"),  # the same time, no more volume
    (("20261127", 4.0, 13), None),  # the next one
    (("20261127", 4.0, 5), None),  # later, from a front that counts volume differently (after a failover)
    (("20261128", 1.0, 1), None),  # the next trading day
    (("20261126", 9.0, 99), "backwards_day"),
])
def test_a_seeded_deduper_drops_what_the_sink_already_holds(replayed, expected):
    d = Deduper()
    assert d.seed({"a": ("20261127", 12.0, 3.0)}) == 1
    day, ts, volume = replayed
    assert d.check_fields("a", day, volume, ts) == expected


def test_seed_keeps_a_later_state_already_held():
    d = Deduper()
    assert d.check_fields("a", "20261127", 20, 5.0) is None
    d.seed({"a": ("20261127", 12.0, 3.0), "b": ("20261127", 1.0, 1.0)})
    assert d.check_fields("a", "20261127", 20, 5.0) == "duplicate"
    assert d.check_fields("b", "20261127", 1, 1.0) == "duplicate"


def test_a_seeded_instrument_is_live_after_its_first_tick():
    d = Deduper()
    d.seed({"a": ("20261127", 12.0, 3.0), "b": ("20261127", 5.0, 3.0)})
    assert d.check_fields("a", "20261127", 5, 4.0) is None  # the watermark passed: volume 5 is the new state
    assert d.check_fields("a", "20261127", 4, 5.0) == "backwards_volume"  # live rules from now on
    assert d.check_fields("b", "20261128", 1, 1.0) is None  # a later trading day
    assert d.check_fields("b", "20261128", 0, 2.0) == "backwards_volume"
