"""The one compiled module of feedops, the worker's hot path (the sink writer's line encoder and the pipeline's
batch helpers, :mod:`feedops.worker.compiled`): where it lives and how it is built.

``lib/feedops/worker/_jsonlines.c`` compiles to ``_jsonlines<EXT_SUFFIX>`` next to it. Three
builders, one set of flags (:data:`CFLAGS`):

* ``make bootstrap`` (``pip install -e .``, ``setup.py``) for a checkout;
* the image's build stage (the Dockerfile's ``gcc`` line; ``tests/integration/test_image_dependencies.py``
  replays it);
* :func:`ensure`, for a tree the runbook's native runtime runs from that was never bootstrapped:
  the tree of a revision a rollback exported (``git archive`` carries the source, not the
  module), or a checkout the runbook finds without it. It compiles with the running
  interpreter's headers, the interpreter the feed's programs run with.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sysconfig
import tempfile
from pathlib import Path

#: The source and the module, relative to a tree's root.
SOURCE = Path("lib/feedops/worker/_jsonlines.c")
CFLAGS = ("-O2", "-Wall", "-Werror")


class BuildError(Exception):
    """The module cannot be built (no compiler, no Python headers, a compile error)."""


def module_path(root: Path) -> Path:
    return root / SOURCE.with_name("_jsonlines" + sysconfig.get_config_var("EXT_SUFFIX"))


def ensure(root: Path, timeout: float = 300.0) -> bool:
    """Build ``root``'s module when it is missing or older than its source; True when it was built now.

    The compiler writes a temporary file that replaces the module in one rename, so a program
    starting meanwhile imports the old module or the new one, never half of one."""
    source, module = root / SOURCE, module_path(root)
    if not source.exists():  # a tree from before the compiled encoder: nothing to build
        return False
    if module.exists() and module.stat().st_mtime >= source.stat().st_mtime:
        return False
    compiler = shutil.which(os.environ.get("CC", "gcc"))
    if compiler is None:
        raise BuildError(f"no C compiler to build {module} (the worker's compiled hot path); fix: install gcc and "
                         "the Python headers (Debian: apt-get install gcc python3-dev), or run `make bootstrap` there")
    fd, partial = tempfile.mkstemp(prefix=".jsonlines.", suffix=".so", dir=module.parent)
    os.close(fd)
    try:
        done = subprocess.run([compiler, *CFLAGS, "-shared", "-fPIC", f"-I{sysconfig.get_path('include')}", str(source),
                               "-o", partial], capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            raise BuildError(f"building {module} failed ({compiler} exit {done.returncode}): "
                             f"{(done.stderr or done.stdout).strip()[-800:]}; fix: install the Python headers "
                             "(Debian: python3-dev) or run `make bootstrap` there")
        os.replace(partial, module)
    except subprocess.TimeoutExpired:
        raise BuildError(f"building {module} took more than {timeout:g}s") from None
    finally:
        if os.path.exists(partial):
            os.unlink(partial)
    return True
