"""Reading what a sink holds, as a consumer would: whole records, torn ones, duplicates."""

from __future__ import annotations

import collections
import json
from pathlib import Path


def parse_lines(path: Path) -> tuple[list[dict], int]:
    """The records of ``path`` and how many of its lines are torn (not a JSON object, or no final newline)."""
    data = path.read_bytes()
    lines = data.split(b"\n")
    unterminated = lines.pop()  # b"" when the file ends with a newline
    records, torn = [], 0
    for line in lines:
        try:
            records.append(json.loads(line))
        except ValueError:
            torn += 1
    return records, torn + (1 if unterminated else 0)


def tick_key(tick: dict) -> tuple:
    """What makes a tick unique in a feed: one instrument's update at one time with one cumulative volume."""
    return (tick["instrument"], tick["trading_day"], tick["action_day"], tick["update_time"], tick["millisec"],
            tick["volume"])


def duplicates(ticks: list[dict]) -> int:
    """How many ticks are repeats of an earlier one (0 for an exactly-once sink)."""
    counts = collections.Counter(tick_key(t) for t in ticks)
    return sum(n - 1 for n in counts.values())


def file_sink_contents(directory: Path, shard: str = "0of1") -> tuple[list[dict], int]:
    """Every record of a file sink (all trading days, in day order) and the number of torn lines."""
    records: list[dict] = []
    torn = 0
    for path in sorted(directory.glob(f"*/ticks-{shard}.jsonl")):
        day_records, day_torn = parse_lines(path)
        records.extend(day_records)
        torn += day_torn
    return records, torn
