"""validate_env: the pre-market configuration checklist (checks, report, push).

:mod:`.cli` is the command line (``feedops-validate``, scripts/operations/validate_env.py);
the other modules hold the logic and never print or exit.
"""

from . import checks, probes  # importing them registers the checklist: configuration checks, then probes
from .registry import CHECKS, CheckResult, CheckSpec, Context, check_ids
from .runner import CHECKER, Report, push_outcome, pushgateway_target, render_table, run_checklist

__all__ = ["CHECKS", "CHECKER", "CheckResult", "CheckSpec", "Context", "Report", "check_ids", "checks", "probes", "push_outcome",
           "pushgateway_target", "render_table", "run_checklist"]
