"""Drills: the fault matrix (``make drills``) and the dev stacks it and the doc runner use."""
