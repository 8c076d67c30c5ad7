"""GitHub Actions workflows are valid against the published workflow schema."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CHECK = Path(sys.executable).with_name("check-jsonschema")


def _check(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(CHECK), "--builtin-schema", "vendor.github-workflows", str(path)],
                          capture_output=True, text=True)


def test_every_workflow_matches_the_schema():
    workflows = sorted((ROOT / ".github/workflows").glob("*.yml"))
    assert workflows, "no workflow found"
    for wf in workflows:
        result = _check(wf)
        assert result.returncode == 0, f"{wf.name}: {result.stdout}{result.stderr}"


def test_schema_check_rejects_a_broken_workflow(tmp_path):
    bad = tmp_path / "bad.yml"
    bad.write_text("name: x\non: push\njobs:\n  t:\n    steps: []\n")  # no runs-on
    assert _check(bad).returncode != 0


def test_ci_workflow_runs_the_same_ci_script_and_pushes_to_ghcr():
    text = (ROOT / ".github/workflows/ci.yml").read_text()
    assert "bash .ci/run" in text
    assert "registry: ghcr.io" in text and "needs: test" in text
