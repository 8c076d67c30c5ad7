"""Releases by digest: what ``FEEDOPS_IMAGE_TAG`` may name, and the release record CI writes.

``FEEDOPS_IMAGE_TAG`` takes one of three forms (docs/ops/releases.md):

* ``TAG`` (``latest``, ``v1.5.0``, a commit SHA): a *floating* reference, the registry may
  move it; dev may run it, staging and prod refuse it (validate_env ``image.pinned``);
* ``TAG@sha256:<64 hex>``: the tag for people, the digest for the engine (it pulls the
  digest and ignores the tag);
* ``sha256:<64 hex>``: the digest alone.

:func:`image_ref` makes the reference docker compose runs (``IMAGE:TAG``, ``IMAGE:TAG@DIGEST``
or ``IMAGE@DIGEST``). The release record (``python -m feedops.release record``) is the JSON
file and job summary CI writes when it pushes or re-tags an image: the digest is what
staging and prod deploy. Standard library only: CI runs it before any install.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import re
import sys
from pathlib import Path

TAG_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
DIGEST_RE = re.compile(r"sha256:[0-9a-f]{64}")
FORMS = "TAG@sha256:<64 hex digits> (pinned), sha256:<64 hex digits> (pinned) or TAG (floating)"


def parse_image_tag(value: str) -> tuple[str | None, str | None]:
    """(tag, digest) of a ``FEEDOPS_IMAGE_TAG`` value; ValueError naming the forms when it is none of them."""
    text = value.strip()
    tag, sep, digest = text.partition("@")
    if not sep and DIGEST_RE.fullmatch(text):
        return None, text
    if TAG_RE.fullmatch(tag) and (not sep or DIGEST_RE.fullmatch(digest)):
        return tag, digest or None
    raise ValueError(f"{value!r} is not an image tag or digest; use {FORMS}")


def is_pinned(value: str) -> bool:
    """True when the value names a digest (the same bytes wherever it runs)."""
    return parse_image_tag(value)[1] is not None


def image_ref(image: str, value: str) -> str:
    """The reference docker compose runs for repository ``image`` and a ``FEEDOPS_IMAGE_TAG`` value."""
    tag, digest = parse_image_tag(value)
    return f"{image}{':' + tag if tag else ''}{'@' + digest if digest else ''}"


def record(image: str, digest: str, commit: str, ref: str, tags: list[str], how: str) -> dict:
    """The release record of one pushed (``how`` = built) or re-tagged (``how`` = promoted) image."""
    if not DIGEST_RE.fullmatch(digest):
        raise ValueError(f"{digest!r} is not a sha256 digest (sha256:<64 hex digits>)")
    version = ref.removeprefix("refs/tags/").removeprefix("refs/heads/")
    return {"image": image, "digest": digest, "ref": f"{image}@{digest}", "commit": commit, "git_ref": ref, "how": how,
            "tags": tags, "image_tag": f"{version if ref.startswith('refs/tags/') else commit}@{digest}",
            "recorded_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}


def summary(rec: dict) -> str:
    """Markdown for the job summary: the digest and the exact commands to deploy it."""
    lines = [f"## Release record ({rec['how']})", "", "| field | value |", "|---|---|"]
    lines += [f"| {key} | `{rec[key]}` |" for key in ("ref", "digest", "commit", "git_ref")]
    lines += [f"| tags | {', '.join(f'`{t}`' for t in rec['tags'])} |", "",
              "Deploy exactly this image (docs/ops/releases.md):", "", "```bash",
              f"FEEDOPS_IMAGE_TAG={rec['image_tag']} scripts/operations/start_live_env.sh premarket --env staging",
              "```", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m feedops.release", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("record", help="write the release record (JSON) and append it to a job summary")
    p.add_argument("--image", required=True, help="repository, e.g. ghcr.io/OWNER/feedops")
    p.add_argument("--digest", required=True, help="sha256:... as build-push or imagetools reported it")
    p.add_argument("--commit", required=True)
    p.add_argument("--ref", required=True, help="the git ref built or tagged (refs/heads/main, refs/tags/v1.5.0)")
    p.add_argument("--tag", action="append", default=[], help="an image tag pointing at the digest (repeatable)")
    p.add_argument("--how", choices=("built", "promoted"), required=True)
    p.add_argument("--out", type=Path, required=True, help="the JSON file to write (attached to the run)")
    p.add_argument("--summary", type=Path, help="file to append the markdown to ($GITHUB_STEP_SUMMARY)")
    p = sub.add_parser("check", help="exit 0 when a FEEDOPS_IMAGE_TAG value is pinned by digest, 1 when it floats, 2 when invalid")
    p.add_argument("value")
    args = parser.parse_args(argv)
    try:
        if args.command == "check":
            pinned = is_pinned(args.value)
            print("pinned" if pinned else f"floating: {args.value!r} names no digest; use {FORMS}")
            return 0 if pinned else 1
        rec = record(args.image, args.digest, args.commit, args.ref, args.tag, args.how)
    except ValueError as exc:
        print(f"release: {exc}", file=sys.stderr)
        return 2
    args.out.write_text(json.dumps(rec, indent=2) + "\n", encoding="utf-8")
    if args.summary:
        with args.summary.open("a", encoding="utf-8") as fh:
            fh.write(summary(rec))
    print(json.dumps(rec))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
