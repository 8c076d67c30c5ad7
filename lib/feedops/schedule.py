"""Whether a scheduled runbook run acts now: the trading-day decision of the timers.

The timers and the crontab of ``deploy/`` fire on fixed weekdays and times (Asia/Shanghai);
the runbook's ``--scheduled`` flag asks this module, at the clock's time
(:mod:`feedops.clock`) and on the environment's calendar (:mod:`feedops.calendar`),
what to do:

``run``
    act as if started by hand;
``skip``
    do nothing and exit 0 (the run is still recorded, outcome ``SKIPPED``): the session
    the run prepares does not happen (a holiday, or a night without a night session);
``refuse``
    do nothing and exit ``SCHEDULE_REFUSED`` (76): a pre-market whose session has
    already opened (a late or delayed timer never catches up into a session), or a
    shutdown or drill while a session is open.

Rules per mode (docs/ops/scheduling.md):

* ``premarket`` before noon prepares today's day session (opens at the earliest day-session
  start of the products, 09:00), from noon on tonight's night session (21:00);
* ``shutdown`` and ``drill`` never cut into an open session;
* with the ``always-open`` calendar (dev) every scheduled run runs: there is no session to
  be before or after.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from typing import Literal

from .calendar import NIGHT_START, TradingCalendar, to_beijing

MODES = ("premarket", "shutdown", "drill")
NOON = _dt.time(12, 0)

Action = Literal["run", "skip", "refuse"]


@dataclass(frozen=True)
class Decision:
    action: Action
    reason: str

    def lines(self) -> str:
        """KEY=value lines for the runbook (bash reads them)."""
        return f"ACTION={self.action}\nREASON={self.reason}\n"


def _day_open(calendar: TradingCalendar) -> _dt.time:
    start = min(s for hours in calendar.products.values() for s, _ in hours.day)
    return _dt.time(start // 3600, start % 3600 // 60)


def premarket(calendar: TradingCalendar, at: _dt.datetime) -> Decision:
    local = to_beijing(at)
    day = local.date()
    if local.time() < NOON:
        session, opens, happens = "day", _day_open(calendar), calendar.is_trading_day(day)
        absent = f"{day} ({day:%A}) is not a trading day ({calendar.source}): no day session to prepare"
    else:
        session, opens, happens = "night", NIGHT_START, calendar.has_night_session(day)
        absent = (f"no night session on the evening of {day} ({day:%A}; a holiday follows or it is not a trading day, "
                  f"{calendar.source}): nothing to prepare")
    if not happens:
        return Decision("skip", absent)
    opened = _dt.datetime.combine(day, opens, tzinfo=local.tzinfo)
    if local >= opened:
        return Decision("refuse", f"the {session} session of {day} opened at {opens:%H:%M} Beijing time, "
                                  f"{_minutes(local - opened)} ago: a scheduled pre-market does not start after the open; "
                                  "if the feed is not running, start it by hand: make premarket")
    return Decision("run", f"the {session} session of {day} opens at {opens:%H:%M} Beijing time, "
                           f"in {_minutes(opened - local)}")


def outside_sessions(mode: str, calendar: TradingCalendar, at: _dt.datetime) -> Decision:
    local = to_beijing(at)
    if calendar.any_open(local):
        return Decision("refuse", f"a session is open at {local:%Y-%m-%d %H:%M} Beijing time: a scheduled {mode} never "
                                  f"cuts into a session; run it by hand if you mean it: make {mode}")
    return Decision("run", f"no session is open at {local:%Y-%m-%d %H:%M} Beijing time")


def decide(mode: str, calendar: TradingCalendar, at: _dt.datetime) -> Decision:
    """The decision for a scheduled ``mode`` run at ``at`` (an aware datetime)."""
    if mode not in MODES:
        raise ValueError(f"no schedule rule for mode {mode!r}; scheduled modes: {', '.join(MODES)}")
    if calendar.always_open:
        return Decision("run", "always-open calendar: every scheduled run acts")
    if mode == "premarket":
        return premarket(calendar, at)
    return outside_sessions(mode, calendar, at)


def _minutes(delta: _dt.timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    return f"{minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 else f"{minutes}m"
