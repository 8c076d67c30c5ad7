"""Load the CTP API modules for a channel: the real binding or ctp-sim's drop-in.

``channel=ctp`` returns ``openctp_ctp.mdapi`` / ``openctp_ctp.tdapi``; ``channel=sim``
returns ``feedops.sim.mdapi`` / ``feedops.sim.tdapi``, which mirror them (same
classes, methods, callbacks and return codes). The worker's gateway is written once
against that API.

The binding itself (the locale check that keeps its import from aborting the process,
the import, the fix message) is :mod:`feedops.ctpbinding`; here a binding that cannot
load stops the worker with :class:`CtpApiError`.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType

from . import ctpbinding


class CtpApiError(RuntimeError):
    """The API of a channel cannot be loaded; the message names the cause and the fix."""


@dataclass(frozen=True)
class CtpApi:
    """The market-data and trader API modules of one channel."""

    channel: str
    mdapi: ModuleType
    tdapi: ModuleType

    @property
    def version(self) -> str:
        try:
            return str(self.mdapi.CThostFtdcMdApi.GetApiVersion())
        except Exception:  # informational only
            return "unknown"


def load_api(channel: str) -> CtpApi:
    """Return the API modules for ``channel`` (``ctp`` or ``sim``); raise :class:`CtpApiError`."""
    if channel == "ctp":
        try:
            md, td = ctpbinding.load()
        except ctpbinding.BindingError as exc:
            raise CtpApiError(str(exc)) from None
        return CtpApi("ctp", md, td)
    if channel == "sim":
        try:
            from .sim import mdapi as md
            from .sim import tdapi as td
        except ImportError as exc:
            raise CtpApiError(f"the ctp-sim API (feedops.sim) cannot be imported ({exc}); fix: reinstall feedops "
                              "with `make bootstrap`") from None
        return CtpApi("sim", md, td)
    raise CtpApiError(f"unknown channel {channel!r}; fix: set FEEDOPS_CHANNEL (or --channel) to ctp or sim")
