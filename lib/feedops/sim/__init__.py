"""ctp-sim: a CTP-compatible market simulator with fault injection.

* :mod:`feedops.sim.mdapi` / :mod:`feedops.sim.tdapi`: drop-in replacements for
  ``openctp_ctp.mdapi`` / ``openctp_ctp.tdapi`` (same classes, methods, callbacks);
* :mod:`feedops.sim.server`: the front process (``python -m feedops.sim``);
* :mod:`feedops.sim.universe`: the deterministic instrument universe.

See docs/ops/ctp-sim.md.
"""

API_VERSION = "v6.7.11_20250617 (ctp-sim)"
