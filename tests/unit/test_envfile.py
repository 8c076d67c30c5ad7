"""The strict env-file parser: every syntax error names the file, the line and the fix."""

from __future__ import annotations

import pytest

from feedops.envfile import EnvFileError, parse_env_file, parse_env_text


def test_accepted_syntax():
    text = """
# comment
   # indented comment
FEEDOPS_ENV=dev
export FEEDOPS_CHANNEL=sim
FEEDOPS_SINK_URL = file:var/feed
FEEDOPS_IMAGE_TAG=v1 # inline comment
FEEDOPS_SHARD='0/1'
FEEDOPS_LOG_LEVEL="info"  # after a quoted value
FEEDOPS_HOLIDAYS_FILE=
FEEDOPS_WORKER_URLS='http://a:1,$literal'
FEEDOPS_RUNTIME=a#b
"""
    with pytest.raises(EnvFileError):  # a space before '=' is rejected (compose and systemd disagree on it)
        parse_env_text(text)
    values = parse_env_text(text.replace("FEEDOPS_SINK_URL = file", "FEEDOPS_SINK_URL=file"))
    assert values == {
        "FEEDOPS_ENV": "dev", "FEEDOPS_CHANNEL": "sim", "FEEDOPS_SINK_URL": "file:var/feed", "FEEDOPS_IMAGE_TAG": "v1",
        "FEEDOPS_SHARD": "0/1", "FEEDOPS_LOG_LEVEL": "info", "FEEDOPS_HOLIDAYS_FILE": "",
        "FEEDOPS_WORKER_URLS": "http://a:1,$literal", "FEEDOPS_RUNTIME": "a#b",
    }


@pytest.mark.parametrize("line, fragment", [
    ("FEEDOPS_CHANNEL sim", "no '=' found"),
    ("feedops_channel=sim", "invalid variable name"),
    ("1ABC=x", "invalid variable name"),
    ("FEEDOPS_CHANNEL =sim", "space before '='"),
    ("FEEDOPS_CHANNEL='sim", "unterminated ' quote"),
    ('FEEDOPS_CHANNEL="sim', 'unterminated " quote'),
    ("FEEDOPS_CHANNEL='sim' extra", "unexpected text after the quoted value"),
    ("FEEDOPS_CHANNEL=$HOME", "quote or '$'"),
    ("FEEDOPS_CHANNEL=it's", "quote or '$'"),
])
def test_syntax_errors_name_line_and_fix(line, fragment):
    with pytest.raises(EnvFileError) as info:
        parse_env_text(f"# header\nFEEDOPS_ENV=dev\n{line}\n", "envs/x.env")
    err = info.value
    assert err.line_no == 3 and err.path == "envs/x.env" and fragment in err.reason
    assert str(err).startswith("envs/x.env:3: ")
    assert ";" in err.reason  # what is wrong; how to fix it


def test_duplicate_variable():
    with pytest.raises(EnvFileError, match="set twice"):
        parse_env_text("A=1\nA=2\n")


def test_file_errors(tmp_path):
    missing = tmp_path / "missing.env"
    with pytest.raises(EnvFileError, match="cannot read the file"):
        parse_env_file(missing)
    latin = tmp_path / "latin.env"
    latin.write_bytes(b"FEEDOPS_IMAGE_TAG=caf\xe9\n")
    with pytest.raises(EnvFileError, match="not UTF-8"):
        parse_env_file(latin)
    good = tmp_path / "good.env"
    good.write_text("FEEDOPS_ENV=prod\n")
    assert parse_env_file(good) == {"FEEDOPS_ENV": "prod"}
