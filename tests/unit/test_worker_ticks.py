"""Tick copy, date normalisation per exchange and replay/duplicate dropping."""

from __future__ import annotations

import datetime as dt
import sys
import time
from types import SimpleNamespace

import pytest

from feedops.calendar import TradingCalendar
from feedops.worker.ticks import RAW_FIELDS, Deduper, Normaliser, raw_tick

BJ = dt.timezone(dt.timedelta(hours=8))
MAX = sys.float_info.max


def struct(**fields):
    base = {name: 0.0 for name in RAW_FIELDS}
    base.update(InstrumentID="rb2601", ExchangeID="SHFE", TradingDay="20261127", ActionDay="20261127",
                UpdateTime="10:00:00", UpdateMillisec=0, Volume=10, BidVolume1=1, AskVolume1=1, PreOpenInterest=5.0)
    base.update(fields)
    return SimpleNamespace(**base)


def recv_at(*args) -> float:
    return dt.datetime(*args, tzinfo=BJ).timestamp()


@pytest.fixture(scope="module")
def normaliser():
    # 2026-11-27 is a Friday; 2026-11-30 the Monday after
    return Normaliser(TradingCalendar("exchange", set()), {"rb2601": "SHFE", "m2601": "DCE", "SR601": "CZCE"})


def normalise(normaliser, recv, **fields):
    return normaliser.normalise(raw_tick(struct(**fields), now=lambda: recv))


def test_callback_copy_keeps_values_not_the_struct():
    s = struct(LastPrice=3200.0)
    raw = raw_tick(s, now=lambda: 1.0)
    s.LastPrice = 9999.0  # the library reuses its buffer
    assert raw[7] == 3200.0 and raw[1] == "rb2601" and len(raw) == 1 + len(RAW_FIELDS)


def test_queue_offer_copies_like_raw_tick_and_counts_drops_when_full():
    from feedops.worker.pipeline import TickQueue

    queue = TickQueue(capacity=2)
    s = struct(LastPrice=3200.0, Volume=11)
    before = time.time()
    queue.offer(s)
    s.LastPrice = 9999.0  # the library reuses its buffer: the queued copy keeps the old value
    queue.offer(s)
    queue.offer(s)  # full: dropped, not copied
    first, second = queue.items
    assert first[1:] == raw_tick(struct(LastPrice=3200.0, Volume=11), now=lambda: 0.0)[1:]
    assert before <= first[0] <= time.time() and second[7] == 9999.0
    assert (queue.received, queue.dropped, len(queue)) == (3, 1, 2)


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


def test_dedupe_of_tuples_and_of_records_decide_alike_on_no_value_volumes(normaliser):
    """One "no value" rule: a volume the record publishes as null is no volume to the dedupe, either path."""
    from feedops.worker.ticks import record_of

    volumes = [10, MAX, 12, -MAX, float("nan"), 1e301, float("inf"), 13, float("-inf"), 12]
    by_tuple, by_record = Deduper(), Deduper()
    decisions = []
    for i, volume in enumerate(volumes):
        n = normaliser.prepare(raw_tick(struct(Volume=volume, UpdateTime=f"10:00:{i:02d}"),
                                        now=lambda: recv_at(2026, 11, 27, 10)))
        decisions.append((by_tuple.check_prepared(n), by_record.check(record_of(n))))
    assert [a for a, _ in decisions] == [b for _, b in decisions]
    assert [a for a, _ in decisions] == [None, "backwards_volume", None, "backwards_volume", "backwards_volume", None,
                                         "backwards_volume", "backwards_volume", "backwards_volume", "backwards_volume"]


def test_dedupe_drops_ticks_older_than_the_session():
    d = Deduper()
    d.session_trading_day = "20261127"
    assert d.check(rec(day="20261126")) == "stale"
    assert d.check(rec(day="20261127")) is None


def test_czce_trading_day_never_precedes_the_session_day():
    n = Normaliser(TradingCalendar("exchange", set()))
    n.session_trading_day = "20261130"  # logged in for Monday's trading day
    rec = n.normalise(raw_tick(struct(InstrumentID="SR601", ExchangeID="CZCE", TradingDay="20261127",
                                      ActionDay="20261127", UpdateTime="14:00:00"), now=lambda: recv_at(2026, 11, 27, 14)))
    assert rec["trading_day"] == "20261130"


def test_record_keys_are_the_documented_layout(normaliser):
    from feedops.worker.ticks import RECORD_KEYS

    rec = normalise(normaliser, recv_at(2026, 11, 27, 10, 0, 1), OpenPrice=float("nan"))
    assert tuple(rec) == RECORD_KEYS
    assert rec["open"] is None and rec["pre_open_interest"] == 5.0 and rec["ask_volume1"] == 1
