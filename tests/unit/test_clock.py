"""feedops.clock: the one clock seam (FEEDOPS_CLOCK_AT), in process and across processes."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys

import pytest

from clock_support import child_environ
from feedops import clock
from feedops.calendar import BEIJING

AT = dt.datetime(2026, 12, 31, 22, 0, tzinfo=BEIJING)


def test_unset_is_the_real_clock():
    assert clock.parse(None) == 0.0 and clock.parse("  ") == 0.0


def test_an_anchored_value_is_exact():
    value = f"{AT.isoformat()}@1000.5"
    assert clock.parse(value) == AT.timestamp() - 1000.5
    assert clock.parse(value, real_now=5.0) == AT.timestamp() - 1000.5  # the anchor wins over "now"


def test_an_unanchored_value_reads_the_instant_now():
    assert clock.parse(AT.isoformat(), real_now=2000.0) == AT.timestamp() - 2000.0
    assert clock.parse("2026-12-31T14:00:00Z", real_now=0.0) == AT.timestamp()


def test_anchored_keeps_an_anchor_and_refuses_garbage():
    value = clock.anchored(AT, real_now=123.25)
    assert value == f"{AT.isoformat()}@123.250000"
    assert clock.anchored(value) == value
    with pytest.raises(clock.ClockError):
        clock.anchored("soon")


@pytest.mark.parametrize("value, reason", [
    ("tomorrow", "'tomorrow' is not a time"),
    ("2026-12-31T22:00:00", "has no UTC offset"),
    ("2026-12-31T22:00:00+08:00@noon", "the anchor 'noon' after @ is not unix seconds"),
])
def test_bad_values_name_the_variable_and_the_fix(value, reason):
    with pytest.raises(clock.ClockError) as exc:
        clock.parse(value)
    assert reason in exc.value.reason and "FEEDOPS_CLOCK_AT" in str(exc.value) and "2026-12-31T22:00:00+08:00" in exc.value.fix


def test_moved_clock_runs_at_real_speed(monkeypatch):
    monkeypatch.setattr(clock, "_offset", clock.parse(clock.anchored(AT)))
    first = clock.time()
    assert abs(first - AT.timestamp()) < 5 and clock.now(BEIJING).year == 2026
    second = clock.time()
    assert 0 <= second - first < 5


CHILD = """
import json, os, subprocess, sys
from feedops import clock
out = {"offset": clock.offset(), "env": os.environ.get("FEEDOPS_CLOCK_AT")}
if len(sys.argv) > 1:
    grandchild = subprocess.run([sys.executable, "-c", "from feedops import clock; print(clock.offset())"],
                                capture_output=True, text=True, check=True)
    out["grandchild"] = float(grandchild.stdout)
print(json.dumps(out))
"""


def test_a_process_anchors_the_variable_for_its_children():
    env = child_environ(FEEDOPS_CLOCK_AT=AT.isoformat())
    done = subprocess.run([sys.executable, "-c", CHILD, "spawn"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["env"].startswith(AT.isoformat() + "@")
    assert out["grandchild"] == pytest.approx(out["offset"], abs=1e-3)  # the same clock, to the millisecond
    assert abs(out["offset"] - (AT.timestamp() - dt.datetime.now().timestamp())) < 60


def test_a_bad_value_does_not_crash_the_import_and_is_reported_by_check():
    code = "from feedops import clock\ntry:\n    clock.check()\nexcept clock.ClockError as e:\n    print(e.reason)"
    done = subprocess.run([sys.executable, "-c", code], env=child_environ(FEEDOPS_CLOCK_AT="yesterday"),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "'yesterday' is not a time", done.stderr


def test_pin_moves_this_process_and_anchors_its_children():
    code = ("import json, subprocess, sys\nfrom feedops import clock\nclock.pin(sys.argv[1])\n"
            "child = subprocess.run([sys.executable, '-c', 'from feedops import clock; print(clock.offset())'],\n"
            "                       capture_output=True, text=True, check=True)\n"
            "print(json.dumps({'now': clock.time(), 'child': float(child.stdout), 'offset': clock.offset()}))")
    done = subprocess.run([sys.executable, "-c", code, AT.isoformat()], env=child_environ(), capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert abs(out["now"] - AT.timestamp()) < 30
    assert out["child"] == pytest.approx(out["offset"], abs=1e-3)
    with pytest.raises(clock.ClockError):
        clock.pin("yesterday")
