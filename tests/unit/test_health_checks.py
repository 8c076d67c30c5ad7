"""Health checks, verdict and report rendering (no servers: observations built in memory)."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from feedops.calendar import BEIJING, TradingCalendar
from feedops.exitcodes import Check
from feedops.health import checks as ck
from feedops.health import report as rp
from feedops.health.run import evaluate, parse_at
from feedops.health.source_worker import parse_worker_status
from feedops.health.sources import ConsumerGroup, PremarketRun, SourceError, Sources, safe_url
from feedops.settings import load_settings
from health_support import status_doc, universe, validate_report

NOW = dt.datetime(2026, 11, 24, 13, 30, tzinfo=dt.timezone.utc)  # 21:30 Beijing, Tuesday


@pytest.fixture(scope="module")
def feed(tmp_path_factory):
    d = tmp_path_factory.mktemp("state")
    return load_settings("dev", environ={"FEEDOPS_SECRETS_DIR": str(d), "FEEDOPS_STATE_DIR": str(d)}).feed


@pytest.fixture(scope="module")
def th(feed):
    return ck.Thresholds.from_settings(feed)


def observe(doc) -> Sources:
    return Sources(workers=[parse_worker_status("http://127.0.0.1:9108", doc)], consumer_groups=None,
                   premarket=PremarketRun(doc["now_unix"] - 3600, "dev", "primary"))


def judge(feed, sources, calendar=None, at=NOW):
    results, extra = evaluate(feed, sources, calendar or TradingCalendar("always-open"), at)
    return results, rp.build(results, at=at, extra=extra)


def by_key(results, key, component="all"):
    return next(r for r in results if r.key == key and (component is None or r.component_id == component))


def test_thresholds_come_from_settings(feed, th):
    assert th.coverage_warn_ratio == feed.coverage_warn_ratio == 0.98
    assert set(th.as_dict()) <= set(type(feed).model_fields)


def test_healthy_feed_passes(feed):
    now = NOW.timestamp()
    results, report = judge(feed, observe(status_doc(universe(600, now), now=now)))
    assert rp.verdict(results) == Check.OK, report["output"]
    assert report["status"] == "pass" and report["exitCode"] == 0
    assert by_key(results, "coverage:ratio").observed_value == 1.0
    validate_report(report)


def test_coverage_dip_warns_then_fails(feed):
    now = NOW.timestamp()
    results, report = judge(feed, observe(status_doc(universe(600, now, stale_every=25), now=now)))
    cov = by_key(results, "coverage:ratio")
    assert cov.status == "warn" and cov.observed_value == pytest.approx(0.96)
    assert "24 stale" in cov.output
    assert rp.verdict(results) == Check.WARNING and report["status"] == "warn"
    results, report = judge(feed, observe(status_doc(universe(600, now, never_every=5), now=now)))
    assert by_key(results, "coverage:ratio").status == "fail"
    assert rp.verdict(results) == Check.CRITICAL
    validate_report(report)


def test_front_down_fails(feed):
    now = NOW.timestamp()
    results, report = judge(feed, observe(status_doc(universe(60, now), now=now, connected=False, logged_in=False)))
    assert by_key(results, "front:connected", None).status == "fail"
    assert rp.verdict(results) == Check.CRITICAL
    assert "front:connected" in report["output"]


def test_stale_feed_fails_and_warns(feed):
    now = NOW.timestamp()
    doc = status_doc(universe(60, now), now=now)
    results, _ = judge(feed, observe(doc), at=NOW + dt.timedelta(seconds=300))
    assert by_key(results, "staleness:newest-tick-age").status == "fail"
    assert by_key(results, "coverage:ratio").observed_value == 0
    results, _ = judge(feed, observe(doc), at=NOW + dt.timedelta(seconds=45))
    assert by_key(results, "staleness:newest-tick-age").status == "warn"


def test_closed_market_is_not_judged(feed):
    saturday = dt.datetime(2026, 11, 28, 4, 0, tzinfo=dt.timezone.utc)  # 12:00 Beijing
    now = saturday.timestamp()
    doc = status_doc(universe(60, now - 86400), now=now, connected=False, logged_in=False)
    results, report = judge(feed, observe(doc), TradingCalendar("exchange", {dt.date(2026, 12, 31)}, complete_years={2026}),
                             saturday)
    assert report["market"]["open"] is False and report["market"]["tradingDay"] == "2026-11-30"
    assert "market closed" in by_key(results, "market:open", "exchange").output
    assert "next session 2026-11-30 09:00" in by_key(results, "market:open", "exchange").output
    for key in ("coverage:ratio", "staleness:newest-tick-age", "front:connected"):
        assert by_key(results, key, None).status == "pass"
    assert rp.verdict(results) == Check.OK, report["output"]
    validate_report(report)


def test_holiday_list_running_out_warns(feed):
    now = NOW.timestamp()
    results, _ = judge(feed, observe(status_doc(universe(6, now), now=now)),
                       TradingCalendar("exchange", {dt.date(2025, 10, 1)}, complete_years={2025}))
    check = by_key(results, "calendar:holiday-list", None)
    assert check.status == "warn" and check.observed_value == "2025-12-31"
    assert f"the holidays of {NOW.year} are not entered" in check.output and "complete " in check.output


def test_holiday_list_complete_this_year_is_quiet_until_december(feed):
    calendar = TradingCalendar("exchange", set(), complete_years={2026})
    november = dt.datetime(2026, 11, 30, 23, 59, tzinfo=BEIJING)
    results, _ = judge(feed, observe(status_doc(universe(6, november.timestamp()), now=november.timestamp())), calendar,
                       november)
    assert not [r for r in results if r.key == "calendar:holiday-list"]
    december = dt.datetime(2026, 12, 1, 0, 0, tzinfo=BEIJING)
    results, _ = judge(feed, observe(status_doc(universe(6, december.timestamp()), now=december.timestamp())), calendar,
                       december)
    check = by_key(results, "calendar:holiday-list", None)
    assert check.status == "warn" and "the holidays of 2027 are not entered" in check.output


def test_morning_break_judges_only_cffex(feed):
    at = dt.datetime(2026, 11, 24, 10, 20, tzinfo=BEIJING)
    now = at.timestamp()
    rows = [(name, ex, prod, cls, None if ex == "SHFE" else now - 1) for name, ex, prod, cls, _ in universe(60, now)]
    results, report = judge(feed, observe(status_doc(rows, now=now)), TradingCalendar("exchange", set()), at)
    assert report["coverage"]["open"] == 10  # only the CFFEX IF instruments are in session
    assert by_key(results, "coverage:ratio").observed_value == 1.0
    assert by_key(results, "coverage:ratio", "SHFE").status == "pass" and by_key(results, "coverage:ratio", "SHFE").observed_value is None


def test_morning_break_without_cffex_instruments_is_not_judged(feed):
    at = dt.datetime(2026, 11, 24, 10, 20, tzinfo=BEIJING)
    now = at.timestamp()
    rows = [(name, ex, prod, cls, now - 400) for name, ex, prod, cls, _ in universe(60, now) if ex != "CFFEX"]
    results, report = judge(feed, observe(status_doc(rows, now=now)),
                            TradingCalendar("exchange", {dt.date(2026, 12, 31)}, complete_years={2026}), at)
    assert report["market"]["open"] is True and report["coverage"]["open"] == 0
    staleness = by_key(results, "staleness:newest-tick-age")
    assert staleness.status == "pass" and "no subscribed instrument in session" in staleness.output
    assert rp.verdict(results) == Check.OK, report["output"]


def test_throughput_against_expected_rate(feed):
    now = NOW.timestamp()
    results, _ = judge(feed, observe(status_doc(universe(60, now), now=now, tps=10, expected_tps=100)))
    assert by_key(results, "throughput:ticks-per-second").status == "warn"
    results, _ = judge(feed, observe(status_doc(universe(60, now), now=now, tps=50, expected_tps=100)))
    assert by_key(results, "throughput:ticks-per-second").status == "pass"
    # no expected rate from the worker: the ceiling is 2 snapshots/s per open instrument (60 -> 120/s)
    results, _ = judge(feed, observe(status_doc(universe(60, now), now=now, tps=23)))
    assert by_key(results, "throughput:ticks-per-second").status == "warn"
    assert "snapshot ceiling of 60 open instruments" in by_key(results, "throughput:ticks-per-second").output
    results, _ = judge(feed, observe(status_doc(universe(60, now), now=now, tps=25)))
    assert by_key(results, "throughput:ticks-per-second").status == "pass"
    # just connected: the worker's 10 s rate is still ramping up
    doc = status_doc(universe(60, now), now=now, tps=1)
    doc["front"]["connected_since_unix"] = now - 3
    results, _ = judge(feed, observe(doc))
    assert by_key(results, "throughput:ticks-per-second").status == "pass"
    assert "not judged yet" in by_key(results, "throughput:ticks-per-second").output


def test_latency_rate_limits_errors(feed):
    now = NOW.timestamp()
    results, _ = judge(feed, observe(status_doc(universe(60, now), now=now, p99=3.0, rate_limits=2, errors=1)))
    assert by_key(results, "latency:p99").status == "fail"
    assert by_key(results, "ratelimit:incidents").status == "warn"
    assert by_key(results, "errors:count").status == "warn"


def test_ticks_lost_in_the_window_fail_and_clear_once_no_more_are_lost(feed):
    now = NOW.timestamp()
    rows = universe(60, now)
    results, report = judge(feed, observe(status_doc(rows, now=now, lost_recent=(7, 3), dropped_total=(7, 3))))
    assert rp.verdict(results) == Check.CRITICAL, report["output"]
    lost = by_key(results, "ticks:lost")
    assert lost.status == "fail" and lost.observed_value == 10 and "last 60s" in lost.output
    # the same totals since start, none in the window: the loss is over, the verdict clears
    results, report = judge(feed, observe(status_doc(rows, now=now, lost_recent=(0, 0), dropped_total=(7, 3))))
    assert by_key(results, "ticks:lost").status == "pass"
    assert by_key(results, "errors:count").status == "pass"
    assert rp.verdict(results) == Check.OK, report["output"]


def test_worker_without_the_loss_window_still_warns_on_drops_since_start(feed):
    now = NOW.timestamp()
    doc = status_doc(universe(60, now), now=now, lost_recent=None, dropped_total=(5, 0))
    results, _ = judge(feed, observe(doc))
    assert not [r for r in results if r.key == "ticks:lost"]
    assert by_key(results, "errors:count").status == "warn" and "5 dropped" in by_key(results, "errors:count").output


@pytest.mark.parametrize("p99, skew, status", [(0.01, 2.5, "fail"), (1.0, 1.5, "fail"), (0.6, 0.6, "warn"),
                                               (0.01, 0.0, "pass"), (0.01, -3.0, "pass")])
def test_delay_is_judged_however_it_is_split_between_skew_and_latency(feed, p99, skew, status):
    now = NOW.timestamp()
    results, report = judge(feed, observe(status_doc(universe(60, now), now=now, p99=p99, skew=skew)))
    latency = by_key(results, "latency:p99")
    assert latency.status == status, latency.output
    assert latency.observed_value == pytest.approx(p99 + max(0.0, skew))
    assert by_key(results, "latency:clock-skew").observed_value == skew
    if skew > 0:
        assert f"clock skew {skew:g}s" in latency.output
    validate_report(report)


def test_a_suspicious_instrument_list_is_critical(feed):
    now = NOW.timestamp()
    doc = status_doc(universe(10, now), now=now)
    doc["instrument_list"] = {"source": "query", "listed": 10, "expected": 2000, "expected_day": "20261123",
                              "suspicious": "10 instruments, 2000 on 20261123 (more than 20% fewer)", "requeried": True}
    results, report = judge(feed, observe(doc))
    check = by_key(results, "instruments:list", None)
    assert check.status == "fail" and "2000 on 20261123" in check.output
    assert rp.verdict(results) == Check.CRITICAL, report["output"]
    doc["instrument_list"].update(listed=1990, suspicious=None, requeried=False, source="cache")
    results, _ = judge(feed, observe(doc))
    assert by_key(results, "instruments:list", None).status == "pass"


def test_disconnect_storm(feed, th):
    now = NOW.timestamp()
    results, _ = judge(feed, observe(status_doc(universe(6, now), now=now, recent_disconnects=th.disconnect_storm_count)))
    assert by_key(results, "front:recent-disconnects", None).status == "fail"


def test_consumer_lag(th):
    groups = [ConsumerGroup("feedops:md:SHFE", "a", 5, 0, 1), ConsumerGroup("feedops:md:SHFE", "b", th.consumer_lag_warn + 1, 0, 1),
              ConsumerGroup("feedops:md:DCE", "c", th.consumer_lag_crit + 1, 0, 1), ConsumerGroup("feedops:md:DCE", "d", None, 3, 1)]
    lag = {r.component_id: r.status for r in ck.consumer_checks(groups, th, "redis://127.0.0.1:6379/0") if r.key == "redis:consumer-lag"}
    assert lag == {"feedops:md:SHFE/a": "pass", "feedops:md:SHFE/b": "warn", "feedops:md:DCE/c": "fail", "feedops:md:DCE/d": "warn"}
    assert ck.consumer_checks([], th, "x")[0].status == "pass"
    assert ck.consumer_checks(None, th, "x") == []


def test_premarket_freshness(th):
    fresh = ck.premarket_checks(PremarketRun(NOW.timestamp() - 600, "dev", "primary"), None, th, NOW, "f")[0]
    assert fresh.status == "pass" and fresh.observed_value == 600
    old = ck.premarket_checks(PremarketRun(NOW.timestamp() - th.premarket_max_age_seconds - 1), None, th, NOW, "f")[0]
    assert old.status == "warn"
    missing = ck.premarket_checks(None, None, th, NOW, "/state/runs/premarket.last-success")[0]
    assert missing.status == "warn" and "make premarket" in missing.output
    corrupt = SourceError("premarket", "/x", "is corrupt", "move it away")
    assert ck.premarket_checks(None, corrupt, th, NOW, "f")[0].status == "warn"


def test_premarket_file_is_read(tmp_path, feed):
    from feedops.health.source_state import read_premarket

    assert read_premarket(tmp_path) is None
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "premarket.last-success").write_text(json.dumps({"ts": 1764000000.5, "env": "dev", "profile": "backup"}))
    assert read_premarket(tmp_path) == PremarketRun(1764000000.5, "dev", "backup")
    (tmp_path / "runs" / "premarket.last-success").write_text("{not json")
    with pytest.raises(SourceError, match="corrupt"):
        read_premarket(tmp_path)


def test_verdict_precedence():
    fail = ck.CheckResult("coverage:ratio", "fail", 0.5, "ratio", "x")
    unknown = ck.CheckResult("redis:reachable", "fail", False, None, "down", unknown=True)
    warn = ck.CheckResult("premarket:age", "warn", None, "s", "y")
    assert rp.verdict([warn, unknown]) == Check.UNKNOWN
    assert rp.verdict([fail, unknown, warn]) == Check.CRITICAL
    assert rp.verdict([warn]) == Check.WARNING
    assert rp.verdict([]) == Check.OK


def test_renderings(feed):
    now = NOW.timestamp()
    _, report = judge(feed, observe(status_doc(universe(600, now, stale_every=25), now=now)))
    text = rp.render(report, "text")
    assert text.splitlines()[0].startswith("feedops health: WARNING")
    assert any(line.startswith("SHFE") and "%" in line for line in text.splitlines())
    nagios = rp.render(report, "nagios")
    assert "\n" not in nagios and nagios.startswith("FEEDOPS HEALTH WARNING - ")
    perf = nagios.split(" | ", 1)[1]
    assert "coverage=0.96;0.98;0.9;0;1" in perf and "premarket_age=3600s;46800" in perf
    assert json.loads(rp.render(report, "json")) == report


def test_unknown_report_is_schema_valid():
    report = validate_report(rp.unknown("--format 'xml' is unknown"))
    assert report["verdict"] == "UNKNOWN" and report["exitCode"] == 3 and report["status"] == "fail"


def test_parse_worker_status_rejects_garbage():
    with pytest.raises(SourceError, match="not a feedops worker"):
        parse_worker_status("http://w", {"hello": 1})
    doc = status_doc(universe(6, NOW.timestamp()), now=NOW.timestamp())
    del doc["front"]["connected"]
    with pytest.raises(SourceError, match="front.connected"):
        parse_worker_status("http://w", doc)
    doc = status_doc(universe(6, NOW.timestamp()), now=NOW.timestamp())
    doc["instrument_table"]["exchange"].pop()
    with pytest.raises(SourceError, match="unequal length"):
        parse_worker_status("http://w", doc)
    for junk in ("1795744801", True, [1.0]):
        doc = status_doc(universe(6, NOW.timestamp()), now=NOW.timestamp())
        doc["instrument_table"]["last_tick_unix"][2] = junk
        with pytest.raises(SourceError, match="neither a number nor null"):
            parse_worker_status("http://w", doc)


def test_summary_coverage_when_no_table(feed):
    now = NOW.timestamp()
    results, report = judge(feed, observe(status_doc(universe(600, now, stale_every=25), now=now, with_table=False)))
    assert by_key(results, "coverage:ratio").observed_value == pytest.approx(0.96)
    assert "summaries" in report["coverage"]["basis"]
    validate_report(report)


def test_parse_at():
    assert parse_at("2026-11-24T21:30:00+08:00") == NOW
    assert parse_at("2026-11-24 21:30") == NOW  # no offset: Beijing time
    assert parse_at("2026-11-24T13:30:00Z") == NOW
    assert parse_at(str(int(NOW.timestamp()))) == NOW
    with pytest.raises(ValueError, match="--at 'yesterday'"):
        parse_at("yesterday")


def test_safe_url_drops_credentials():
    assert safe_url("redis://:s3cret-pw@127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"
    assert safe_url("http://127.0.0.1:9108") == "http://127.0.0.1:9108"
