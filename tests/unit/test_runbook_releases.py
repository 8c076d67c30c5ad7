"""feedops.runbook.releases: the release before the running one, --to by tag or digest, status, bad state.

Each test records releases the way the runbook does (``mark-good`` after a pre-market,
the image tag from ``FEEDOPS_IMAGE_TAG``, the configuration from the settings) and rolls
back through the helper's CLI (``rollback-apply``), in the native runtime. The compose
runtime's pull and restart are in tests/bats/start_live_env_compose.bats.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import test_runbook_state
from feedops import paths
from feedops.exitcodes import Runbook
from feedops.runbook import cli, procs, releases
from feedops.runbook.config import RunbookContext
from feedops.runbook.state import StateStore
from feedops.runbook.status import render_status

environ = test_runbook_state.environ  # the fixture: a private state dir and secrets
D1, D2 = "sha256:" + "1" * 64, "sha256:" + "2" * 64


def record(monkeypatch, tag: str, **settings: str) -> None:
    """One successful pre-market on ``tag`` with ``settings`` in the environment."""
    monkeypatch.setenv("FEEDOPS_IMAGE_TAG", tag)
    for key, value in settings.items():
        monkeypatch.setenv(key, value)
    assert cli.main(["--env", "dev", "mark-good", "--mode", "premarket"]) == Runbook.OK


def rollback(capsys, *args: str) -> tuple[int, dict[str, str]]:
    capsys.readouterr()
    rc = cli.main(["--env", "dev", "rollback-apply", *args])
    out = capsys.readouterr().out
    return rc, dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def running_tag() -> str:
    return releases.current(RunbookContext.load("dev")).tag


def test_two_releases_rollback_lands_on_the_earlier_with_its_snapshot(environ, monkeypatch, capsys):
    record(monkeypatch, "v1.4.1")
    record(monkeypatch, "v1.5.0", FEEDOPS_SUBSCRIBE_BATCH_SIZE="500")  # the release now running
    rc, plan = rollback(capsys, "--plan")
    assert rc == Runbook.OK and plan["TAG"] == "v1.4.1"
    assert not StateStore(Path(environ["FEEDOPS_STATE_DIR"])).path("pin.json").exists()  # --plan changes nothing
    rc, out = rollback(capsys)
    assert rc == Runbook.OK and out["TAG"] == "v1.4.1" and out["IMAGE_REF"] == "ghcr.io/feedops/feedops:v1.4.1"
    ctx = RunbookContext.load("dev")  # FEEDOPS_IMAGE_TAG=v1.5.0 and the batch size are still in the environment
    assert ctx.image_tag() == "v1.4.1" and ctx.feed.subscribe_batch_size == 1000
    assert releases.current(ctx).id == out["RELEASE"]
    status = render_status(ctx)
    marked = [line for line in status.splitlines() if line.startswith("  * ")]
    assert len(marked) == 1 and "v1.4.1" in marked[0], status
    block = status[status.index("  releases"):]
    assert block.index("v1.5.0") < block.index("v1.4.1")  # newest first
    # two releases: the earlier one is the oldest, there is nothing before it
    capsys.readouterr()
    assert cli.main(["--env", "dev", "rollback-apply"]) == Runbook.ROLLBACK_FAILED
    assert "is the oldest recorded" in capsys.readouterr().err


def test_three_releases_each_rollback_goes_one_further_back(environ, monkeypatch, capsys):
    for tag in ("v1.3.0", "v1.4.0", "v1.5.0"):
        record(monkeypatch, tag)
    assert running_tag() == "v1.5.0"
    rc, out = rollback(capsys)
    assert (rc, out["TAG"]) == (Runbook.OK, "v1.4.0")
    rc, out = rollback(capsys)  # from the rolled-back release, the one before it (not back to v1.5.0)
    assert (rc, out["TAG"]) == (Runbook.OK, "v1.3.0") and running_tag() == "v1.3.0"
    rc, _ = rollback(capsys)
    assert rc == Runbook.ROLLBACK_FAILED and running_tag() == "v1.3.0"
    rc, out = rollback(capsys, "--to", "v1.5.0")  # --to any recorded one, forwards too
    assert (rc, out["TAG"], running_tag()) == (Runbook.OK, "v1.5.0", "v1.5.0")
    kinds = [e["kind"] for e in StateStore(Path(environ["FEEDOPS_STATE_DIR"])).ledger()]
    assert kinds == ["release"] * 3 + ["rollback"] * 3


def test_recording_the_same_release_again_is_not_a_new_release(environ, monkeypatch, capsys):
    record(monkeypatch, "v1.4.1")
    record(monkeypatch, "v1.5.0")
    record(monkeypatch, "v1.5.0")  # every pre-market records what it started: the same release
    ctx = RunbookContext.load("dev")
    assert [r["tag"] for r in releases.recorded(ctx)] == ["v1.5.0", "v1.4.1"]
    rc, out = rollback(capsys)
    assert (rc, out["TAG"]) == (Runbook.OK, "v1.4.1")
    # the same tag with another configuration is another release (premarket --unpin, then on new settings)
    StateStore(Path(environ["FEEDOPS_STATE_DIR"])).clear_pin()
    record(monkeypatch, "v1.5.0", FEEDOPS_SUBSCRIBE_BATCH_SIZE="500")
    assert len(releases.recorded(RunbookContext.load("dev"))) == 3


def test_a_release_that_was_never_recorded_rolls_back_to_the_newest(environ, monkeypatch, capsys):
    """A pre-market whose health check failed started v1.5.0 but recorded nothing: its previous is v1.4.1."""
    record(monkeypatch, "v1.4.1")
    monkeypatch.setenv("FEEDOPS_IMAGE_TAG", "v1.5.0")
    assert "not recorded" in render_status(RunbookContext.load("dev"))
    rc, out = rollback(capsys)
    assert (rc, out["TAG"]) == (Runbook.OK, "v1.4.1")


def test_to_takes_a_tag_a_digest_or_both_and_only_recorded_releases(environ, monkeypatch, capsys):
    record(monkeypatch, f"v1.4.1@{D1}")
    record(monkeypatch, f"v1.5.0@{D2}")
    for to in (D1, f"v1.4.1@{D1}", "v1.4.1"):
        rc, out = rollback(capsys, "--to", to, "--plan")
        assert (rc, out["TAG"]) == (Runbook.OK, f"v1.4.1@{D1}"), to
        assert out["IMAGE_REF"] == f"ghcr.io/feedops/feedops:v1.4.1@{D1}"
    rc, out = rollback(capsys, "--to", out["RELEASE"][:8], "--plan")  # a release id (prefix) from status
    assert (rc, out["TAG"]) == (Runbook.OK, f"v1.4.1@{D1}")
    for gone in ("v1.3.9", f"v1.4.1@{D2}", "sha256:" + "3" * 64):  # a tag or digest never recorded here
        rc, _ = rollback(capsys, "--to", gone)
        assert rc == Runbook.ROLLBACK_FAILED, gone
    rc, _ = rollback(capsys, "--to", "v1.4.1@sha256:short")
    assert rc == Runbook.USAGE
    assert not StateStore(Path(environ["FEEDOPS_STATE_DIR"])).path("pin.json").exists()


def test_missing_or_corrupt_state_fails_before_anything_changes(environ, monkeypatch, capsys):
    assert rollback(capsys)[0] == Runbook.ROLLBACK_FAILED  # nothing recorded
    record(monkeypatch, "v1.4.1")
    record(monkeypatch, "v1.5.0")
    store = StateStore(Path(environ["FEEDOPS_STATE_DIR"]))
    older = releases.recorded(RunbookContext.load("dev"))[1]
    snap = store.path("snapshots", f"{older['snapshot']}.json")
    snap.write_text('{"id": ')
    assert rollback(capsys)[0] == Runbook.STATE_CORRUPT
    snap.unlink()
    capsys.readouterr()
    assert cli.main(["--env", "dev", "rollback-apply"]) == Runbook.ROLLBACK_FAILED
    assert "is missing" in capsys.readouterr().err
    ledger = store.path("ledger.json")
    ledger.write_text('{"entries": {}}')
    assert rollback(capsys)[0] == Runbook.STATE_CORRUPT
    assert not store.path("pin.json").exists() and not store.path("active-profile.json").exists()


def test_native_rollback_runs_the_recorded_revision_from_its_own_tree(environ, monkeypatch, capsys):
    """The checkout moved on (a later revision): rolling back exports the recorded revision's tree
    with git and the native runtime starts the sim and the worker from it."""
    head, _ = releases.git_revision()
    if head is None:
        pytest.skip("not a git checkout")
    record(monkeypatch, "latest")
    monkeypatch.setattr(releases, "git_revision", lambda root=paths.ROOT: ("f" * 40, False))  # the checkout moved on
    record(monkeypatch, "latest")
    rc, out = rollback(capsys)
    assert (rc, out["REVISION"]) == (Runbook.OK, head)
    ctx = RunbookContext.load("dev")
    tree = Path(environ["FEEDOPS_STATE_DIR"]) / "releases" / head
    assert releases.code_root(ctx) == tree and (tree / "scripts" / "operations" / "full_feed_subscription.py").is_file()
    comps = procs.worker_components(ctx, sys.executable) + procs.sim_components(ctx, sys.executable)
    run = ["env", f"PYTHONPATH={tree / 'lib'}", f"FEEDOPS_HOME={paths.ROOT}", sys.executable]
    assert comps and all(c.argv[:4] == run and c.argv[4].startswith(str(tree)) for c in comps)
    assert all(not c.env for c in comps)  # the supervisor keeping the program runs the checkout's code
    # what starts there runs that tree's code with the checkout's venv and settings paths
    probe = subprocess.run([*run, "-c", "import feedops, feedops.paths as p; print(feedops.__file__); print(p.ROOT)"],
                           env=ctx.child_environ(), capture_output=True, text=True, timeout=60)
    assert probe.stdout.split() == [str(tree / "lib" / "feedops" / "__init__.py"), str(paths.ROOT)], probe.stderr
    helped = subprocess.run([*comps[0].argv[:5], "--help"], env=ctx.child_environ(), capture_output=True, text=True, timeout=60)
    assert helped.returncode == 0 and "full_feed_subscription.py" in helped.stdout, helped.stderr
    # a revision the repository no longer has: ROLLBACK_FAILED, nothing pinned
    store = StateStore(Path(environ["FEEDOPS_STATE_DIR"]))
    store.clear_pin()
    entries = store.ledger()
    entries[0]["revision"] = "0" * 40
    store.path("ledger.json").write_text(json.dumps({"entries": entries}))
    capsys.readouterr()
    assert cli.main(["--env", "dev", "rollback-apply"]) == Runbook.ROLLBACK_FAILED
    assert "cannot be read from the repository" in capsys.readouterr().err
    assert store.pin() is None
