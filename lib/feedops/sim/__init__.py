"""ctp-sim: a CTP-compatible market simulator with fault injection.

* :mod:`feedops.sim.mdapi` / :mod:`feedops.sim.tdapi`: drop-in replacements for
  ``openctp_ctp.mdapi`` / ``openctp_ctp.tdapi`` (same classes, methods, callbacks);
* :mod:`feedops.sim.server`: the front process (``python -m feedops.sim``): lifecycle,
  sessions, faults, the tick loop; its parts are :mod:`feedops.sim.config` (options, faults,
  credentials), :mod:`feedops.sim.session` (one connection), :mod:`feedops.sim.handlers`
  (what each request does) and :mod:`feedops.sim.market` (prices, dates, trading phases,
  replay history);
* :mod:`feedops.sim.universe`: the deterministic instrument universe.

See docs/ops/ctp-sim.md.
"""

API_VERSION = "v6.7.11_20250617 (ctp-sim)"
