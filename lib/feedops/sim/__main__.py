"""``python -m feedops.sim``: run a ctp-sim front (see feedops.sim.cli)."""

from .cli import main

raise SystemExit(main())
