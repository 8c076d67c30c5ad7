"""Where things live. Relative paths in settings are resolved against ``ROOT``."""

from __future__ import annotations

import os
from pathlib import Path

#: The repository (or image) root: FEEDOPS_HOME when set, else the directory above ``lib/``.
ROOT = Path(os.environ.get("FEEDOPS_HOME") or Path(__file__).resolve().parents[2])
ENVS_DIR = ROOT / "envs"
SCHEMAS_DIR = Path(__file__).resolve().parent / "schemas"
DATA_DIR = Path(__file__).resolve().parent / "data"


def resolve(path: str | os.PathLike[str]) -> Path:
    """Resolve a settings path: absolute stays, relative is taken from ROOT."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else ROOT / p
