"""The timers' trading-day decision (feedops.schedule): run, skip or refuse, on the shipped calendar.

Dates are fixed instants (Beijing time); the shipped holiday list marks 2026 complete.
"""

from __future__ import annotations

import datetime as dt

import pytest

from feedops import schedule
from feedops.calendar import BEIJING, HOLIDAYS_FILE, TradingCalendar, load_holidays

CAL = TradingCalendar("exchange", load_holidays(HOLIDAYS_FILE))


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=BEIJING)


@pytest.mark.parametrize("when, action, words", [
    ("2026-12-02T08:30", "run", "day session of 2026-12-02 opens at 09:00"),  # Wednesday morning
    ("2026-12-02T08:59", "run", "in 1m"),
    ("2026-12-02T09:00", "refuse", "opened at 09:00"),  # a late timer never catches up into the session
    ("2026-12-02T10:45", "refuse", "1h45m ago"),
    ("2026-12-02T20:30", "run", "night session of 2026-12-02 opens at 21:00"),
    ("2026-12-02T21:05", "refuse", "make premarket"),
    ("2026-11-27T20:30", "run", "night session of 2026-11-27"),  # Friday night belongs to Monday
    ("2026-10-01T08:30", "skip", "2026-10-01 (Thursday) is not a trading day"),  # National Day
    ("2026-10-01T11:00", "skip", "not a trading day"),  # a holiday is skipped at any hour, never refused
    ("2026-09-30T20:30", "skip", "no night session on the evening of 2026-09-30"),  # before National Day
    ("2026-11-28T08:30", "skip", "Saturday"),
])
def test_premarket(when, action, words):
    decision = schedule.decide("premarket", CAL, at(when))
    assert decision.action == action, decision
    assert words in decision.reason


@pytest.mark.parametrize("mode", ["shutdown", "drill"])
@pytest.mark.parametrize("when, action", [
    ("2026-12-02T15:30", "run"),  # after the day close (CFFEX bonds end 15:15)
    ("2026-12-02T15:10", "refuse"),  # CFFEX bonds still trade
    ("2026-12-03T02:45", "run"),  # after the longest night session (02:30)
    ("2026-12-03T02:00", "refuse"),
    ("2026-12-05T10:00", "run"),  # Saturday: the drill's slot
    ("2026-12-02T10:00", "refuse"),
])
def test_shutdown_and_drill_never_cut_a_session(mode, when, action):
    decision = schedule.decide(mode, CAL, at(when))
    assert decision.action == action, decision
    if action == "refuse":
        assert "a session is open" in decision.reason and f"make {mode}" in decision.reason


def test_always_open_calendar_runs_everything():
    always = TradingCalendar("always-open")
    for mode in schedule.MODES:
        assert schedule.decide(mode, always, at("2026-10-01T09:30")).action == "run"


def test_lines_for_the_runbook_and_unknown_mode():
    assert schedule.Decision("skip", "why").lines() == "ACTION=skip\nREASON=why\n"
    with pytest.raises(ValueError, match="scheduled modes"):
        schedule.decide("restart", CAL, at("2026-12-02T08:30"))


def test_naive_time_is_refused():
    from feedops.calendar import CalendarError

    with pytest.raises(CalendarError):
        schedule.decide("premarket", CAL, dt.datetime(2026, 12, 2, 8, 30))
