"""The instrument list is checked before it is trusted.

The list of a trading day is cached (``FEEDOPS_CACHE_DIR/instruments-<channel>-<profile>-<TradingDay>.json``)
with its row count, a SHA-256 of its rows and its count per exchange. Before a list is used:

* a cache whose rows do not match its count and checksum (truncated, edited, or written
  by a version without them) is not trusted: the list is queried again;
* a list (cached or queried) is compared with the expectation, the newest earlier
  trading day's list that was not itself suspicious: fewer than
  ``1 - MAX_DROP_RATIO`` of its instruments, or an exchange that had at least
  ``MIN_EXCHANGE_INSTRUMENTS`` and now has fewer than ``MIN_EXCHANGE_SHARE`` of them,
  is suspicious. A suspicious cache is queried again; a suspicious answer of the
  front is queried once more and, if it stays suspicious, used but flagged
  (``/status`` ``instruments.list.suspicious``, the health check's ``instruments:list``
  fails) and cached with the flag, so that it never becomes the next day's expectation.
"""

from __future__ import annotations

import collections
import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..fileio import atomic_write_text

#: A day's list with fewer than (1 - this) of the previous day's instruments is suspicious.
MAX_DROP_RATIO = 0.2
#: An exchange that listed at least this many instruments the previous day ...
MIN_EXCHANGE_INSTRUMENTS = 10
#: ... and now lists fewer than this share of them makes the list suspicious.
MIN_EXCHANGE_SHARE = 0.5


class CacheError(Exception):
    """The cache cannot be trusted (unreadable, or its rows do not match its count and checksum)."""


@dataclass
class ListCheck:
    """How the list in use was obtained and judged (``/status`` ``instruments.list``)."""

    source: str  # cache | query
    listed: int
    expected: int | None = None  # the previous day's count
    expected_day: str | None = None
    suspicious: str | None = None  # why the list is not trusted; None when it is
    requeried: bool = False  # a cache or an answer was refused and the front asked again

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def digest(rows: list) -> str:
    return hashlib.sha256(json.dumps(rows, separators=(",", ":"), ensure_ascii=False).encode()).hexdigest()


def by_exchange(rows: list) -> dict[str, int]:
    return dict(sorted(collections.Counter(str(r[1]) for r in rows).items()))


def write_cache(path: Path, day: str, rows: list, suspicious: str | None) -> None:
    """Atomically (temporary file, rename); raises OSError."""
    rows = [list(r) for r in rows]
    atomic_write_text(path, json.dumps({"trading_day": day, "count": len(rows), "sha256": digest(rows),
                                        "by_exchange": by_exchange(rows), "suspicious": suspicious, "instruments": rows}))


def read_cache(path: Path) -> tuple[list[tuple], str | None]:
    """The rows and the suspicion recorded with them; CacheError when they cannot be trusted."""
    try:
        doc = json.loads(path.read_text())
        rows = [list(r) for r in doc["instruments"]]
        count, checksum = doc.get("count"), doc.get("sha256")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CacheError(f"unreadable ({exc})") from None
    if count is None or checksum is None:
        raise CacheError("it has no count and checksum (written by an older version, or by hand)")
    if count != len(rows) or checksum != digest(rows):
        raise CacheError(f"its {len(rows)} rows do not match the count ({count}) and checksum written with it "
                         "(truncated or edited)")
    return [tuple(r) for r in rows], doc.get("suspicious")


def expectation(cache_dir: Path, prefix: str, day: str) -> tuple[str, dict[str, int]] | None:
    """The newest earlier day's trusted list as (day, count per exchange), or None."""
    for path in sorted(cache_dir.glob(f"{prefix}*.json"), reverse=True):
        other = path.stem[len(prefix):]
        if not (len(other) == 8 and other.isdigit()) or other >= day:
            continue
        try:
            rows, suspicious = read_cache(path)
        except CacheError:
            continue
        if suspicious is None and rows:
            return other, by_exchange(rows)
    return None


def judge(rows: list, expected: tuple[str, dict[str, int]] | None) -> str | None:
    """Why ``rows`` is suspicious against the expectation, or None."""
    if not rows:
        return "the list is empty"
    if expected is None:
        return None
    day, before = expected
    now = by_exchange(rows)
    total_before = sum(before.values())
    if len(rows) < (1.0 - MAX_DROP_RATIO) * total_before:
        return f"{len(rows)} instruments, {total_before} on {day} (more than {MAX_DROP_RATIO:.0%} fewer)"
    short = [f"{ex} {now.get(ex, 0)} of {n}" for ex, n in before.items()
             if n >= MIN_EXCHANGE_INSTRUMENTS and now.get(ex, 0) < MIN_EXCHANGE_SHARE * n]
    if short:
        return f"exchanges short against {day}: {', '.join(short)} (less than {MIN_EXCHANGE_SHARE:.0%})"
    return None
