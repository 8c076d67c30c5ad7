"""One log format: Python (feedops.log) and bash (log.sh) lines both match log-line.schema.json."""

from __future__ import annotations

import datetime as dt
import io
import json
import subprocess

import jsonschema
import pytest

from feedops import log as log_mod
from feedops.log import Logger, configure, get_logger, redact, register_secret, utc_timestamp
from validate_support import LOG_SCHEMA, ROOT, load_json

LOG_SH = ROOT / "scripts" / "operations" / "lib" / "log.sh"
VALIDATOR = jsonschema.Draft202012Validator(load_json(LOG_SCHEMA))
TRICKY = ['plain', 'quote " and backslash \\ and slash /', "new\nline\tand tab\rcr", "unicode 行情 ✓", "ctrl \x01\x1f end", ""]


def python_line(msg: str = "hello", level: str = "info", **fields) -> dict:
    stream = io.StringIO()
    Logger("test-component", level="debug", stream=stream).log(level, "test.event", msg, **fields)
    line = stream.getvalue()
    assert line.endswith("\n") and line.count("\n") == 1
    return json.loads(line)


def bash_lines(script: str, **env: str) -> list[str]:
    done = subprocess.run(["bash", "-c", f'set -euo pipefail; source "{LOG_SH}"; {script}'], capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", **env}, check=True)
    assert done.stdout == ""  # logs go to stderr only
    return done.stderr.splitlines()


def test_schema_is_valid():
    jsonschema.Draft202012Validator.check_schema(load_json(LOG_SCHEMA))


@pytest.mark.parametrize("msg", TRICKY)
def test_python_lines_match_the_schema(msg):
    record = python_line(msg, count=3, ratio=0.5, ok=True, none=None, items=[1, "a"], nested={"k": 1}, obj=object())
    VALIDATOR.validate(record)
    assert record["msg"] == msg and record["component"] == "test-component" and record["event"] == "test.event"
    assert record["count"] == 3 and record["ok"] is True and record["none"] is None and record["items"] == [1, "a"]


@pytest.mark.parametrize("level", log_mod.LEVELS)
def test_python_every_level(level):
    VALIDATOR.validate(python_line(level=level))


def test_python_reserved_keys_are_not_overwritten():
    record = python_line("real", msg_extra=1, **{"level_x": 2})
    assert record["msg"] == "real" and record["level"] == "info"


def test_timestamp_is_rfc3339_utc_with_millis():
    ts = utc_timestamp(dt.datetime(2026, 11, 27, 4, 47, 36, 123456, tzinfo=dt.timezone(dt.timedelta(hours=8))))
    assert ts == "2026-11-26T20:47:36.123Z"
    parsed = dt.datetime.fromisoformat(python_line()["ts"].replace("Z", "+00:00"))
    assert parsed.tzinfo is not None and parsed.utcoffset() == dt.timedelta(0)


def test_level_filter_and_unknown_level():
    stream = io.StringIO()
    logger = Logger("c", level="warning", stream=stream)
    logger.info("a.b", "hidden")
    logger.error("a.b", "shown")
    assert [json.loads(x)["msg"] for x in stream.getvalue().splitlines()] == ["shown"]
    with pytest.raises(ValueError, match="unknown log level"):
        Logger("c", level="loud")
    with pytest.raises(ValueError, match="unknown log format"):
        Logger("c", fmt="xml")


def test_text_format_for_people():
    stream = io.StringIO()
    Logger("worker", fmt="text", stream=stream).info("worker.login.ok", "logged in", profile="primary", n=2)
    line = stream.getvalue().rstrip("\n")
    assert line.split()[1:5] == ["INFO", "worker", "worker.login.ok", "logged"]
    assert line.endswith("profile=primary n=2")


def test_registered_secrets_are_redacted_everywhere():
    register_secret("Log-Sentinel-5e1f")
    record = python_line("pw is Log-Sentinel-5e1f", detail={"x": "Log-Sentinel-5e1f"})
    assert "Log-Sentinel-5e1f" not in json.dumps(record)
    assert record["msg"] == "pw is ***"
    assert redact("a Log-Sentinel-5e1f b") == "a *** b"
    register_secret("ab")  # too short to redact safely: ignored
    assert redact("ab") == "ab"


def test_configure_applies_to_existing_and_new_loggers():
    a = get_logger("cfg-test-a")
    try:
        configure(level="error", fmt="text")
        assert (a.level, a.fmt) == ("error", "text")
        assert get_logger("cfg-test-b").level == "error"
    finally:
        configure(level="info", fmt="json")


@pytest.mark.parametrize("msg", TRICKY)
def test_bash_lines_match_the_same_schema(msg):
    lines = bash_lines('feedops::log::info runbook.step.done "$MSG" mode=premarket count=3 ratio=0.25 neg=-1 '
                       'zero_padded=007 "spaced=a b" "Bad-Key=x" msg=ignored',
                       MSG=msg, FEEDOPS_LOG_COMPONENT="runbook")
    assert len(lines) == 1
    record = json.loads(lines[0])
    VALIDATOR.validate(record)
    expected = msg.replace("\x01", "").replace("\x1f", "")
    assert record["msg"] == expected
    assert record["mode"] == "premarket" and record["count"] == 3 and record["ratio"] == 0.25 and record["neg"] == -1
    assert record["zero_padded"] == "007" and record["spaced"] == "a b"
    assert "Bad-Key" not in record and record["component"] == "runbook"


@pytest.mark.parametrize("level", log_mod.LEVELS)
def test_bash_every_level_and_filter(level):
    lines = bash_lines(f"feedops::log::{level} a.b 'm'", FEEDOPS_LOG_LEVEL="debug")
    VALIDATOR.validate(json.loads(lines[0]))
    assert json.loads(lines[0])["level"] == level
    filtered = bash_lines(f"feedops::log::{level} a.b 'm'", FEEDOPS_LOG_LEVEL="critical")
    assert len(filtered) == (1 if level == "critical" else 0)


def test_bash_and_python_text_formats_line_up():
    stream = io.StringIO()
    Logger("runbook", fmt="text", stream=stream).warning("runbook.x", "m", k="v")
    py = stream.getvalue().split(" ", 1)[1].rstrip("\n")
    sh = bash_lines("feedops::log::warning runbook.x m k=v", FEEDOPS_LOG_FORMAT="text")[0].split(" ", 1)[1]
    assert sh == py


def test_bash_library_is_safe_to_source_twice():
    assert len(bash_lines(f'source "{LOG_SH}"; feedops::log::info a.b twice')) == 1
