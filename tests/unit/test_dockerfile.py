"""The Dockerfile is hadolint clean and hardened: base by digest, locked hashed dependencies
installed before the code, non-root, OCI labels, a HEALTHCHECK; the lock covers pyproject."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

from validate_support import ROOT

DOCKERFILE = ROOT / "Dockerfile"
TEXT = DOCKERFILE.read_text()
HADOLINT = Path(sys.executable).with_name("hadolint")


def hadolint(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(HADOLINT), "--no-color", str(path)], capture_output=True, text=True, timeout=60)


def test_hadolint_clean():
    done = hadolint(DOCKERFILE)
    assert done.returncode == 0, done.stdout + done.stderr


def test_hadolint_flags_an_unpinned_image(tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install redis\n")
    done = hadolint(bad)
    assert done.returncode != 0 and "DL3007" in done.stdout


def test_every_ignored_rule_says_why():
    for line in TEXT.splitlines():
        if "hadolint ignore" in line:
            assert re.search(r"hadolint ignore=\S+\s+#\s*\S.{10,}", line), f"an ignore without a reason: {line}"


def test_base_image_pinned_by_digest():
    froms = re.findall(r"^FROM (\S+)", TEXT, re.M)
    assert froms and all(re.fullmatch(r"[\w./:-]+@sha256:[0-9a-f]{64}", f) for f in froms), froms


def test_locked_dependencies_installed_before_the_code():
    install = TEXT.index("--require-hashes --requirement requirements.lock")
    assert TEXT.index("COPY requirements.lock") < install < TEXT.index("COPY lib ./lib")


def test_non_root_labels_and_healthcheck():
    assert re.search(r"^USER 10001", TEXT, re.M)
    for key in ("source", "revision", "version"):
        assert f"org.opencontainers.image.{key}=" in TEXT, key
    assert re.search(r"^HEALTHCHECK .*\n\s+CMD .*/livez", TEXT, re.M)


def test_lock_pins_every_dependency_with_hashes():
    lock = (ROOT / "requirements.lock").read_text()
    pinned = {m.group(1).lower().replace("_", "-") for m in re.finditer(r"^([A-Za-z0-9_.-]+)==\S+", lock, re.M)}
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    names = {re.match(r"[A-Za-z0-9_.-]+", d).group(0).lower().replace("_", "-") for d in deps}
    assert names <= pinned, f"not in requirements.lock (re-run the pip-compile line of its header): {names - pinned}"
    for block in re.split(r"\n(?=[A-Za-z0-9])", lock.split("\n\n", 1)[-1].strip()):
        if "==" in block:
            assert "--hash=sha256:" in block, block.splitlines()[0]
    assert "file://" not in lock and "--find-links" not in lock  # no index of the machine that locked it
