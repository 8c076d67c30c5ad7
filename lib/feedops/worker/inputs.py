"""What the worker and its probe load from the settings before anything connects: the trading calendar and the CTP binding.

A failure is a :class:`feedops.worker.errors.WorkerError` with exit code CONFIG and the
loader's own message (which names the fix).
"""

from __future__ import annotations

from ..calendar import CalendarError, TradingCalendar
from ..ctpapi import CtpApi, CtpApiError, load_api
from ..exitcodes import Worker
from .errors import WorkerError


def load_calendar(feed) -> TradingCalendar:
    try:
        return TradingCalendar.from_settings(feed)
    except CalendarError as exc:
        raise WorkerError(Worker.CONFIG, str(exc), event="worker.config.invalid") from None


def load_api_of(channel: str, api: CtpApi | None) -> CtpApi:
    """``api`` when given (tests), else the binding of ``channel``."""
    if api is not None:
        return api
    try:
        return load_api(channel)
    except CtpApiError as exc:
        raise WorkerError(Worker.CONFIG, str(exc), event="worker.config.invalid") from None
