"""The CTP struct classes the sim hands out and accepts.

When openctp-ctp imports (:mod:`feedops.ctpbinding`: its ``zh_CN.GB18030`` locale is
loadable), the struct classes are the binding's own, so ``isinstance(tick,
openctp_ctp.mdapi.CThostFtdcDepthMarketDataField)`` holds and code written against the
sim runs unchanged on the real library. Otherwise small pure-Python classes with exactly the
same field names (:mod:`feedops.sim.fields`) stand in.

Callback structs are *fast* variants: a subclass of the binding's class whose every
field is a Python slot. Reading or writing a SWIG property costs 0.5-2.5 µs; a slot
costs ~0.03 µs, which is what lets one client take 40k+ ticks/s. The real library
reuses one buffer per callback, so callers must copy fields out (as with the real
thing). Depth ticks are the exception: they are structs in the binding's memory layout,
built a frame at a time (:mod:`feedops.sim.mdapi`), so a consumer can copy their bytes.
"""

from __future__ import annotations

import sys
from types import ModuleType
from typing import Any

from .. import ctpbinding
from .fields import FIELDS

#: CTP's "no value" marker for prices (the largest double); consumers must turn it into null.
NO_VALUE = sys.float_info.max
_DEFAULTS = {"s": "", "i": 0, "f": 0.0}


def _load_binding() -> tuple[ModuleType | None, ModuleType | None]:
    """openctp-ctp's modules when they load (:mod:`feedops.ctpbinding`), else the fallback's (None, None)."""
    try:
        return ctpbinding.load()
    except ctpbinding.BindingError:
        return None, None


REAL_MD, REAL_TD = _load_binding()
#: True when callbacks receive (subclasses of) openctp-ctp's own structs.
NATIVE = REAL_MD is not None


def _init_source(kinds: tuple[tuple[str, str], ...], float_default: float, call_base: bool) -> str:
    """Source of an ``__init__`` that assigns every field directly (much faster than a setattr loop)."""
    lines = ["def __init__(self):"]
    if call_base:
        lines.append("    _base_init(self)")
    defaults = dict(_DEFAULTS, f=float_default)
    lines += [f"    self.{name} = {defaults[kind]!r}" for name, kind in kinds]
    if len(lines) == 1:
        lines.append("    pass")
    return "\n".join(lines)


def _make_init(kinds: tuple[tuple[str, str], ...], float_default: float, base_init: Any = None) -> Any:
    namespace: dict[str, Any] = {"_base_init": base_init}
    exec(_init_source(kinds, float_default, base_init is not None), namespace)  # generated from FIELDS
    return namespace["__init__"]


class _PlainStruct:
    """Base of the fallback structs: slots only, defaults like the binding's (0, 0.0, '')."""

    __slots__ = ()
    _kinds: tuple[tuple[str, str], ...] = ()

    def __repr__(self) -> str:
        shown = ", ".join(f"{n}={getattr(self, n)!r}" for n, _ in self._kinds if getattr(self, n) not in ("", 0, 0.0))
        return f"<{type(self).__name__} {shown}>"


def _plain(name: str, float_default: float = 0.0) -> type:
    kinds = FIELDS[name]
    return type(name, (_PlainStruct,), {"__slots__": tuple(n for n, _ in kinds), "_kinds": kinds,
                                         "__init__": _make_init(kinds, float_default), "__module__": __name__})


def _fast(base: type, name: str, float_default: float = 0.0) -> type:
    """A subclass of the binding's struct whose fields are Python slots (fast, isinstance-compatible).

    The binding's ``__init__`` is not called: it allocates a C struct that would never be read,
    and it releases the GIL, which costs up to a thread switch interval (5 ms) per object while
    other threads are busy (measured: 23-38 µs per struct under load). Consequence: such an
    object cannot be passed to the binding's own C methods (e.g. ``super().OnRtnDepthMarketData``).
    """
    kinds = FIELDS[name]
    return type(name, (base,), {"__slots__": tuple(n for n, _ in kinds), "__setattr__": object.__setattr__,
                                "__init__": _make_init(kinds, float_default), "_kinds": kinds,
                                "__repr__": _PlainStruct.__repr__, "__module__": __name__})


def fast_class(binding: ModuleType | None, name: str, float_default: float = 0.0) -> type:
    """The fast callback class for struct ``name`` (floats default to ``float_default``)."""
    real = getattr(binding, name, None) if binding is not None else None
    return _plain(name, float_default) if real is None else _fast(real, name, float_default)


def struct_classes(binding: ModuleType | None) -> tuple[dict[str, type], dict[str, type]]:
    """(classes to re-export, fast classes for callbacks) for one of md/td."""
    exported: dict[str, type] = {}
    fast: dict[str, type] = {}
    for name in FIELDS:
        real = getattr(binding, name, None) if binding is not None else None
        fast[name] = fast_class(binding, name)
        exported[name] = real if real is not None else fast[name]
    return exported, fast


def fill(struct: Any, values: dict[str, Any]) -> Any:
    """Set fields from a mapping (unknown names are ignored, as the binding ignores misspellings)."""
    for key, value in values.items():
        try:
            setattr(struct, key, value)
        except (AttributeError, TypeError):
            pass
    return struct


def fields_of(struct: Any) -> dict[str, Any]:
    """Read the known fields of a request struct (real binding or fallback) into a dict."""
    name = type(struct).__name__
    kinds = FIELDS.get(name, ())
    return {field: getattr(struct, field, _DEFAULTS[kind]) for field, kind in kinds}
