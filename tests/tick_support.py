"""Depth structs in CTP's memory layout for tests: what the callback receives, without a front."""

from __future__ import annotations

from types import SimpleNamespace

from feedops.worker.ticks import depth_rows


def depth_struct(**fields) -> SimpleNamespace:
    """A struct holding ``fields`` (CTP names) in the binding's layout; ``this`` is its address, like the
    binding's proxy (the array stays alive with the object)."""
    rows = depth_rows([fields])
    return SimpleNamespace(this=rows.ctypes.data, rows=rows)
