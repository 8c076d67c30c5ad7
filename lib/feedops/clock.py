"""The one clock seam: every decision in feedops that depends on the date reads this clock.

Time is an input. ``FEEDOPS_CLOCK_AT`` moves the clock of a whole process (and of the
processes it starts) to another instant; the clock then runs at the real clock's speed::

    FEEDOPS_CLOCK_AT=2026-12-31T22:00:00+08:00              # read at this process's start
    FEEDOPS_CLOCK_AT=2026-12-31T22:00:00+08:00@1796040000.0 # read when the real clock read 1796040000.0

The form with ``@<unix seconds>`` (the anchor) gives every process the same offset to
the millisecond; :func:`anchored` makes it, and the runbook anchors the variable once
at its start, so its simulator, worker and checkers agree. Unset or empty: the real clock.

What reads it: ctp-sim (trading day, sessions, exchange times, universe months), the
worker (receive times, trading day of the session, coverage), the health check (the
default of ``--at``), validate_env (the calendar's horizon) and the runbook's pre-market.
Log timestamps, Prometheus samples and durations stay on the real clock.
The variable is read from the environment only (not from env files): it is a seam for
tests, drills and rehearsals, documented in docs/ops/time.md.
"""

from __future__ import annotations

import datetime as _dt
import os
import time as _time

ENV_VAR = "FEEDOPS_CLOCK_AT"
UTC = _dt.timezone.utc


class ClockError(ValueError):
    """``FEEDOPS_CLOCK_AT`` is not an instant the clock can be moved to."""

    def __init__(self, reason: str):
        self.reason = reason
        self.fix = (f"set {ENV_VAR} to an ISO 8601 instant with its offset, like 2026-12-31T22:00:00+08:00, "
                    "optionally followed by @<unix seconds> (the real time it is anchored to), or unset it")
        super().__init__(f"{ENV_VAR}: {reason}; fix: {self.fix}")


def parse(value: str | None, *, real_now: float | None = None) -> float:
    """The offset in seconds (moved clock minus real clock) that ``value`` asks for; 0.0 when unset."""
    text = (value or "").strip()
    if not text:
        return 0.0
    instant, sep, anchor_text = text.partition("@")
    try:
        at = _dt.datetime.fromisoformat(instant.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ClockError(f"{instant.strip()!r} is not a time") from None
    if at.tzinfo is None or at.utcoffset() is None:
        raise ClockError(f"{instant.strip()!r} has no UTC offset (a moved clock must not guess the zone)")
    if sep:
        try:
            anchor = float(anchor_text)
        except ValueError:
            raise ClockError(f"the anchor {anchor_text!r} after @ is not unix seconds") from None
    else:
        anchor = _time.time() if real_now is None else real_now
    return at.timestamp() - anchor


def anchored(at: _dt.datetime | str, *, real_now: float | None = None) -> str:
    """The ``FEEDOPS_CLOCK_AT`` value that reads ``at`` now (at ``real_now``), for child processes."""
    instant = at if isinstance(at, str) else at.isoformat()
    if "@" in instant:
        return instant
    parse(instant)  # refuse a bad value here, not in every child
    return f"{instant}@{_time.time() if real_now is None else real_now:.6f}"


_offset = 0.0
_error: ClockError | None = None


def check() -> None:
    """Raise the :class:`ClockError` of a bad ``FEEDOPS_CLOCK_AT`` (CLIs call it at start-up)."""
    if _error is not None:
        raise _error


def offset() -> float:
    return _offset


def time() -> float:
    """Unix seconds on the (possibly moved) clock."""
    return _time.time() + _offset


def now(tz: _dt.tzinfo = UTC) -> _dt.datetime:
    """An aware datetime on the (possibly moved) clock."""
    return _dt.datetime.fromtimestamp(_time.time() + _offset, tz)


def pin(value: str) -> None:
    """Move this process's clock as ``FEEDOPS_CLOCK_AT=value`` would have at its start, and anchor it in the
    environment for the processes it starts (a program that runs at a fixed instant: ``make drills``)."""
    global _offset, _error
    real_now = _time.time()
    _offset = parse(value, real_now=real_now)
    _error = None
    os.environ[ENV_VAR] = value if "@" in value else f"{value}@{real_now:.6f}"


def _from_environment() -> None:
    """Read ``FEEDOPS_CLOCK_AT`` once, and anchor it in this process's environment so that the
    processes it starts (the sink writer, the runbook's steps) read the same clock."""
    global _error
    value = os.environ.get(ENV_VAR, "").strip()
    if not value:
        return
    try:
        pin(value)
    except ClockError as exc:  # reported by check() in the CLI that reads it, with its own exit code
        _error = exc


_from_environment()
