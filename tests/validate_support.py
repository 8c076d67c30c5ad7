"""Helpers for the settings and validate_env tests (importable: tests/ is on sys.path via conftest).

Every test builds its own clean environment: no FEEDOPS_*/CTP_* variable leaks in
from the caller, secrets come from a temporary secrets directory, the flow
directory is temporary. Nothing here fakes a result: the CLI runs for real.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from clock_support import child_environ

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
SCRIPT = ROOT / "scripts" / "operations" / "validate_env.py"
REPORT_SCHEMA = ROOT / "lib" / "feedops" / "schemas" / "validate-report.schema.json"
LOG_SCHEMA = ROOT / "lib" / "feedops" / "schemas" / "log-line.schema.json"
#: staging and prod refuse a floating image tag (validate_env image.pinned): their test configs run this one
PINNED_IMAGE_TAG = "v1.5.0@sha256:" + "5e" * 32
SECRET_VARS = ("CTP_PRIMARY_PASSWORD", "CTP_PRIMARY_AUTH_CODE", "CTP_BACKUP_PASSWORD", "CTP_BACKUP_AUTH_CODE")
#: Distinctive values that must never show up in any output.
SENTINEL_PASSWORD = "S3ntinel-PW-7f3a9c0d"
SENTINEL_AUTH_CODE = "S3ntl-AC-2b8d41e"  # 16 characters: CTP's AuthCode size


def clean_environ(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in child_environ(("FEEDOPS_", "CTP_PRIMARY_", "CTP_BACKUP_")).items() if k != "LOCPATH"}
    env.update(extra)
    return env


def write_secrets(directory: Path, values: dict[str, str] | None = None) -> Path:
    """A secrets directory with one (non-placeholder) file per secret; ``values`` overrides some."""
    directory.mkdir(parents=True, exist_ok=True)
    for index, var in enumerate(SECRET_VARS):
        (directory / var).write_text((values or {}).get(var, f"Zq81xv-{index}-tst") + "\n")
    return directory


def dev_environ(tmp_path: Path, **extra: str) -> dict[str, str]:
    """A complete, passing dev environment rooted in ``tmp_path``. The native monitoring stack
    envs/dev.env enables is off unless ``extra`` turns it on (nothing here pushes to a dev stack)."""
    secrets = write_secrets(tmp_path / "secrets")
    monitoring_off = {f"FEEDOPS_{name}_ENABLED": "false" for name in ("PROMETHEUS", "ALERTMANAGER", "PUSHGATEWAY")}
    return clean_environ(**{"FEEDOPS_SECRETS_DIR": str(secrets), "FEEDOPS_FLOW_DIR": str(tmp_path / "flow"),
                            **monitoring_off, **extra})


def run_validate(args: list[str], env: dict[str, str], *, prefix: list[str] | None = None,
                 timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([*(prefix or []), PYTHON, str(SCRIPT), *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def load_json(path: Path) -> dict:
    return json.loads(path.read_text())


def validate_report(text: str) -> dict:
    import jsonschema

    report = json.loads(text)
    jsonschema.validate(report, load_json(REPORT_SCHEMA))
    return report


def check(report: dict, check_id: str) -> dict:
    return next(c for c in report["checks"] if c["id"] == check_id)


def assert_clean_output(proc: subprocess.CompletedProcess, *secrets: str) -> None:
    """No traceback and no secret value anywhere in stdout or stderr."""
    both = proc.stdout + proc.stderr
    assert "Traceback" not in both, both
    for secret in secrets:
        assert secret not in both, f"secret value leaked into the output:\n{both}"
