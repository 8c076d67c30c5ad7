"""The worker's compiled module, imported here once for the modules that use it.

``lib/feedops/worker/_jsonlines.c`` (named for its first part, the sink writer's line encoder)
also holds the pipeline's batch helpers: the instrument ids (``IdTable``), grouping a batch's
structs by key (``group``) and copying their fields into the records (``copy_fields``).
``make bootstrap`` builds it (``pip install -e .``; the image's build stage and
:mod:`feedops.buildext` use the same flags).
"""

from __future__ import annotations

try:
    from . import _jsonlines
except ImportError as exc:  # pragma: no cover - a checkout that was never bootstrapped
    raise ImportError(f"feedops.worker._jsonlines (the worker's compiled module) is not built ({exc}); fix: run "
                      "`make bootstrap` (pip install -e . builds it; needs gcc and the Python headers)") from exc

__all__ = ["_jsonlines"]
