"""The one compiled part of feedops: the worker's hot path, the sink writer's line encoder and the pipeline's batch
helpers (lib/feedops/worker/_jsonlines.c; feedops/worker/compiled.py says what it holds).

Everything else is in pyproject.toml. ``pip install -e .`` (``make bootstrap``) builds the extension
next to its source, where the code runs from (``lib/``, as in the image: see the Dockerfile's build stage).
"""

import sys

from setuptools import Extension, setup

sys.path.insert(0, "lib")
from feedops.buildext import CFLAGS, SOURCE

setup(ext_modules=[Extension("feedops.worker._jsonlines", [str(SOURCE)], extra_compile_args=list(CFLAGS))])
