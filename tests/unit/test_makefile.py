"""The Makefile's contract: `make` alone is help, `make test` runs pytest and bats, `make premarket` bootstraps."""

from __future__ import annotations

import re
import subprocess

from validate_support import ROOT

MAKEFILE = (ROOT / "Makefile").read_text()


def make(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "-s", *args], cwd=ROOT, capture_output=True, text=True, timeout=120)


def documented_targets() -> list[str]:
    return re.findall(r"^([a-z-]+):.*## ", MAKEFILE, flags=re.M)


def test_make_alone_prints_help_listing_every_documented_target():
    done = make()
    assert done.returncode == 0, done.stderr
    listed = re.findall(r"^  ([a-z-]+) ", done.stdout, flags=re.M)
    assert listed == documented_targets()
    assert {"premarket", "test", "lint", "validate", "bootstrap"} <= set(listed)


def test_test_target_runs_pytest_then_bats():
    done = make("-n", "test")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "-m pytest" in out and "bats --recursive tests/bats" in out
    assert out.index("-m pytest") < out.index("bats --recursive")


def test_lint_runs_shellcheck_and_ruff():
    done = make("-n", "lint")
    assert done.returncode == 0, done.stderr
    assert "shellcheck -x scripts/operations/*.sh" in done.stdout and "ruff check" in done.stdout


def test_premarket_bootstraps_first():
    assert re.search(r"^premarket: bootstrap\b", MAKEFILE, flags=re.M)
    assert re.search(r"^bootstrap: .*var/secrets/\.generated", MAKEFILE, flags=re.M)
    assert "-m feedops.devsecrets var/secrets" in MAKEFILE
    assert "export LOCPATH" in MAKEFILE  # openctp-ctp needs the generated locale


def test_validate_target_runs_the_checklist():
    done = make("-n", "validate", "ENV=staging")
    assert "scripts/operations/validate_env.py --env staging" in done.stdout
