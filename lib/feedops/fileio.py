"""Atomic file writes: a temporary file beside the target, fsync, then rename.

Every state, cache and rendered configuration file is written through :func:`atomic_write_text`,
so a reader sees the old file or the new one, never half of one, and the mode is set before the
file appears under its name (a configuration holding a receiver's secret is never world-readable,
not even for a moment).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def atomic_write_text(path: Path, text: str, mode: int = 0o644) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically with permissions ``mode``; creates the directory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
