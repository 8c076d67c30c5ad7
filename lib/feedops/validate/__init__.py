"""validate_env: the pre-market configuration checklist (checks, report, push).

``scripts/operations/validate_env.py`` is the command line; this package holds the
logic and never prints or exits.
"""

from . import checks, probes  # importing them registers the checklist: configuration checks, then probes
from .registry import CHECKS, CheckResult, CheckSpec, Context, check_ids
from .runner import CHECKER, Report, push_outcome, pushgateway_target, render_table, run_checklist

__all__ = ["CHECKS", "CHECKER", "CheckResult", "CheckSpec", "Context", "Report", "check_ids", "checks", "probes", "push_outcome",
           "pushgateway_target", "render_table", "run_checklist"]
