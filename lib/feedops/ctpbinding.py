"""The openctp-ctp binding: the one module that imports it (locale check, import, the fix).

The real binding **aborts the process** on import (a C++ ``std::locale`` exception, not a
Python error) when the ``zh_CN.GB18030`` locale does not exist (docs/ops/ctp-reference.md).
So before importing it we ask glibc (``newlocale``, which honours ``LOCPATH`` like the C++
runtime does) whether the locale can be loaded, and raise :class:`BindingError` with the
fix instead of letting the process die.

A leaf: it imports nothing of feedops but :mod:`feedops.paths`. Both sides use it, each
with its own rule for a missing binding: the production loader (:mod:`feedops.ctpapi`,
``channel=ctp``) refuses to start with the message; ctp-sim's structs
(:mod:`feedops.sim.structs`) fall back to pure-Python classes.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from types import ModuleType

from . import paths

CTP_LOCALE = "zh_CN.GB18030"
_LC_ALL_MASK = 0x1FBF  # glibc: every LC_*_MASK bit


class BindingError(RuntimeError):
    """openctp-ctp cannot be imported; the message names the cause and the fix."""


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


def load() -> tuple[ModuleType, ModuleType]:
    """``(openctp_ctp.mdapi, openctp_ctp.tdapi)``; raise :class:`BindingError` (never abort) when they cannot load."""
    if not locale_available():
        where = f"LOCPATH={os.environ['LOCPATH']}" if os.environ.get("LOCPATH") else "LOCPATH is unset"
        raise BindingError(f"the {CTP_LOCALE} locale needed by openctp-ctp is missing ({where}); fix: {locale_fix()}")
    try:
        from openctp_ctp import mdapi, tdapi
    except ImportError as exc:
        raise BindingError(f"openctp-ctp is not installed ({exc}); fix: `make bootstrap` "
                           "(wheels exist for Linux x86_64 and Windows x64 only)") from None
    return mdapi, tdapi
