"""Trading calendar: sessions, night sessions, trading days and holidays (Beijing time)."""

from __future__ import annotations

import datetime as dt

import pytest

from feedops.calendar import BEIJING, HOLIDAYS_FILE, CalendarError, HolidayFileError, TradingCalendar, load_holidays
from feedops.settings import load_settings


def bj(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=BEIJING)


@pytest.fixture(scope="module")
def cal() -> TradingCalendar:
    return TradingCalendar("exchange", load_holidays(HOLIDAYS_FILE))


def test_shipped_holiday_list_loads_and_covers_national_day():
    holidays = load_holidays(HOLIDAYS_FILE)
    assert dt.date(2026, 10, 1) in holidays
    assert dt.date(2026, 10, 8) not in holidays


def test_morning_break_judges_only_cffex(cal):
    at = bj("2026-11-24 10:20")  # Tuesday
    assert cal.session("SHFE", "rb", at) is None
    assert cal.session("CZCE", "SR", at) is None
    assert cal.session("CFFEX", "IF", at) == "day"  # index futures trade 09:30-11:30
    assert cal.is_open("SHFE", "rb", bj("2026-11-24 10:30"))
    assert not cal.is_open("SHFE", "rb", bj("2026-11-24 10:15"))  # half-open interval
    assert cal.is_open("SHFE", "rb", bj("2026-11-24 10:14:59"))


def test_session_edges(cal):
    assert not cal.is_open("SHFE", "rb", bj("2026-11-24 08:59:59"))
    assert cal.session("SHFE", "rb", bj("2026-11-24 09:00")) == "day"
    assert not cal.is_open("CFFEX", "IF", bj("2026-11-24 09:15"))
    assert cal.is_open("CFFEX", "IF", bj("2026-11-24 13:00"))
    assert not cal.is_open("SHFE", "rb", bj("2026-11-24 13:00"))  # commodities resume 13:30
    assert cal.is_open("CFFEX", "T", bj("2026-11-24 15:10"))  # bonds until 15:15
    assert not cal.is_open("CFFEX", "IF", bj("2026-11-24 15:10"))
    assert not cal.is_open("CFFEX", "T", bj("2026-11-24 15:15"))


def test_2130_judges_only_night_products(cal):
    at = bj("2026-11-24 21:30")  # Tuesday night
    assert cal.session("SHFE", "rb", at) == "night"
    assert cal.session("SHFE", "au", at) == "night"
    assert cal.session("CZCE", "SR", at) == "night"
    assert cal.session("DCE", "m", at) == "night"
    for exchange, product in (("DCE", "jd"), ("CZCE", "AP"), ("CFFEX", "IF"), ("GFEX", "si"), ("INE", "ec")):
        assert cal.session(exchange, product, at) is None, product


def test_night_ends_per_product(cal):
    assert not cal.is_open("SHFE", "rb", bj("2026-11-24 23:00"))
    assert cal.is_open("SHFE", "cu", bj("2026-11-24 23:30"))
    assert cal.is_open("SHFE", "cu", bj("2026-11-25 00:59"))
    assert not cal.is_open("SHFE", "cu", bj("2026-11-25 01:00"))
    assert cal.session("INE", "sc", bj("2026-11-25 02:29")) == "night"
    assert not cal.is_open("INE", "sc", bj("2026-11-25 02:30"))


def test_friday_night_maps_to_monday(cal):
    friday_night = bj("2026-11-27 21:30")
    assert cal.is_open("SHFE", "rb", friday_night)
    assert cal.trading_day(friday_night) == dt.date(2026, 11, 30)
    saturday_early = bj("2026-11-28 01:30")
    assert cal.is_open("SHFE", "au", saturday_early)  # Friday's night session runs past midnight
    assert not cal.is_open("SHFE", "cu", saturday_early)
    assert cal.trading_day(saturday_early) == dt.date(2026, 11, 30)
    assert not cal.any_open(bj("2026-11-28 12:00"))
    assert not cal.any_open(bj("2026-11-29 01:00"))  # Saturday has no night session


def test_trading_day_rules(cal):
    assert cal.trading_day(bj("2026-11-24 14:00")) == dt.date(2026, 11, 24)
    assert cal.trading_day(bj("2026-11-24 21:30")) == dt.date(2026, 11, 25)
    assert cal.trading_day(bj("2026-11-25 01:00")) == dt.date(2026, 11, 25)
    assert cal.trading_day(bj("2026-09-30 21:30")) == dt.date(2026, 10, 8)
    # UTC input: 13:30Z is 21:30 in Beijing
    assert cal.trading_day(dt.datetime(2026, 11, 24, 13, 30, tzinfo=dt.timezone.utc)) == dt.date(2026, 11, 25)


def test_night_before_holiday_is_closed(cal):
    before_national_day = bj("2026-09-30 21:30")  # Wednesday; 2026-10-01 is a holiday
    assert cal.is_trading_day(dt.date(2026, 9, 30))
    assert cal.is_open("SHFE", "rb", bj("2026-09-30 14:00"))  # the day session still trades
    assert not cal.any_open(before_national_day)
    assert not cal.is_open("SHFE", "au", bj("2026-10-01 01:00"))
    assert not cal.any_open(bj("2026-10-01 10:00"))  # the holiday itself


def test_friday_before_holiday_monday_has_no_night(cal):
    assert dt.date(2026, 4, 6) in cal.holidays  # Qingming, a Monday
    assert not cal.is_open("SHFE", "rb", bj("2026-04-03 21:30"))
    assert not cal.is_open("SHFE", "au", bj("2026-04-04 01:00"))
    assert cal.is_open("SHFE", "rb", bj("2026-03-27 21:30"))  # an ordinary Friday night trades


def test_holiday_rule_follows_the_data():
    cal = TradingCalendar("exchange", {dt.date(2026, 11, 25)})  # a made-up Wednesday holiday
    assert not cal.is_open("SHFE", "rb", bj("2026-11-24 21:30"))
    assert not cal.is_open("SHFE", "rb", bj("2026-11-25 10:00"))
    assert cal.is_open("SHFE", "rb", bj("2026-11-25 21:30")) is False  # the holiday has no night either
    assert cal.is_open("SHFE", "rb", bj("2026-11-26 21:30"))
    assert cal.trading_day(bj("2026-11-24 21:30")) == dt.date(2026, 11, 26)


def test_options_follow_their_underlying(cal):
    night = bj("2026-11-24 23:30")
    assert cal.is_open("SHFE", "cu_o", night)
    assert not cal.is_open("SHFE", "rb_o", night)
    assert cal.hours("CFFEX", "IO") == cal.hours("CFFEX", "IF")
    assert cal.is_open("CFFEX", "MO", bj("2026-11-24 10:20"))
    assert not cal.is_open("CFFEX", "HO", bj("2026-11-24 21:30"))


def test_unknown_product_trades_the_day_session_only(cal):
    assert cal.is_open("DCE", "zz", bj("2026-11-24 09:10"))
    assert not cal.is_open("DCE", "zz", bj("2026-11-24 21:30"))
    assert not cal.is_open("CFFEX", "ZZ", bj("2026-11-24 09:10"))  # CFFEX index hours


def test_always_open_mode():
    cal = TradingCalendar("always-open")
    sunday_night = bj("2026-11-29 03:00")
    assert cal.is_open("SHFE", "rb", sunday_night)
    assert cal.any_open(sunday_night)
    assert cal.session("CFFEX", "IF", bj("2026-11-29 12:00")) == "day"


def test_next_open(cal):
    assert cal.next_open(bj("2026-11-28 12:00")) == bj("2026-11-30 09:00")
    assert cal.next_open(bj("2026-11-24 15:30")) == bj("2026-11-24 21:00")
    assert cal.next_open(bj("2026-09-30 16:00")) == bj("2026-10-08 09:00")
    at = bj("2026-11-24 10:00")
    assert cal.next_open(at) == at


def test_naive_time_is_rejected(cal):
    with pytest.raises(CalendarError, match="no time zone"):
        cal.is_open("SHFE", "rb", dt.datetime(2026, 11, 24, 10, 0))


def test_unknown_mode_names_the_setting():
    with pytest.raises(CalendarError, match="FEEDOPS_CALENDAR"):
        TradingCalendar("weekdays")


def test_bad_holiday_names_file_and_line(tmp_path):
    path = tmp_path / "holidays.txt"
    path.write_text("# list\n2026-10-01\n\n2026-13-01  # typo\n")
    with pytest.raises(HolidayFileError) as info:
        load_holidays(path)
    assert info.value.line_no == 4
    assert str(path) in str(info.value) and "line 4" in str(info.value)
    assert "'2026-13-01'" in str(info.value) and "fix:" in str(info.value)
    path.write_text("2026/10/01\n")
    with pytest.raises(HolidayFileError, match="line 1"):
        load_holidays(path)


def test_missing_holiday_file_is_explained(tmp_path):
    with pytest.raises(HolidayFileError, match="does not exist.*FEEDOPS_HOLIDAYS_FILE"):
        load_holidays(tmp_path / "nope.txt")


def test_from_settings(tmp_path):
    holidays = tmp_path / "h.txt"
    holidays.write_text("2026-11-25\n")
    settings = load_settings("dev", environ={"FEEDOPS_CALENDAR": "exchange", "FEEDOPS_HOLIDAYS_FILE": str(holidays),
                                             "FEEDOPS_SECRETS_DIR": str(tmp_path)})
    cal = TradingCalendar.from_settings(settings.feed)
    assert cal.mode == "exchange" and cal.holidays == {dt.date(2026, 11, 25)}
    dev = TradingCalendar.from_settings(load_settings("dev", environ={"FEEDOPS_SECRETS_DIR": str(tmp_path)}).feed)
    assert dev.mode == "always-open" and dt.date(2026, 10, 1) in dev.holidays


def test_shipped_2026_matches_the_state_council_notice_and_is_the_only_complete_year():
    holidays = load_holidays(HOLIDAYS_FILE)
    notice_2026 = {dt.date(2026, 1, 1), dt.date(2026, 1, 2), *(dt.date(2026, 2, d) for d in (16, 17, 18, 19, 20, 23)),
                   dt.date(2026, 4, 6), dt.date(2026, 5, 1), dt.date(2026, 5, 4), dt.date(2026, 5, 5),
                   dt.date(2026, 6, 19), dt.date(2026, 9, 25), *(dt.date(2026, 10, d) for d in (1, 2, 5, 6, 7))}
    assert {d for d in holidays if d.year == 2026} == notice_2026
    assert holidays.complete_years == {2026}  # 2027 is not entered yet: no invented dates
    assert TradingCalendar("exchange", holidays).known_until == dt.date(2026, 12, 31)


def test_complete_lines_are_parsed_and_a_bad_one_names_its_line(tmp_path):
    path = tmp_path / "holidays.txt"
    path.write_text("# a comment\ncomplete 2026  # all entered\n2026-10-01\ncomplete 2028\n")
    holidays = load_holidays(path)
    assert holidays == {dt.date(2026, 10, 1)} and holidays.complete_years == {2026, 2028}
    assert TradingCalendar("exchange", holidays).known_until == dt.date(2026, 12, 31)  # 2027 breaks the run
    path.write_text("2026-10-01\ncompleted 2026\n")
    with pytest.raises(HolidayFileError, match="line 2.*complete YYYY"):
        load_holidays(path)


def test_always_open_calendar_has_no_horizon_to_judge():
    horizon = TradingCalendar("always-open").horizon(dt.datetime(2031, 1, 1, tzinfo=dt.timezone.utc))
    assert horizon.status == "ok" and not horizon.fix
