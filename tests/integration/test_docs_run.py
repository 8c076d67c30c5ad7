"""The runbook pages run: every selected command block of docs/ops (feedops.docrun) is
executed, in trading-day order, against one dev stack (native, ctp-sim) of its own.

The order: premarket, restart, failover (with the credential rotation), rollback, every
alert page's Diagnosis block while the feed runs, then shutdown. A block that exits
non-zero, or names a make target, repository file or feedops module that does not exist,
fails its test. Blocks marked ``<!-- not-run: reason -->`` are listed with their reason.
"""

from __future__ import annotations

import subprocess

import pytest

from conftest import ROOT
from feedops import docrun
from feedops.consumer import ReferenceConsumer, open_source
from feedops.drills import stack

pytestmark = pytest.mark.integration

TOKEN = "docSntl4k"  # the dev secrets start with it: no block's output may show it
BLOCKS = [b for page in docrun.pages() for b in docrun.extract(page)]
NEW_SECRETS = "/run/secrets-2026-12"  # the rotation page's example directory
GROUP = "docs-run"  # the reference consumer's group, which the Redis pages' <group> stands for


@pytest.fixture(scope="module")
def dev(tmp_path_factory, redis_server):
    base = tmp_path_factory.mktemp("docs-run")
    redis_url = redis_server.url.removesuffix("/0") + "/7"  # a database of its own on the session's Redis
    env = stack.environ(base, TOKEN, sink=redis_url)  # the sink production uses
    (base / "feed").mkdir()
    env["FEEDOPS_IMAGE_TAG"] = "v1.4.0"  # the release the rollback page goes back to
    # a rotation on the sim rotates to the same values: the running fronts check them
    new = stack.write_secrets(base / "secrets-new", TOKEN)
    replacements = {
        "/opt/feedops": str(ROOT),
        "var/state/": env["FEEDOPS_STATE_DIR"] + "/",
        NEW_SECRETS: str(new),
        # the dev defaults the pages show (envs/dev.env, .env.example) -> this stack's ports
        "127.0.0.1:9108": env["FEEDOPS_WORKER_LISTEN"],
        "127.0.0.1:9090": env["FEEDOPS_PROMETHEUS_URL"].removeprefix("http://"),
        "127.0.0.1:9093": env["FEEDOPS_ALERTMANAGER_URL"].removeprefix("http://"),
        "127.0.0.1:9091": env["FEEDOPS_PUSHGATEWAY_URL"].removeprefix("http://"),
        "redis://127.0.0.1:6379/0": redis_url,
        "var/feed": str(base / "feed"),
        "<group>": GROUP,
    }
    # a subscriber reads and acknowledges (the Redis pages inspect its group; the consumer lag stays low)
    consumer = ReferenceConsumer(open_source(redis_url, group=GROUP, start="all")).start()
    yield docrun.Stack(ROOT, env, replacements)
    stack.stop(env)
    consumer.stop()


def _before_rollback(dev: docrun.Stack) -> None:
    """The rollback page needs a release before the running one: start v1.5.0 on top of v1.4.0."""
    env = {**dev.environ, "FEEDOPS_IMAGE_TAG": "v1.5.0"}
    proc = subprocess.run(["make", "premarket", "ARGS=--unpin"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    dev.environ["FEEDOPS_IMAGE_TAG"] = "v1.5.0"


PRECONDITIONS = {"procedures/rollback.md": _before_rollback}  # run before the page's first block
FIRST_OF_PAGE = {b.page: b for b in reversed(BLOCKS)}


@pytest.mark.parametrize("block", BLOCKS, ids=[b.where.removeprefix("docs/ops/") for b in BLOCKS])
def test_block_runs(block: docrun.Block, dev):
    if block.not_run is not None:
        assert not docrun.problems(block), f"{block.where}: a not-run block still names what exists"
        pytest.skip(f"not-run: {block.not_run}")
    if block.page in PRECONDITIONS and FIRST_OF_PAGE[block.page] is block:
        PRECONDITIONS[block.page](dev)
    result = docrun.run(block, dev)
    assert TOKEN not in result.output, f"{block.where}: a secret reached the output"
    assert result.ok, docrun.explain(result)

