"""Releases in the ledger: what ran, what runs now, and the release before it.

A **release** is the code and the configuration together: the image reference
(``FEEDOPS_IMAGE`` and ``FEEDOPS_IMAGE_TAG``, digest included), the git revision of the
checkout, and the configuration snapshot (every non-secret setting). Its id is a hash of
those, so recording the same release again (every successful pre-market records the
one it started) does not make a new one. The compose runtime runs the image; the native
runtime runs the revision: when a rollback pins a revision other than the checkout's,
the components start from a copy of that revision's tree, ``<state>/releases/<rev>/``
(``git archive``), with the checkout's venv.

Releases are listed in the order they were first recorded, newest first. The *running*
release is the one the effective configuration (settings + pin) describes. ``rollback``
with no ``--to`` goes to the release recorded before the running one (or, when what runs
was never recorded, e.g. a pre-market that failed its health check, to the newest
recorded); ``--to`` picks a recorded release by id, tag, ``TAG@sha256:...`` or digest.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .. import buildext, paths
from ..exitcodes import Runbook
from ..release import parse_image_tag
from .config import RunbookContext, snapshot_values
from .state import StateError
from .step import StepFailed

#: ``--to`` values that mean "the release before the running one".
PREVIOUS = ("previous", "last-good")


class ReleaseError(Exception):
    """No usable release; ``code`` is the runbook exit code (ROLLBACK_FAILED or USAGE)."""

    def __init__(self, code: Runbook, message: str):
        super().__init__(message)
        self.code = code


def git_revision(root: Path = paths.ROOT) -> tuple[str | None, bool]:
    """(HEAD's commit, uncommitted changes?) of the checkout; (None, False) outside a git checkout."""
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "--verify", "HEAD"], capture_output=True,
                              text=True, timeout=30)
        if head.returncode != 0:
            return None, False
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None, False
    return head.stdout.strip(), bool(dirty.stdout.strip())


def release_id(image: str, tag: str, revision: str | None, values: dict[str, str]) -> str:
    """The id of a release: 12 hex digits of a hash over image, tag, revision and configuration."""
    blob = json.dumps({"image": image, "tag": tag, "revision": revision, "values": values}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


@dataclass
class Current:
    """The release the effective configuration describes (settings + pin)."""

    id: str
    image: str
    tag: str
    revision: str | None
    dirty: bool
    values: dict[str, str]


def current(ctx: RunbookContext) -> Current:
    """The running release: the pin's revision when a rollback pinned one, else the checkout's."""
    pinned = (ctx.pin or {}).get("revision")
    revision, dirty = (pinned, False) if pinned else git_revision()
    values = snapshot_values(ctx.settings)
    return Current(release_id(ctx.feed.image, ctx.image_tag(), revision, values), ctx.feed.image, ctx.image_tag(),
                   revision, dirty, values)


def recorded(ctx: RunbookContext) -> list[dict]:
    """The distinct releases of the ledger, newest first, in the order each was first recorded;
    each entry is the latest record of that release (its newest snapshot and profile)."""
    first: dict[str, int] = {}
    latest: dict[str, dict] = {}
    for index, entry in enumerate(ctx.state.ledger()):
        if entry.get("kind") != "release":
            continue
        rid = entry.get("release") or f"{entry.get('tag')}/{entry.get('snapshot')}"  # recorded before release ids
        first.setdefault(rid, index)
        latest[rid] = {**entry, "release": rid}
    return [latest[rid] for rid in sorted(first, key=first.__getitem__, reverse=True)]


def _names(releases: list[dict]) -> str:
    return ", ".join(f"{r['release']} ({r.get('tag')})" for r in releases[:5]) or "none"


def _matches(entry: dict, to: str) -> bool:
    if entry["release"].startswith(to) and len(to) >= 6:
        return True
    try:
        want_tag, want_digest = parse_image_tag(to)
        tag, digest = parse_image_tag(str(entry.get("tag", "")))
    except ValueError:
        return False
    if want_digest and digest != want_digest:
        return False
    return want_tag is None or want_tag == tag


def choose(ctx: RunbookContext, to: str) -> dict:
    """The release ``rollback --to`` names (``previous``: the release before the running one)."""
    releases = recorded(ctx)
    if not releases:
        raise ReleaseError(Runbook.ROLLBACK_FAILED, "no release recorded in the ledger: nothing to roll back to "
                                                    "(a successful premarket records one)")
    running = current(ctx).id
    if to in PREVIOUS:
        ids = [r["release"] for r in releases]
        if running not in ids:
            return releases[0]
        index = ids.index(running)
        if index + 1 >= len(releases):
            raise ReleaseError(Runbook.ROLLBACK_FAILED, f"the running release {running} ({releases[index].get('tag')}) "
                                                        "is the oldest recorded: there is no release before it")
        return releases[index + 1]
    if not any(r["release"].startswith(to) for r in releases):
        try:
            parse_image_tag(to)
        except ValueError as exc:
            raise ReleaseError(Runbook.USAGE, f"rollback --to: {exc}, a release id from `status`, or previous") from None
    for entry in releases:  # newest first: a tag recorded twice (two configurations) means its newest release
        if _matches(entry, to):
            return entry
    raise ReleaseError(Runbook.ROLLBACK_FAILED, f"no recorded release matches {to!r}; recorded (newest first): "
                                                f"{_names(releases)} (make status lists them all)")


def snapshot_of(ctx: RunbookContext, entry: dict) -> dict:
    """The configuration snapshot of a release: missing is ROLLBACK_FAILED, corrupt raises StateError (73)."""
    snap_id = entry.get("snapshot")
    if not snap_id or not ctx.state.path("snapshots", f"{snap_id}.json").exists():
        raise ReleaseError(Runbook.ROLLBACK_FAILED, f"the configuration snapshot {snap_id} of release {entry['release']} "
                                                    f"is missing from {ctx.state.path('snapshots')}: that release cannot "
                                                    "be restored; pick another with --to (make status lists them)")
    return ctx.state.snapshot(snap_id)


def tree(ctx: RunbookContext, revision: str) -> Path:
    """The directory the native runtime runs a revision from: ``<state>/releases/<rev>``, exported
    from git on first use (ROLLBACK_FAILED when the revision no longer exists in the repository)."""
    dest = ctx.state.path("releases", revision)
    if (dest / "scripts" / "operations").is_dir():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{revision[:12]}.", dir=dest.parent))
    try:
        archive = work / "tree.tar"
        proc = subprocess.run(["git", "-C", str(paths.ROOT), "archive", "--format=tar", f"--output={archive}", revision],
                              capture_output=True, text=True, timeout=300)
        if proc.returncode != 0:
            raise ReleaseError(Runbook.ROLLBACK_FAILED, f"revision {revision} cannot be read from the repository at "
                                                        f"{paths.ROOT} ({proc.stderr.strip() or proc.returncode}): fetch it "
                                                        "(git fetch origin) or pick another release with --to")
        with tarfile.open(archive) as tar:
            tar.extractall(work / "tree", filter="data")
        (work / "tree").rename(dest)
    except OSError as exc:
        raise StateError(f"cannot export revision {revision} into {dest}: {exc}") from None
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return dest


def code_root(ctx: RunbookContext) -> Path:
    """Where the native runtime runs the feed's programs from: the checkout, or the tree of the
    revision a rollback pinned; its compiled line encoder built first where it is missing
    (:func:`feedops.buildext.ensure`: an exported tree, a checkout never bootstrapped)."""
    if ctx.runtime != "native":
        return paths.ROOT
    revision = (ctx.pin or {}).get("revision")
    root = tree(ctx, revision) if revision and git_revision()[0] != revision else paths.ROOT
    try:
        buildext.ensure(root)
    except buildext.BuildError as exc:
        raise StepFailed(Runbook.DEPENDENCY_MISSING, str(exc)) from None
    return root


def code_environ(ctx: RunbookContext) -> dict[str, str]:
    """Environment of a program run from :func:`code_root`: its own ``lib`` first, settings paths
    still resolved against the checkout (``FEEDOPS_HOME``)."""
    root = code_root(ctx)
    if root == paths.ROOT:
        return {}
    return {"PYTHONPATH": str(root / "lib"), "FEEDOPS_HOME": str(paths.ROOT)}
