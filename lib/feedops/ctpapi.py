"""Load the CTP API modules for a channel: the real binding or ctp-sim's drop-in.

``channel=ctp`` returns ``openctp_ctp.mdapi`` / ``openctp_ctp.tdapi``; ``channel=sim``
returns ``feedops.sim.mdapi`` / ``feedops.sim.tdapi``, which mirror them (same
classes, methods, callbacks and return codes). The worker's gateway is written once
against that API.

The real binding **aborts the process** on import (a C++ ``std::locale`` exception,
not a Python error) when the ``zh_CN.GB18030`` locale does not exist. So before
importing it we ask glibc (``newlocale``, which honours ``LOCPATH`` like the C++
runtime does) whether the locale can be loaded, and raise :class:`CtpApiError`
with the fix instead of letting the process die.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import importlib
import os
from dataclasses import dataclass
from types import ModuleType

from . import paths

CTP_LOCALE = "zh_CN.GB18030"
_LC_ALL_MASK = 0x1FBF  # glibc: every LC_*_MASK bit


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


def locale_available(name: str = CTP_LOCALE) -> bool:
    """True when glibc can load locale ``name`` (honouring LOCPATH), without changing the process locale."""
    libc_name = ctypes.util.find_library("c") or "libc.so.6"
    try:
        libc = ctypes.CDLL(libc_name, use_errno=True)
    except OSError:
        return False
    libc.newlocale.restype = ctypes.c_void_p
    libc.newlocale.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p]
    libc.freelocale.argtypes = [ctypes.c_void_p]
    handle = libc.newlocale(_LC_ALL_MASK, name.encode(), None)
    if not handle:
        return False
    libc.freelocale(handle)
    return True


def locale_fix() -> str:
    target = paths.LOCALE_DIR
    return (f"run `make bootstrap` (it generates {target}/{CTP_LOCALE}) and start with LOCPATH={target}, "
            f"or as root: localedef -c -i zh_CN -f GB18030 {CTP_LOCALE}")


def load_api(channel: str) -> CtpApi:
    """Return the API modules for ``channel`` (``ctp`` or ``sim``); raise :class:`CtpApiError`."""
    if channel == "ctp":
        if not locale_available():
            where = f"LOCPATH={os.environ['LOCPATH']}" if os.environ.get("LOCPATH") else "LOCPATH is unset"
            raise CtpApiError(f"the {CTP_LOCALE} locale needed by openctp-ctp is missing ({where}); fix: {locale_fix()}")
        try:
            package = importlib.import_module("openctp_ctp")
        except ImportError as exc:
            raise CtpApiError(f"openctp-ctp is not installed ({exc}); fix: `make bootstrap` "
                              "(wheels exist for Linux x86_64 and Windows x64 only)") from None
        return CtpApi("ctp", package.mdapi, package.tdapi)
    if channel == "sim":
        try:
            md = importlib.import_module("feedops.sim.mdapi")
            td = importlib.import_module("feedops.sim.tdapi")
        except ImportError as exc:
            raise CtpApiError(f"the ctp-sim API (feedops.sim) cannot be imported ({exc}); fix: reinstall feedops "
                              "with `make bootstrap`") from None
        return CtpApi("sim", md, td)
    raise CtpApiError(f"unknown channel {channel!r}; fix: set FEEDOPS_CHANNEL (or --channel) to ctp or sim")
