"""python -m feedops.devsecrets DIR: the dev credentials make bootstrap writes."""

from __future__ import annotations

import json
import stat
import subprocess

from feedops.devsecrets import DEV_SECRET_PREFIX, MARKER, ensure_dev_secrets, secret_names
from feedops.exitcodes import Check
from feedops.settings import CTP_FIELD_SIZES, load_settings
from feedops.validate.checks import is_placeholder_secret
from validate_support import PYTHON, SECRET_VARS, clean_environ


def run_module(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([PYTHON, "-m", "feedops.devsecrets", *args], capture_output=True, text=True, env=clean_environ(), timeout=60)


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_creates_private_directory_and_files(tmp_path):
    target = tmp_path / "var" / "secrets"
    proc = run_module(str(target))
    assert proc.returncode == 0, proc.stderr
    assert mode(target) == 0o700
    assert sorted(p.name for p in target.iterdir()) == sorted([*SECRET_VARS, MARKER])
    values = set()
    for name in SECRET_VARS:
        assert mode(target / name) == 0o600
        value = (target / name).read_text()
        assert value.startswith(DEV_SECRET_PREFIX) and len(value) == 16 and value == value.strip()
        values.add(value)
        assert value not in proc.stdout + proc.stderr  # the log line names files, never values
    assert len(values) == 4
    assert secret_names() == sorted(SECRET_VARS)


def test_generated_values_fit_ctp_field_sizes_and_load(tmp_path):
    ensure_dev_secrets(tmp_path / "s")
    settings = load_settings("dev", environ={"FEEDOPS_SECRETS_DIR": str(tmp_path / "s")}, root=tmp_path)
    for profile in (settings.primary, settings.backup):
        assert len(profile.secret_value("auth_code")) <= CTP_FIELD_SIZES["auth_code"]
        assert len(profile.secret_value("password")) <= CTP_FIELD_SIZES["password"]


def test_never_overwrites_and_fills_gaps(tmp_path):
    target = tmp_path / "secrets"
    ensure_dev_secrets(target)
    before = {name: (target / name).read_text() for name in SECRET_VARS}
    (target / "CTP_BACKUP_PASSWORD").unlink()
    (target / "CTP_PRIMARY_PASSWORD").write_text("operator-chosen")
    assert ensure_dev_secrets(target) == ["CTP_BACKUP_PASSWORD"]
    assert (target / "CTP_PRIMARY_PASSWORD").read_text() == "operator-chosen"
    assert (target / "CTP_PRIMARY_AUTH_CODE").read_text() == before["CTP_PRIMARY_AUTH_CODE"]
    assert (target / "CTP_BACKUP_PASSWORD").read_text() != before["CTP_BACKUP_PASSWORD"]


def test_settings_read_them_and_they_are_dev_only(tmp_path):
    target = tmp_path / "secrets"
    ensure_dev_secrets(target)
    settings = load_settings("dev", environ={"FEEDOPS_SECRETS_DIR": str(target)}, root=tmp_path)
    value = settings.primary.secret_value("password")
    assert value == (target / "CTP_PRIMARY_PASSWORD").read_text()
    assert not is_placeholder_secret(value, "dev") and is_placeholder_secret(value, "prod")


def test_log_line_is_structured(tmp_path):
    proc = run_module(str(tmp_path / "s"))
    assert "devsecrets.ready" in proc.stderr and "4 generated" in proc.stderr
    proc = run_module(str(tmp_path / "s"))
    assert "0 generated, 4 kept" in proc.stderr


def test_errors_exit_3_with_one_line(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    for args in ([str(blocker)], [], ["--help"], [str(blocker / "sub")]):
        proc = run_module(*args)
        assert proc.returncode == Check.UNKNOWN, (args, proc.stderr)
        assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    assert json.dumps(blocker.read_text()) == '"x"'  # untouched
