"""The image's dependency layer, replayed outside Docker: the locked dependencies install into a
fresh venv exactly as the Dockerfile installs them (hashes required, no resolver), and every
CLI answers --help there with the code on PYTHONPATH as in the image.

Takes about a minute (a venv and some 60 MB of wheels from the package index).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from feedops.buildext import CFLAGS
from validate_support import ROOT, clean_environ

LOCK = ROOT / "requirements.lock"
DOCKERFILE = (ROOT / "Dockerfile").read_text()
SCRIPTS = sorted((ROOT / "scripts" / "operations").glob("[!_]*.py"))  # _package.py: what the shims share, not a CLI
#: every `python -m` entry point of the package
MODULES = ["feedops.runbook", "feedops.sim", "feedops.monitoring.rules", "feedops.monitoring.alertmanager",
           "feedops.monitoring.prometheus_config", "feedops.monitoring.dashboards", "feedops.release"]


def _install_command() -> list[str]:
    """The Dockerfile's `pip install` of the lock, word for word."""
    match = re.search(r"^RUN (pip install [^\n]*--require-hashes[^\n]*)$", DOCKERFILE, re.M)
    assert match, "the Dockerfile no longer installs the lock with --require-hashes"
    return match.group(1).split()


@pytest.fixture(scope="module")
def image_venv(tmp_path_factory) -> Path:
    venv = tmp_path_factory.mktemp("image-venv")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    command = _install_command()
    done = subprocess.run([str(python), "-m", *command], cwd=ROOT, capture_output=True, text=True,
                          timeout=900, env={**os.environ, "PIP_NO_CACHE_DIR": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return python


def image_env() -> dict[str, str]:
    return clean_environ(PYTHONPATH=str(ROOT / "lib"), FEEDOPS_HOME=str(ROOT), PYTHONDONTWRITEBYTECODE="1")


@pytest.mark.integration
def test_locked_dependencies_are_consistent(image_venv):
    done = subprocess.run([str(image_venv), "-m", "pip", "check"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.integration
@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_every_script_answers_help(image_venv, script):
    done = subprocess.run([str(image_venv), str(script), "--help"], env=image_env(), capture_output=True, text=True,
                          timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "usage:" in done.stdout.lower()


@pytest.mark.integration
@pytest.mark.parametrize("module", MODULES)
def test_every_module_cli_answers_help(image_venv, module):
    done = subprocess.run([str(image_venv), "-m", module, "--help"], env=image_env(), capture_output=True, text=True,
                          timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "usage:" in done.stdout.lower()


@pytest.mark.integration
def test_numpy_size_is_what_the_dockerfile_says(image_venv):
    """The Dockerfile keeps numpy (the worker uses it too) and states its installed size."""
    site = Path(subprocess.run([str(image_venv), "-c", "import numpy, os; print(os.path.dirname(os.path.dirname(numpy.__file__)))"],
                               capture_output=True, text=True, check=True, timeout=60).stdout.strip())
    size = sum(f.stat().st_size for d in site.glob("numpy*") for f in (d.rglob("*") if d.is_dir() else [d]) if f.is_file())
    stated = int(re.search(r"numpy stays:.*?about (\d+) MB installed", DOCKERFILE, re.S).group(1))
    assert abs(size / 1e6 - stated) <= 0.25 * stated, f"numpy installs {size / 1e6:.0f} MB, the Dockerfile says {stated} MB"


def _build_stage_compile() -> str:
    """The build stage's gcc command (continuation lines joined), word for word."""
    match = re.search(r"^RUN (gcc (?:[^\n]*\\\n)*[^\n]*)$", DOCKERFILE, re.M)
    assert match, "the Dockerfile's build stage no longer compiles lib/feedops/worker/_jsonlines.c with gcc"
    return match.group(1).replace("\\\n", " ")


@pytest.mark.integration
def test_the_build_stage_compiles_the_line_encoder_the_image_imports(image_venv, tmp_path):
    """The build stage, replayed: its gcc command, on the source it copies, builds a module the image's Python
    imports and that writes a double as the encoder expects."""
    shutil.copy(ROOT / "lib" / "feedops" / "worker" / "_jsonlines.c", tmp_path)
    command = _build_stage_compile()
    assert all(flag in command.split() for flag in CFLAGS), f"the image compiles with other flags than {CFLAGS}"
    done = subprocess.run(["sh", "-c", command], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "PATH": f"{image_venv.parent}:{os.environ['PATH']}"})
    assert done.returncode == 0, done.stderr[-3000:]
    built = [p.name for p in tmp_path.glob("_jsonlines.*.so")]
    assert len(built) == 1, built
    check = "import _jsonlines; assert _jsonlines.double_text(3036.2) == b'3036.2', _jsonlines.double_text(3036.2)"
    done = subprocess.run([str(image_venv), "-c", check], cwd=tmp_path, capture_output=True, text=True, timeout=60,
                          env={"PATH": os.environ["PATH"]})
    assert done.returncode == 0, done.stderr[-2000:]
