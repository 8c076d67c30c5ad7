"""Tick copy (the struct's bytes), date normalisation per exchange and replay/duplicate dropping, a batch at a time."""

from __future__ import annotations

import datetime as dt
import sys
import time

import numpy as np
import pytest

from feedops.calendar import TradingCalendar
from feedops.worker.dedupe import REASONS, Deduper
from feedops.worker.ticks import VALUE_FIELDS, Normaliser, depth_rows
from tick_support import depth_struct

BJ = dt.timezone(dt.timedelta(hours=8))
MAX = sys.float_info.max


def fields(**given):
    base = {field: 0.0 for _, field in VALUE_FIELDS}
    base.update(InstrumentID="rb2601", ExchangeID="SHFE", TradingDay="20261127", ActionDay="20261127",
                UpdateTime="10:00:00", UpdateMillisec=0, Volume=10, BidVolume1=1, AskVolume1=1, PreOpenInterest=5.0)
    base.update(given)
    return base


def struct(**given):
    return depth_struct(**fields(**given))


def recv_at(*args) -> float:
    return dt.datetime(*args, tzinfo=BJ).timestamp()


@pytest.fixture(scope="module")
def normaliser():
    # 2026-11-27 is a Friday; 2026-11-30 the Monday after
    return Normaliser(TradingCalendar("exchange", set()), {"rb2601": "SHFE", "m2601": "DCE", "SR601": "CZCE"})


def normalise(normaliser, recv, **given):
    return normaliser.normalise(fields(**given), recv)


def test_queue_offer_copies_the_structs_bytes_and_counts_drops_when_full():
    from feedops.worker.pipeline import TickQueue

    queue = TickQueue(capacity=2)
    s = struct(LastPrice=3200.0, Volume=11)
    before = time.time()
    queue.offer(s)
    s.rows["LastPrice"] = 9999.0  # the library reuses its buffer: the queued copy keeps the old value
    queue.offer(s)
    queue.offer(s)  # full: dropped, not copied
    rows, recv = queue.take(10)
    assert rows[0].tobytes() == depth_rows([fields(LastPrice=3200.0, Volume=11)])[0].tobytes()
    assert rows[1]["LastPrice"] == 9999.0 and rows[1]["InstrumentID"] == b"rb2601"
    assert before <= recv[0] <= recv[1] <= time.time()
    assert (queue.received, queue.dropped, len(queue)) == (3, 1, 0)


def test_queue_is_a_ring_the_batch_wraps_around_its_end():
    from feedops.worker.pipeline import TickQueue

    queue = TickQueue(capacity=3)
    for volume in (1, 2):
        queue.offer(struct(Volume=volume))
    assert queue.take(1)[0]["Volume"].tolist() == [1]
    for volume in (3, 4):
        queue.offer(struct(Volume=volume))
    queue.offer(struct(Volume=5))  # full (2, 3, 4 waiting): dropped
    rows, recv = queue.take(10)
    assert rows["Volume"].tolist() == [2, 3, 4] and len(recv) == 3 and queue.dropped == 1
    queue.offer(struct(Volume=6))
    assert queue.take(10)[0]["Volume"].tolist() == [6] and len(queue) == 0


def test_a_batch_decides_each_tick_as_one_tick_batches_do(normaliser):
    """The batch engine: dates per distinct key, derived days per receive date; same records as one at a time."""
    rows = [fields(), fields(InstrumentID="m2601", ExchangeID="DCE", TradingDay="20261130", ActionDay="20261130",
                             UpdateTime="23:59:59"),
            fields(InstrumentID="SR601", ExchangeID="CZCE", UpdateTime="22:15:00"), fields(UpdateTime="bad"),
            fields(InstrumentID="m2601", ExchangeID="", TradingDay="20261130", ActionDay="20261130", UpdateTime="00:00:01"),
            fields(InstrumentID="")]
    recvs = [recv_at(2026, 11, 27, 10, 0, 1), recv_at(2026, 11, 28, 0, 0, 1), recv_at(2026, 11, 27, 22, 15),
             recv_at(2026, 11, 27, 10), recv_at(2026, 11, 27, 23, 59, 59), recv_at(2026, 11, 27, 10)]
    from feedops.worker.ticks import record_of

    prepared = normaliser.batch(depth_rows(rows), np.array(recvs))
    assert prepared.invalid == 2
    assert [record_of(r) for r in prepared.records] == [
        normalise(normaliser, recv, **row) for row, recv in zip(rows, recvs) if normalise(normaliser, recv, **row)]
    assert [r["action_day"] for r in map(record_of, prepared.records)] == ["20261127", "20261127", "20261127",
                                                                         "20261128"]
    assert [r["exchange"] for r in map(record_of, prepared.records)] == ["SHFE", "DCE", "CZCE", "DCE"]
    assert prepared.exchange_counts == {"SHFE": 1, "DCE": 2, "CZCE": 1}  # the records', the unusable left out


def test_largest_double_becomes_null_and_real_values_stay(normaliser):
    rec = normalise(normaliser, recv_at(2026, 11, 27, 10, 0, 1), LastPrice=3201.0, SettlementPrice=MAX, ClosePrice=MAX)
    assert rec["settlement"] is None and rec["close"] is None
    assert rec["last"] == 3201.0 and rec["volume"] == 10


def test_shfe_dates_are_trusted_and_exchange_time_is_beijing(normaliser):
    rec = normalise(normaliser, recv_at(2026, 11, 27, 10, 0, 1), UpdateTime="10:00:00", UpdateMillisec=500)
    assert (rec["trading_day"], rec["action_day"]) == ("20261127", "20261127")
    assert rec["exchange_ts"] == recv_at(2026, 11, 27, 10, 0, 0) + 0.5


def test_dce_friday_night_action_day_is_the_calendar_date(normaliser):
    # DCE sends ActionDay = trading day (Monday) at night; the tick happened on Friday evening
    rec = normalise(normaliser, recv_at(2026, 11, 27, 21, 30, 0), InstrumentID="m2601", ExchangeID="DCE",
                    TradingDay="20261130", ActionDay="20261130", UpdateTime="21:30:00")
    assert rec["trading_day"] == "20261130"
    assert rec["action_day"] == "20261127"


def test_czce_friday_night_trading_day_is_monday(normaliser):
    # CZCE sends TradingDay = calendar date; Friday night belongs to Monday
    rec = normalise(normaliser, recv_at(2026, 11, 27, 22, 15, 0), InstrumentID="SR601", ExchangeID="CZCE",
                    TradingDay="20261127", ActionDay="20261127", UpdateTime="22:15:00")
    assert (rec["trading_day"], rec["action_day"]) == ("20261130", "20261127")


def test_czce_day_session_keeps_the_date(normaliser):
    rec = normalise(normaliser, recv_at(2026, 11, 26, 9, 1, 0), InstrumentID="SR601", ExchangeID="CZCE",
                    TradingDay="20261126", ActionDay="20261126", UpdateTime="09:01:00")
    assert rec["trading_day"] == "20261126"


def test_after_midnight_on_saturday_still_monday(normaliser):
    rec = normalise(normaliser, recv_at(2026, 11, 28, 0, 30, 0), InstrumentID="m2601", ExchangeID="DCE",
                    TradingDay="20261130", ActionDay="20261130", UpdateTime="00:30:00")
    assert (rec["trading_day"], rec["action_day"]) == ("20261130", "20261128")


def test_tick_before_midnight_received_after_it(normaliser):
    rec = normalise(normaliser, recv_at(2026, 11, 26, 0, 0, 1), InstrumentID="m2601", ExchangeID="DCE",
                    TradingDay="20261126", ActionDay="20261126", UpdateTime="23:59:59")
    assert rec["action_day"] == "20261125"


def test_missing_exchange_is_taken_from_the_instrument_list(normaliser):
    rec = normalise(normaliser, recv_at(2026, 11, 27, 10, 0, 1), ExchangeID="")
    assert rec["exchange"] == "SHFE"


def test_garbage_time_is_unusable(normaliser):
    assert normalise(normaliser, recv_at(2026, 11, 27, 10, 0, 1), UpdateTime="xx") is None
    assert normalise(normaliser, recv_at(2026, 11, 27, 10, 0, 1), InstrumentID="") is None


def rec(volume=10, ts=100.0, day="20261127", instrument="rb2601"):
    return {"instrument": instrument, "trading_day": day, "volume": volume, "exchange_ts": ts}


def test_dedupe_rules():
    d = Deduper()
    assert d.check(rec()) is None
    assert d.check(rec()) == "duplicate"
    assert d.check(rec(volume=12, ts=100.0)) is None  # CZCE: several ticks in one second
    assert d.check(rec(volume=11, ts=101.0)) == "backwards_volume"
    assert d.check(rec(volume=12, ts=99.0)) == "replay"
    assert d.check(rec(volume=1, ts=50.0, day="20261126")) == "backwards_day"
    assert d.check(rec(volume=1, ts=500.0, day="20261130")) is None  # a new trading day resets volume
    assert d.check(rec(instrument="cu2601")) is None  # per instrument


def test_dedupe_of_batches_and_of_records_decide_alike(normaliser):
    """One rule set: a batch (check_batch) decides as records checked one by one do (Volume is an int in the
    struct, so CTP's "no value" marker never reaches the dedupe as a volume)."""
    from feedops.worker.ticks import record_of

    volumes = [10, 10, 12, 11, 13, 13, 12, 14]
    times = ["10:00:00", "10:00:00", "10:00:01", "10:00:02", "10:00:03", "10:00:03", "10:00:04", "10:00:02"]
    rows = depth_rows([fields(Volume=v, UpdateTime=t) for v, t in zip(volumes, times)])
    prepared = normaliser.batch(rows, np.full(len(volumes), recv_at(2026, 11, 27, 10)))
    keep, dropped, _ = Deduper().check_batch(prepared)
    by_record = Deduper()
    one_by_one = [by_record.check(record_of(r)) for r in prepared.records]
    assert one_by_one == [None, "duplicate", None, "backwards_volume", None, "duplicate", "backwards_volume", "replay"]
    assert keep.tolist() == [d is None for d in one_by_one]
    assert dropped == {"duplicate": 2, "backwards_volume": 2, "replay": 1}


def _rules(state: dict, seeded: set, session: str | None, instrument: str, day: str, volume: float, ts: float):
    """The rule set of docs/ops/worker.md, one tick at a time, written plainly (the reference for the batch engine)."""
    if session is not None and day < session:
        return "stale"
    last = state.get(instrument)
    if last is not None:
        last_day, last_volume, last_ts = last
        if day < last_day:
            return "backwards_day"
        if day == last_day and instrument in seeded:
            if ts < last_ts:
                return "replay"
            if ts == last_ts and volume <= last_volume:
                return "duplicate"
        elif day == last_day:
            if volume < last_volume:
                return "backwards_volume"
            if ts == last_ts and volume == last_volume:
                return "duplicate"
            if ts < last_ts:
                return "replay"
    seeded.discard(instrument)
    state[instrument] = (day, volume, ts)
    return None


def test_the_batch_engine_decides_as_the_rules_one_tick_at_a_time():
    """Random batches with an instrument several times in a batch, seeded instruments, a session day, repeats,
    replays and backwards volumes: every decision equals the plain rules applied in order."""
    import random

    rnd = random.Random(5)
    seen: set = set()
    for trial in range(30):
        d = Deduper()
        state: dict = {}
        seeded: set = set()
        names = [f"i{k}" for k in range(rnd.randint(1, 12))]
        seeds = {name: (rnd.choice(["20261126", "20261127"]), float(rnd.randint(0, 5)), float(rnd.randint(0, 5)))
                 for name in rnd.sample(names, rnd.randint(0, len(names)))}
        d.seed(seeds)
        state.update(seeds)
        seeded.update(seeds)
        if trial % 3 == 0:
            d.session_trading_day = "20261127"
        expected, got = [], []
        for _ in range(5):
            batch = [(rnd.choice(names), rnd.choice(["20261126", "20261127", "20261128"]), rnd.randint(0, 6),
                      float(rnd.randint(0, 6))) for _ in range(rnd.randint(1, 40))]
            expected += [_rules(state, seeded, d.session_trading_day, *tick) for tick in batch]
            ids = np.array([d.ids.of_name(name) for name, *_ in batch])
            reasons = d.decide(ids, np.array([int(day) for _, day, _, _ in batch]),
                               np.array([v for *_, v, _ in batch], dtype=np.float64),
                               np.array([t for *_, t in batch], dtype=np.float64))
            got += [REASONS[code] or None for code in reasons.tolist()]
        assert got == expected, trial
        seen.update(expected)
    assert seen == {None, *REASONS[1:]}  # every rule was met


def test_dedupe_drops_ticks_older_than_the_session():
    d = Deduper()
    d.session_trading_day = "20261127"
    assert d.check(rec(day="20261126")) == "stale"
    assert d.check(rec(day="20261127")) is None


def test_czce_trading_day_never_precedes_the_session_day():
    n = Normaliser(TradingCalendar("exchange", set()))
    n.session_trading_day = "20261130"  # logged in for Monday's trading day
    rec = n.normalise(fields(InstrumentID="SR601", ExchangeID="CZCE", TradingDay="20261127", ActionDay="20261127",
                             UpdateTime="14:00:00"), recv_at(2026, 11, 27, 14))
    assert rec["trading_day"] == "20261130"


def test_record_keys_are_the_documented_layout(normaliser):
    from feedops.worker.ticks import RECORD_KEYS

    rec = normalise(normaliser, recv_at(2026, 11, 27, 10, 0, 1), OpenPrice=float("nan"), BidPrice2=MAX, BidVolume2=4,
                    AskPrice2=3201.0, AskVolume2=6)
    assert tuple(rec) == RECORD_KEYS and rec["schema"] == 2
    assert rec["open"] is None and rec["pre_open_interest"] == 5.0 and rec["ask_volume1"] == 1
    assert (rec["bid2"], rec["bid_volume2"], rec["ask2"], rec["ask_volume2"]) == (None, None, 3201.0, 6)
