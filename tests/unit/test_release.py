"""feedops.release: the forms FEEDOPS_IMAGE_TAG takes, the compose reference, the release record."""

from __future__ import annotations

import json

import pytest

from feedops import release

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize("value, tag, digest", [
    ("latest", "latest", None),
    ("v1.5.0", "v1.5.0", None),
    (f"v1.5.0@{DIGEST}", "v1.5.0", DIGEST),
    (DIGEST, None, DIGEST),
])
def test_forms(value, tag, digest):
    assert release.parse_image_tag(value) == (tag, digest)
    assert release.is_pinned(value) is (digest is not None)


@pytest.mark.parametrize("value", ["", "v1@sha256:abc", "v1@md5:" + "a" * 32, "-bad", "a b", f"{DIGEST}@{DIGEST}",
                                   "sha256:" + "AB" * 32])
def test_invalid_forms_name_the_valid_ones(value):
    with pytest.raises(ValueError, match="TAG@sha256"):
        release.parse_image_tag(value)


def test_image_ref():
    image = "ghcr.io/acme/feedops"
    assert release.image_ref(image, "latest") == f"{image}:latest"
    assert release.image_ref(image, f"v1.5.0@{DIGEST}") == f"{image}:v1.5.0@{DIGEST}"
    assert release.image_ref(image, DIGEST) == f"{image}@{DIGEST}"


def test_record_cli_writes_json_and_summary(tmp_path, capsys):
    out, summary = tmp_path / "release-record.json", tmp_path / "summary.md"
    rc = release.main(["record", "--how", "promoted", "--image", "ghcr.io/acme/feedops", "--digest", DIGEST,
                       "--commit", "c0ffee", "--ref", "refs/tags/v1.5.0", "--tag", "c0ffee", "--tag", "v1.5.0",
                       "--out", str(out), "--summary", str(summary)])
    assert rc == 0
    rec = json.loads(out.read_text())
    assert rec["ref"] == f"ghcr.io/acme/feedops@{DIGEST}" and rec["image_tag"] == f"v1.5.0@{DIGEST}"
    assert rec["tags"] == ["c0ffee", "v1.5.0"] and rec["how"] == "promoted"
    text = summary.read_text()
    assert DIGEST in text and f"FEEDOPS_IMAGE_TAG=v1.5.0@{DIGEST} scripts/operations/start_live_env.sh premarket" in text


def test_record_of_a_main_build_deploys_the_commit_tag(tmp_path):
    rec = release.record("ghcr.io/acme/feedops", DIGEST, "c0ffee", "refs/heads/main", ["c0ffee"], "built")
    assert rec["image_tag"] == f"c0ffee@{DIGEST}"


def test_record_refuses_a_non_digest(tmp_path, capsys):
    rc = release.main(["record", "--how", "built", "--image", "i", "--digest", "latest", "--commit", "c", "--ref", "r",
                       "--out", str(tmp_path / "x.json")])
    assert rc == 2 and "not a sha256 digest" in capsys.readouterr().err and not (tmp_path / "x.json").exists()


def test_check_cli(capsys):
    assert release.main(["check", f"v1@{DIGEST}"]) == 0
    assert release.main(["check", "latest"]) == 1 and "floating" in capsys.readouterr().out
    assert release.main(["check", "v1@sha256:x"]) == 2
