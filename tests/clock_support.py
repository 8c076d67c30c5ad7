"""Time is an input: the dates the suite runs at, and environments that carry the clock.

Every date-sensitive test takes its date from here: a fixed one (:data:`PINNED`) when
its assertions are about one date, or the sweep's (the ``clock_at`` fixture, moved by
``pytest --clock-at NAME``) when they must hold at any date. ``make test-dates`` runs the
``dates``-marked tests once per :data:`SWEEP` entry; in-process tests sweep the same
dates with time-machine. Subprocesses read the date through ``FEEDOPS_CLOCK_AT``
(:mod:`feedops.clock`); libfaketime does not work with Python 3.11 here.
"""

from __future__ import annotations

import datetime as dt
import os

from feedops.calendar import BEIJING
from feedops.clock import ENV_VAR as CLOCK_VAR

#: A Tuesday morning in session (2026-11-24 10:00 Beijing): 2026's holidays are complete,
#: December's "enter next year" warning not yet due.
PINNED = dt.datetime(2026, 11, 24, 10, 0, tzinfo=BEIJING)

#: Dates chosen to break things (Beijing time), by name.
SWEEP: dict[str, dt.datetime] = {
    "month-end": dt.datetime(2026, 11, 30, 14, 30, tzinfo=BEIJING),  # last trading day of November
    "year-end": dt.datetime(2026, 12, 31, 22, 0, tzinfo=BEIJING),  # 31 Dec night -> 2027, New Year's Day a holiday
    "new-year": dt.datetime(2027, 1, 1, 0, 30, tzinfo=BEIJING),  # past midnight into the holiday
    "pre-holiday": dt.datetime(2026, 9, 30, 21, 30, tzinfo=BEIJING),  # before National Day: no night session
    "friday-night": dt.datetime(2026, 11, 27, 21, 30, tzinfo=BEIJING),  # belongs to Monday 30 Nov
    "saturday-night": dt.datetime(2026, 11, 28, 1, 30, tzinfo=BEIJING),  # still Friday's night session
    "monday-open": dt.datetime(2026, 11, 30, 8, 59, tzinfo=BEIJING),  # a minute before the day session
    "holiday": dt.datetime(2026, 10, 1, 10, 0, tzinfo=BEIJING),  # National Day
    "weekend": dt.datetime(2026, 11, 29, 11, 0, tzinfo=BEIJING),  # a Sunday
}


def resolve(text: str) -> dt.datetime:
    """A sweep name or an ISO 8601 instant (no offset = Beijing time)."""
    if text in SWEEP:
        return SWEEP[text]
    try:
        at = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"--clock-at {text!r}: use one of {', '.join(SWEEP)} or an ISO 8601 time") from None
    return at if at.tzinfo else at.replace(tzinfo=BEIJING)


def child_environ(drop: tuple[str, ...] = ("FEEDOPS_", "CTP_"), **extra: str) -> dict[str, str]:
    """The environment for a child process without the caller's feedops settings (``drop``),
    but with the clock seam: a test's moved date reaches the processes it starts."""
    env = {k: v for k, v in os.environ.items() if k == CLOCK_VAR or not k.startswith(drop)}
    env.update(extra)
    return env
