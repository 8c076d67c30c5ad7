"""The reference consumer's counting rules at pinned dates: gaps (session breaks are not gaps),
duplicates, out-of-order ticks, lag, outages; the file follower; the drill's verdict and report."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from feedops import metric_names as mn
from feedops.calendar import BEIJING, HOLIDAYS_FILE, TradingCalendar, load_holidays
from feedops.consumer import FileSource, TickTracker
from feedops.consumer.cli import main as consumer_main
from feedops.exitcodes import Consumer, Runbook
from feedops.runbook import drill


def bj(text: str) -> float:
    return dt.datetime.fromisoformat(text).replace(tzinfo=BEIJING).timestamp()


@pytest.fixture(scope="module")
def cal() -> TradingCalendar:
    return TradingCalendar("exchange", load_holidays(HOLIDAYS_FILE))


def tick(at: float, volume: float, instrument: str = "rb2701", exchange: str = "SHFE", day: str = "20261124",
         recv_delay: float = 0.01) -> dict:
    return {"instrument": instrument, "exchange": exchange, "trading_day": day, "exchange_ts": at,
            "recv_ts": at + recv_delay, "volume": volume, "last": 3500.0, "update_time": "x"}


def feed(tracker: TickTracker, start: float, count: int, step: float = 0.5, volume0: int = 0, seen_delay: float = 0.05,
         **kw) -> list[str]:
    """``count`` ticks ``step`` apart from ``start``, each seen ``seen_delay`` after its exchange time."""
    return [tracker.observe(tick(start + i * step, volume0 + i, **kw), start + i * step + seen_delay) for i in range(count)]


# ---------------------------------------------------------------- calendar: open time between two instants
def test_open_seconds_leaves_out_breaks_nights_weekends_and_holidays(cal):
    utc = dt.timezone.utc

    def open_s(a: str, b: str, exchange="SHFE", product="rb") -> float:
        return cal.open_seconds(exchange, product, dt.datetime.fromtimestamp(bj(a), utc), dt.datetime.fromtimestamp(bj(b), utc))

    assert open_s("2026-11-24 10:00", "2026-11-24 10:01") == 60
    assert open_s("2026-11-24 10:14:59", "2026-11-24 10:30:01") == 2  # the morning break
    assert open_s("2026-11-24 11:29:59", "2026-11-24 13:30:01") == 2  # lunch
    assert open_s("2026-11-24 14:59:59", "2026-11-24 21:00:01") == 2  # day close to the night session
    assert open_s("2026-11-27 22:59:59", "2026-11-30 09:00:01") == 2  # Friday night (rb to 23:00) to Monday
    assert open_s("2026-11-28 00:59:59", "2026-11-30 09:00:01", product="cu") == 2  # cu's night runs to 01:00 Saturday
    assert open_s("2026-09-30 14:59:59", "2026-10-08 09:00:01") == 2  # National Day: no night before it, no sessions in it
    assert open_s("2026-11-24 10:01", "2026-11-24 10:00") == 0
    assert TradingCalendar("always-open").open_seconds("SHFE", "rb", dt.datetime.fromtimestamp(0, utc),
                                                       dt.datetime.fromtimestamp(90, utc)) == 90


# ---------------------------------------------------------------- tracker: gaps
def test_no_gap_is_judged_before_the_rhythm_is_known():
    tracker = TickTracker()
    t0 = bj("2026-11-24 10:00")
    assert tracker.observe(tick(t0, 1), t0) == "ok"
    assert tracker.observe(tick(t0 + 30, 2), t0 + 30) == "ok"  # an illiquid instrument's second tick: learning
    assert tracker.totals["gaps"] == 0


def test_a_gap_beyond_the_rhythm_is_counted_with_the_ticks_it_swallowed(cal):
    tracker = TickTracker(cal)
    t0 = bj("2026-11-24 10:00")
    assert set(feed(tracker, t0, 10)) == {"ok"}
    assert tracker.threshold(tracker.instruments["rb2701"]) == 2.0  # max(2 s, 4 x 0.5 s)
    resumed = t0 + 4.5 + 10  # 10 s of silence after the 10th tick
    assert tracker.observe(tick(resumed, 11), resumed + 0.05) == "gap"
    gap = tracker.gaps[-1]
    assert (gap.open_seconds, gap.missed) == (10.0, 19)
    assert tracker.totals["gap_missed_ticks"] == 19 and tracker.by_exchange["SHFE"]["gaps"] == 1
    # a distance within the threshold is no gap, and slow rhythms get a wider threshold
    assert tracker.observe(tick(resumed + 1.5, 12), resumed + 1.6) == "ok"


@pytest.mark.parametrize("last, first", [
    ("2026-11-24 11:29:59.5", "2026-11-24 13:30:00"),  # lunch
    ("2026-11-24 14:59:59.5", "2026-11-24 21:00:00"),  # close to the night session
    ("2026-11-27 22:59:59.5", "2026-11-30 09:00:00"),  # Friday night to Monday
    ("2026-09-30 14:59:59.5", "2026-10-08 09:00:00"),  # across National Day
])
def test_a_session_break_is_not_a_gap(cal, last, first):
    tracker = TickTracker(cal)
    end = bj(last)
    feed(tracker, end - 4.5, 10)
    assert tracker.observe(tick(bj(first), 100), bj(first) + 0.05) == "ok"
    assert tracker.totals["gaps"] == 0


def test_without_a_calendar_every_second_counts():
    tracker = TickTracker(None)
    end = bj("2026-11-24 11:29:59.5")
    feed(tracker, end - 4.5, 10)
    assert tracker.observe(tick(bj("2026-11-24 13:30"), 100), bj("2026-11-24 13:30")) == "gap"


# ---------------------------------------------------------------- tracker: duplicates, order, lag
def test_duplicates_and_out_of_order_ticks_are_counted_and_do_not_move_the_last_tick():
    tracker = TickTracker()
    t0 = bj("2026-11-24 10:00")
    feed(tracker, t0, 5)
    last = tracker.instruments["rb2701"].last_exchange_ts
    assert tracker.observe(tick(t0 + 2.0, 4), t0 + 3) == "duplicate"  # the 5th again
    assert tracker.observe(tick(t0 + 1.0, 2), t0 + 3) == "duplicate"  # an older one, still remembered
    assert tracker.observe(tick(t0 + 1.2, 3), t0 + 3) == "out_of_order"  # older, never seen
    assert tracker.instruments["rb2701"].last_exchange_ts == last
    assert (tracker.totals["duplicates"], tracker.totals["out_of_order"]) == (2, 1)
    report = tracker.report()
    assert report["instruments"]["rb2701"]["duplicates"] == 2 and report["by_exchange"]["SHFE"]["out_of_order"] == 1


def test_czce_ticks_within_one_second_with_rising_volume_pass():
    tracker = TickTracker()
    t0 = bj("2026-11-24 10:00")
    verdicts = [tracker.observe(tick(t0, v, instrument="SR701", exchange="CZCE"), t0 + 0.1) for v in (10, 11, 12)]
    assert verdicts == ["ok", "ok", "ok"] and tracker.totals["duplicates"] == 0


def test_lag_is_read_time_minus_receive_and_exchange_time():
    tracker = TickTracker()
    t0 = bj("2026-11-24 10:00")
    for i in range(100):
        tracker.observe(tick(t0 + i, i, recv_delay=0.02), t0 + i + 0.02 + (0.5 if i == 99 else 0.01))
    lag = tracker.report()["totals"]["lag_seconds"]
    assert lag["receive"]["p50"] == pytest.approx(0.01, rel=0.1)
    assert lag["receive"]["max"] == pytest.approx(0.5) and lag["receive"]["last"] == pytest.approx(0.5)
    assert lag["exchange"]["p50"] == pytest.approx(0.03, rel=0.1)


def test_malformed_records_are_counted_apart():
    tracker = TickTracker()
    assert tracker.observe({"instrument": "rb2701"}, 0.0) == "malformed"
    assert tracker.observe({}, 0.0) == "malformed"
    assert tracker.totals["malformed"] == 2 and tracker.totals["ticks"] == 0


# ---------------------------------------------------------------- tracker: outages
def _two_instruments(tracker: TickTracker, start: float, seconds: float) -> None:
    for i in range(int(seconds / 0.5)):
        at = start + i * 0.5
        for name in ("rb2701", "hc2701"):
            tracker.observe(tick(at, i, instrument=name), at + 0.05)


def test_an_outage_is_measured_from_its_start_to_coverage_back():
    tracker = TickTracker(coverage_ratio=0.5)
    t0 = bj("2026-11-24 10:00")
    _two_instruments(tracker, t0, 5)  # ticks to t0 + 4.5
    tracker.mark_outage("failover", t0 + 4.6)
    tracker.observe(tick(t0 + 4.7, 100, instrument="rb2701", recv_delay=0.0), t0 + 4.8)  # in flight, old session
    tracker.mark_resume("failover", t0 + 6.0)
    summary = tracker.report()["outages"]["failover"]
    assert summary["instruments"] == 2 and summary["back"] == 0 and not summary["recovered"]
    tracker.observe(tick(t0 + 7.5, 200, instrument="hc2701"), t0 + 7.6)
    summary = tracker.report()["outages"]["failover"]
    assert summary["recovered"] and summary["recovery_seconds"] == pytest.approx(3.0)
    assert summary["needed"] == 1 and summary["back"] == 1
    assert summary["ticks_missed"] == 5  # hc2701: 4.5 -> 7.5 s at 0.5 s
    report = tracker.report()
    assert report["gaps"][0]["in_outage"] == "failover" and report["gaps_outside_outages"] == 0


def test_a_consumer_that_lags_behind_the_feed_still_counts_the_instruments_it_receives():
    tracker = TickTracker(coverage_ratio=0.5)
    t0 = bj("2026-11-24 10:00")
    for i in range(10):  # ticks received by the worker at t0 .. t0 + 4.5 s, seen by this consumer 20 s later
        tracker.observe(tick(t0 + i * 0.5, i, instrument="rb2701", recv_delay=0.0), t0 + 20 + i * 0.5)
    tracker.mark_outage("failover", t0 + 24.6)
    tracker.mark_resume("failover", t0 + 25.0)
    assert tracker.report()["outages"]["failover"]["instruments"] == 1
    tracker.observe(tick(t0 + 25.5, 100, instrument="rb2701", recv_delay=0.0), t0 + 25.6)
    assert tracker.report()["outages"]["failover"]["recovered"]


def test_a_gap_outside_every_outage_is_reported_as_such():
    tracker = TickTracker()
    t0 = bj("2026-11-24 10:00")
    _two_instruments(tracker, t0, 5)
    tracker.mark_outage("failover", t0 + 4.6)
    tracker.mark_resume("failover", t0 + 4.7)
    _two_instruments(tracker, t0 + 5.0, 5)  # back at once: the outage ends at t0 + 5.05
    tracker.observe(tick(t0 + 30, 999, instrument="rb2701"), t0 + 30.05)  # 20 s of silence, long after
    report = tracker.report()
    assert report["outages"]["failover"]["recovered"]
    assert report["gaps_outside_outages"] == 1 and report["gaps"][-1]["in_outage"] is None


def test_resume_needs_a_start():
    with pytest.raises(KeyError):
        TickTracker().mark_resume("failback", 0.0)


# ---------------------------------------------------------------- file follower
def test_the_file_follower_reads_whole_lines_and_skips_lines_a_failed_batch_rewrites(tmp_path):
    day = tmp_path / "20261124"
    day.mkdir()
    path = day / "ticks-0of1.jsonl"
    lines = [json.dumps(tick(bj("2026-11-24 10:00") + i, i)).encode() + b"\n" for i in range(4)]
    path.write_bytes(lines[0])
    source = FileSource(tmp_path, start="all")
    source.open()
    assert len(source.read(0)) == 1
    path.write_bytes(lines[0] + lines[1] + lines[2][:10])  # a torn tail waits for its newline
    assert [t["volume"] for _, t in source.read(0)] == [1]
    path.write_bytes(lines[0] + lines[1] + lines[2])
    assert [t["volume"] for _, t in source.read(0)] == [2]
    path.write_bytes(lines[0] + lines[1])  # the sink truncated a failed batch back
    assert source.read(0) == []
    path.write_bytes(lines[0] + lines[1] + lines[2] + lines[3])  # ... and wrote it again
    assert [t["volume"] for _, t in source.read(0)] == [3]
    later = tmp_path / "20261125"
    later.mkdir()
    (later / "ticks-0of1.jsonl").write_bytes(lines[0])  # a new day directory is read from its start
    assert len(source.read(0)) == 1


def test_the_file_follower_starts_at_the_end_by_default(tmp_path):
    (tmp_path / "20261124").mkdir()
    (tmp_path / "20261124" / "ticks-0of1.jsonl").write_text(json.dumps(tick(0, 1)) + "\n")
    source = FileSource(tmp_path)
    source.open()
    assert source.read(0) == []


# ---------------------------------------------------------------- CLI
def test_cli_help_and_argument_errors(capsys):
    assert consumer_main(["--help"]) == Consumer.OK
    assert "exit codes" in capsys.readouterr().out
    assert consumer_main(["--listen", "nowhere"]) == Consumer.CONFIG
    assert "--listen must be HOST:PORT" in capsys.readouterr().err
    assert consumer_main(["--fail-on", "everything"]) == Consumer.CONFIG
    assert consumer_main(["--source", "ftp://x"]) == Consumer.CONFIG
    assert "--source" in capsys.readouterr().err


def test_cli_a_missing_sink_directory_is_exit_source(tmp_path, capsys):
    assert consumer_main(["--source", f"file:{tmp_path / 'none'}"]) == Consumer.SOURCE
    assert "does not exist" in capsys.readouterr().err


# ---------------------------------------------------------------- drill verdict and report
def _consumer_report(**over) -> dict:
    outage = {"start": 100.0, "resume": 101.0, "instruments": 200, "needed": 180, "back": 200, "recovered": True,
              "recovery_seconds": 3.2, "ticks_missed": 1200, "duplicates": 0, "out_of_order": 0,
              "lag_seconds": {"p50": 0.01, "p99": 0.05, "max": 0.2}}
    report = {"source": "redis://127.0.0.1:1/0", "group": "drill-1", "source_errors": 0, "gaps_outside_outages": 0,
              "gaps": [], "outages": {"failover": dict(outage), "failback": dict(outage, recovery_seconds=2.8)},
              "totals": {"ticks": 9000, "instruments": 200, "acknowledged": 9000, "pending": 0, "duplicates": 0,
                         "out_of_order": 0, "gaps": 400,
                         "lag_seconds": {"receive": {"last": 0.01, "p50": 0.01, "p99": 0.05, "max": 0.2}}}}
    report.update(over)
    return report


def test_recovery_target_is_the_resubscription_time_plus_five_seconds():
    assert drill.recovery_target(2000, 1000, 0.2) == 5.4
    assert drill.recovery_target(200, 1000, 0.2) == 5.04


def test_a_drill_within_target_without_duplicates_passes():
    attach = {"attached": True, "recovery_target_seconds": 5.04, "profiles": "primary->backup->primary"}
    report = drill.build_report(_consumer_report(), attach, None)
    assert report["exit_code"] == Runbook.OK and report["reasons"] == []
    assert report["recovery_seconds"] == {"failover": 3.2, "failback": 2.8}
    assert report["ticks_missed"] == {"failover": 1200, "failback": 1200}


@pytest.mark.parametrize("change, reason", [
    ({"recovery_seconds": 6.0}, "beyond the target"),
    ({"recovered": False, "recovery_seconds": None, "back": 10}, "did not come back"),
])
def test_a_slow_or_unrecovered_phase_fails_the_drill(change, reason):
    consumer = _consumer_report()
    consumer["outages"]["failback"].update(change)
    report = drill.build_report(consumer, {"attached": True, "recovery_target_seconds": 5.04}, None)
    assert report["exit_code"] == Runbook.DRILL_FAILED and reason in report["reasons"][0]


def test_duplicates_out_of_order_and_gaps_outside_fail_the_drill():
    consumer = _consumer_report(gaps_outside_outages=2)
    consumer["totals"].update(duplicates=1, out_of_order=3)
    report = drill.build_report(consumer, {"attached": True, "recovery_target_seconds": 5.04}, None)
    assert report["exit_code"] == Runbook.DRILL_FAILED and len(report["reasons"]) == 3


def test_a_drill_that_failed_earlier_keeps_its_code_and_pushes_what_the_alerts_read():
    report = drill.build_report(_consumer_report(), {"attached": True, "recovery_target_seconds": 5.04},
                                Runbook.FAILOVER_FAILED)
    assert report["exit_code"] == Runbook.FAILOVER_FAILED and report["outcome"] == "FAILOVER_FAILED"
    registry = drill.build_registry(report, 1796000000.0)
    assert registry.get_sample_value(mn.DRILL_EXIT_CODE.name) == 70
    assert registry.get_sample_value(mn.DRILL_RECOVERY.name, {"phase": "failback"}) == 2.8
    assert registry.get_sample_value(mn.DRILL_CONSUMER_LAG.name, {"statistic": "p99"}) == 0.05
    assert registry.get_sample_value(mn.DRILL_DUPLICATES.name) == 0


def test_an_unattached_consumer_leaves_the_drill_unmeasured():
    report = drill.build_report(None, {"attached": False, "recovery_target_seconds": None}, None)
    assert not report["measured"] and report["exit_code"] == 0
