"""Where things live. Relative paths in settings are resolved against ``ROOT``."""

from __future__ import annotations

import os
from pathlib import Path

#: The repository (or image) root: FEEDOPS_HOME when set, else the directory above ``lib/``.
ROOT = Path(os.environ.get("FEEDOPS_HOME") or Path(__file__).resolve().parents[2])
ENVS_DIR = ROOT / "envs"
SCHEMAS_DIR = Path(__file__).resolve().parent / "schemas"
DATA_DIR = Path(__file__).resolve().parent / "data"
#: Where `make bootstrap` compiles the zh_CN.GB18030 locale openctp-ctp needs.
LOCALE_DIR = ROOT / ".venv" / "locale"


def bootstrap_locpath() -> str | None:
    """LOCPATH for the bootstrap locale when it was compiled, else None (with LOCPATH set,
    glibc ignores the system's locales, so it must not point at a directory without it)."""
    return str(LOCALE_DIR) if (LOCALE_DIR / "zh_CN.GB18030" / "LC_CTYPE").is_file() else None


def shown(path: str | os.PathLike[str]) -> str:
    """A path as messages show it: relative to ROOT when inside it."""
    p = Path(path)
    try:
        return str(p.resolve().relative_to(ROOT.resolve()))
    except ValueError:
        return str(p)


def resolve(path: str | os.PathLike[str]) -> Path:
    """Resolve a settings path: absolute stays, relative is taken from ROOT."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else ROOT / p
