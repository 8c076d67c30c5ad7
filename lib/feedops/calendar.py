"""The trading calendar of the six China-futures exchanges (Beijing time, UTC+8).

Facts come from data, not code:

* ``lib/feedops/data/products.csv``: per product its exchange, day-session kind
  (``commodity``, ``cffex_index``, ``cffex_bond``) and night-session end (or none);
* ``lib/feedops/data/holidays.txt`` (or ``FEEDOPS_HOLIDAYS_FILE``): exchange holidays, and
  ``complete YYYY`` lines for the years whose holidays are all entered, so a year not
  entered yet differs from a year without holidays (:meth:`TradingCalendar.horizon`).

Rules:

* a **trading day** is a weekday that is not a holiday;
* the **day session** runs on trading days (commodity 09:00-10:15, 10:30-11:30,
  13:30-15:00; CFFEX index 09:30-11:30, 13:00-15:00; CFFEX bonds until 15:15);
  intervals are half-open ``[start, end)``;
* the **night session** starts at 21:00 on a trading day and runs to the product's
  night end (23:00, or past midnight until 01:00 / 02:30); it exists only when no
  holiday lies between that day and the next trading day (no night session on the
  last working day before a holiday, including the Friday before a holiday Monday);
* the night session belongs to the **next trading day** (Friday night -> Monday);
  from 18:00 on, :meth:`TradingCalendar.trading_day` is the next trading day;
* options follow their underlying future (``cu_o`` -> ``cu``; CFFEX ``IO``/``HO``/``MO``
  follow ``IF``/``IH``/``IM``); an unknown product follows its exchange's plain day
  session and has no night session.

``always-open`` mode (dev, tests) judges every instrument open at any time.
"""

from __future__ import annotations

import csv
import datetime as _dt
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Literal

from . import paths

BEIJING = _dt.timezone(_dt.timedelta(hours=8), "Asia/Shanghai")
MODES = ("exchange", "always-open")
#: From this local time on, the trading day is the next trading day (the night session belongs to it).
TRADING_DAY_CUTOVER = _dt.time(18, 0)
NIGHT_START = _dt.time(21, 0)
PRODUCTS_FILE = paths.DATA_DIR / "products.csv"
HOLIDAYS_FILE = paths.DATA_DIR / "holidays.txt"

_DAY_SESSIONS: dict[str, tuple[tuple[str, str], ...]] = {
    "commodity": (("09:00", "10:15"), ("10:30", "11:30"), ("13:30", "15:00")),
    "cffex_index": (("09:30", "11:30"), ("13:00", "15:00")),
    "cffex_bond": (("09:30", "11:30"), ("13:00", "15:15")),
}
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_COMPLETE_RE = re.compile(r"^complete\s+(\d{4})$")
#: From this day of December on, next year's holidays are due (validate_env and the health check warn).
HORIZON_WARN_FROM = (12, 1)
_OPTION_SUFFIXES = ("_o", "_O", "-o", "-O")

Session = Literal["day", "night"]


class CalendarError(ValueError):
    """The calendar data cannot be used (bad holiday file, bad products file, naive time)."""


class HolidayFileError(CalendarError):
    """A holiday file is missing or has a line that is not a date."""

    def __init__(self, path: Path | str, line_no: int, reason: str, fix: str):
        self.path, self.line_no, self.reason, self.fix = str(path), line_no, reason, fix
        where = f"{path} line {line_no}" if line_no else str(path)
        super().__init__(f"holiday file {where}: {reason}; fix: {fix}")


def _seconds(hhmm: str) -> int:
    hours, minutes = hhmm.split(":")
    return int(hours) * 3600 + int(minutes) * 60


@dataclass(frozen=True)
class ProductHours:
    """When one product trades. Times are seconds since local midnight."""

    exchange: str
    product: str
    session_kind: str
    day: tuple[tuple[int, int], ...]
    night_end: int | None  # None: no night session; <= 21:00 means it crosses midnight

    @property
    def night_crosses_midnight(self) -> bool:
        return self.night_end is not None and self.night_end <= _seconds("21:00")


def _hours(exchange: str, product: str, session_kind: str, night_end: str | None) -> ProductHours:
    if session_kind not in _DAY_SESSIONS:
        raise CalendarError(f"products file: unknown session kind {session_kind!r} for {exchange}.{product}; "
                            f"fix: use one of {', '.join(_DAY_SESSIONS)}")
    day = tuple((_seconds(a), _seconds(b)) for a, b in _DAY_SESSIONS[session_kind])
    end = None if night_end in (None, "", "none") else _seconds(night_end)
    return ProductHours(exchange, product, session_kind, day, end)


@lru_cache(maxsize=4)
def load_products(path: str | None = None) -> dict[tuple[str, str], ProductHours]:
    """(exchange, product) -> hours, including option products mapped to their underlying."""
    file = Path(path) if path else PRODUCTS_FILE
    with open(file, encoding="utf-8") as fh:
        rows = list(csv.DictReader(line for line in fh if line.strip() and not line.startswith("#")))
    table: dict[tuple[str, str], ProductHours] = {}
    for row in rows:
        exchange, product = row["exchange"].strip().upper(), row["product"].strip()
        hours = _hours(exchange, product, row["session"].strip(), row["night_end"].strip())
        table[(exchange, product)] = hours
        option = (row.get("option_product") or "").strip()
        if option:
            table[(exchange, option)] = hours
    return table


class Holidays(frozenset):
    """The holiday dates of a holiday file, and the years it says are complete."""

    complete_years: frozenset[int]

    def __new__(cls, dates: Iterable[_dt.date] = (), complete_years: Iterable[int] = ()):
        self = super().__new__(cls, dates)
        self.complete_years = frozenset(complete_years)
        return self


def load_holidays(path: Path | str) -> Holidays:
    """Read a holiday file: one ``YYYY-MM-DD`` per line, or ``complete YYYY`` for a year whose
    holidays are all entered; ``#`` starts a comment.

    Raises :class:`HolidayFileError` naming the file and the line of a bad line.
    """
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise HolidayFileError(file, 0, "does not exist",
                               "point FEEDOPS_HOLIDAYS_FILE at an existing file or unset it to use the shipped list") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise HolidayFileError(file, 0, f"is unreadable ({getattr(exc, 'strerror', None) or exc})",
                               "make it a readable UTF-8 text file") from None
    holidays: set[_dt.date] = set()
    complete: set[int] = set()
    for line_no, raw in enumerate(text.splitlines(), start=1):
        value = raw.split("#", 1)[0].strip()
        if not value:
            continue
        year = _COMPLETE_RE.match(value)
        if year:
            complete.add(int(year.group(1)))
            continue
        try:
            if not _DATE_RE.match(value):
                raise ValueError
            holidays.add(_dt.date.fromisoformat(value))
        except ValueError:
            raise HolidayFileError(file, line_no, f"{value!r} is not a date YYYY-MM-DD nor 'complete YYYY'",
                                   "write one date per line like 2026-10-01, 'complete 2026' once a year's holidays "
                                   "are all entered, or comment the line out with #") from None
    return Holidays(holidays, complete)


def to_beijing(at: _dt.datetime) -> _dt.datetime:
    if at.tzinfo is None or at.utcoffset() is None:
        raise CalendarError(f"time {at.isoformat()} has no time zone; fix: pass an aware datetime (e.g. with +08:00 or Z)")
    return at.astimezone(BEIJING)


@dataclass(frozen=True)
class Horizon:
    """How far the holiday list reaches, judged at one time (:meth:`TradingCalendar.horizon`)."""

    status: Literal["ok", "due", "missing"]
    reason: str
    fix: str

    def __str__(self) -> str:
        return f"{self.reason}; fix: {self.fix}" if self.fix else self.reason


class TradingCalendar:
    """Sessions and trading days of the exchanges; see the module docstring for the rules."""

    def __init__(self, mode: str = "exchange", holidays: Iterable[_dt.date] | None = None, *,
                 products: dict[tuple[str, str], ProductHours] | None = None,
                 complete_years: Iterable[int] | None = None):
        if mode not in MODES:
            raise CalendarError(f"unknown calendar mode {mode!r}; fix: set FEEDOPS_CALENDAR to exchange or always-open")
        self.mode = mode
        self.holidays: frozenset[_dt.date] = frozenset(holidays or ())
        if complete_years is None:
            complete_years = getattr(holidays, "complete_years", ())
        #: Years whose holidays are all entered (``complete YYYY`` lines of the holiday file).
        self.complete_years: frozenset[int] = frozenset(complete_years)
        self.source = "the holiday list"  # from_settings names the file
        self.products = products if products is not None else load_products()
        self._lookup: dict[tuple[str, str], ProductHours] = {}
        self._night: dict[_dt.date, bool] = {}

    @classmethod
    def from_settings(cls, feed_settings) -> "TradingCalendar":
        """Mode from FEEDOPS_CALENDAR, holidays from FEEDOPS_HOLIDAYS_FILE or the shipped list."""
        return cls.from_file(feed_settings.calendar, feed_settings.holidays_file)

    @classmethod
    def from_file(cls, mode: str, holidays_file: str | None) -> "TradingCalendar":
        """``mode`` with the holidays of ``holidays_file`` (a settings path: relative to the repository
        root) or the shipped list; ``source`` names the file in messages."""
        path = paths.resolve(holidays_file) if holidays_file else HOLIDAYS_FILE
        calendar = cls(mode, load_holidays(path))
        calendar.source = paths.shown(path)
        return calendar

    @property
    def always_open(self) -> bool:
        return self.mode == "always-open"

    @property
    def known_until(self) -> _dt.date | None:
        """The last day the calendar is known: 31 December of the last year in the unbroken run of
        complete years that starts at the earliest one; None when no year is complete."""
        if not self.complete_years:
            return None
        year = min(self.complete_years)
        while year + 1 in self.complete_years:
            year += 1
        return _dt.date(year, 12, 31)

    def horizon(self, at: _dt.datetime) -> Horizon:
        """Whether the holidays of the year of ``at`` (Beijing) and, from 1 December, of the next
        year are entered. ``missing``: this year is not complete (holidays count as trading days
        now); ``due``: next year is not complete yet. Never a reason to halt: the calendar only
        judges health, it does not decide what is subscribed."""
        if self.always_open:
            return Horizon("ok", "always-open calendar: no holidays to judge", "")
        local = to_beijing(at)
        known = self.known_until
        known_text = f"known until {known}" if known else "no year marked complete"
        for year, status, consequence in (
                (local.year, "missing", "its holidays count as trading days now"),
                (local.year + 1, "due", "from 1 January its holidays would count as trading days")):
            if year in self.complete_years or (status == "due" and (local.month, local.day) < HORIZON_WARN_FROM):
                continue
            return Horizon(status, f"the holidays of {year} are not entered in {self.source} ({known_text}); {consequence}",
                           f"enter {year}'s exchange holidays from the State Council notice and the exchanges' "
                           f"notices into {self.source}, then add the line 'complete {year}' (docs/ops/holidays.md)")
        return Horizon("ok", f"holidays entered for {local.year}"
                       + (f" and {local.year + 1}" if local.year + 1 in self.complete_years else "") + f" ({known_text})", "")

    # ------------------------------------------------------------------ days
    def is_trading_day(self, day: _dt.date) -> bool:
        return day.weekday() < 5 and day not in self.holidays

    def next_trading_day(self, day: _dt.date) -> _dt.date:
        nxt = day + _dt.timedelta(days=1)
        for _ in range(60):
            if self.is_trading_day(nxt):
                return nxt
            nxt += _dt.timedelta(days=1)
        raise CalendarError(f"no trading day within 60 days after {day}; fix: check the holiday file")

    def has_night_session(self, day: _dt.date) -> bool:
        """True when the evening of ``day`` has a night session."""
        cached = self._night.get(day)
        if cached is None:
            cached = False
            if self.is_trading_day(day):
                nxt = self.next_trading_day(day)
                between = (day + _dt.timedelta(days=i) for i in range(1, (nxt - day).days))
                cached = not any(d in self.holidays for d in between)
            self._night[day] = cached
        return cached

    def trading_day(self, at: _dt.datetime) -> _dt.date:
        """The trading day ``at`` belongs to (night session -> next trading day)."""
        local = to_beijing(at)
        day = local.date()
        if local.time() >= TRADING_DAY_CUTOVER or not self.is_trading_day(day):
            return self.next_trading_day(day)
        return day

    # ------------------------------------------------------------------ sessions
    def hours(self, exchange: str, product: str) -> ProductHours:
        """Hours of a product; options map to their underlying; unknown -> exchange day session."""
        key = (exchange, product)
        found = self._lookup.get(key)
        if found is None:
            found = self._resolve(exchange.upper(), product)
            self._lookup[key] = found
        return found

    def _resolve(self, exchange: str, product: str) -> ProductHours:
        candidates = [product]
        for suffix in _OPTION_SUFFIXES:
            if product.endswith(suffix):
                candidates.append(product[: -len(suffix)])
        for candidate in candidates:
            for key in ((exchange, candidate), (exchange, candidate.lower()), (exchange, candidate.upper())):
                if key in self.products:
                    return self.products[key]
        kind = "cffex_index" if exchange == "CFFEX" else "commodity"
        return _hours(exchange, product, kind, None)

    def session_of(self, hours: ProductHours, local: _dt.datetime) -> Session | None:
        """Session of ``hours`` at a Beijing-time ``local`` datetime (the hot path)."""
        if self.mode == "always-open":
            return "day" if 6 <= local.hour < 18 else "night"
        day = local.date()
        secs = local.hour * 3600 + local.minute * 60 + local.second
        if self.is_trading_day(day):
            for start, end in hours.day:
                if start <= secs < end:
                    return "day"
        if hours.night_end is None:
            return None
        night_start = 21 * 3600
        if secs >= night_start:
            end = 24 * 3600 if hours.night_crosses_midnight else hours.night_end
            if secs < end and self.has_night_session(day):
                return "night"
        elif hours.night_crosses_midnight and secs < hours.night_end:
            if self.has_night_session(day - _dt.timedelta(days=1)):
                return "night"
        return None

    def session(self, exchange: str, product: str, at: _dt.datetime) -> Session | None:
        """"day", "night" or None (closed) for a product at ``at``."""
        return self.session_of(self.hours(exchange, product), to_beijing(at))

    def is_open(self, exchange: str, product: str, at: _dt.datetime) -> bool:
        return self.session(exchange, product, at) is not None

    def open_seconds(self, exchange: str, product: str, start: _dt.datetime, end: _dt.datetime) -> float:
        """Seconds between ``start`` and ``end`` during which the product's sessions are open (the same
        sessions as :meth:`session_of`): a break, a weekend or a holiday in between is not counted."""
        if end <= start:
            return 0.0
        if self.always_open:
            return (end - start).total_seconds()
        hours = self.hours(exchange, product)
        first, last = to_beijing(start), to_beijing(end)
        total = 0.0
        day = first.date() - _dt.timedelta(days=1)
        while day <= last.date():
            midnight = _dt.datetime(day.year, day.month, day.day, tzinfo=BEIJING)
            spans: list[tuple[int, int]] = list(hours.day) if self.is_trading_day(day) else []
            if hours.night_end is not None and self.has_night_session(day):
                if hours.night_crosses_midnight:
                    spans += [(21 * 3600, 24 * 3600), (24 * 3600, 24 * 3600 + hours.night_end)]
                else:
                    spans.append((21 * 3600, hours.night_end))
            for a, b in spans:
                lo = max(first, midnight + _dt.timedelta(seconds=a))
                hi = min(last, midnight + _dt.timedelta(seconds=b))
                if hi > lo:
                    total += (hi - lo).total_seconds()
            day += _dt.timedelta(days=1)
        return total

    def any_open(self, at: _dt.datetime) -> bool:
        if self.always_open:
            return True
        local = to_beijing(at)
        return any(self.session_of(h, local) is not None for h in set(self.products.values()))

    def next_open(self, at: _dt.datetime, days: int = 20) -> _dt.datetime | None:
        """The next time (Beijing) at or after ``at`` when some product is open, within ``days``."""
        local = to_beijing(at)
        if self.any_open(local):
            return local
        starts = sorted({s for h in self.products.values() for s, _ in h.day} | {21 * 3600})
        midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
        for offset in range(days + 1):
            base = midnight + _dt.timedelta(days=offset)
            for start in starts:
                candidate = base + _dt.timedelta(seconds=start)
                if candidate > local and self.any_open(candidate):
                    return candidate
        return None
