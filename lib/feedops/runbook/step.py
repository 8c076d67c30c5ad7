"""The failure of a runbook step: :class:`StepFailed` carries the :class:`~feedops.exitcodes.Runbook`
code the subcommand exits with (:mod:`.cli` logs it and returns the code)."""

from __future__ import annotations

from ..exitcodes import Runbook


class StepFailed(Exception):
    def __init__(self, code: Runbook, message: str):
        super().__init__(message)
        self.code = code
