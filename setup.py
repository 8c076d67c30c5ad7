"""The one compiled part of feedops: the sink writer's line encoder (lib/feedops/worker/_jsonlines.c).

Everything else is in pyproject.toml. ``pip install -e .`` (``make bootstrap``) builds the extension
next to its source, where the code runs from (``lib/``, as in the image: see the Dockerfile's build stage).
"""

import sys

from setuptools import Extension, setup

sys.path.insert(0, "lib")
from feedops.buildext import CFLAGS, SOURCE

setup(ext_modules=[Extension("feedops.worker._jsonlines", [str(SOURCE)], extra_compile_args=list(CFLAGS))])
