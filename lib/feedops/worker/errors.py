"""The worker's one exception: a fatal condition with its documented exit code."""

from __future__ import annotations

from ..exitcodes import Worker


class WorkerError(Exception):
    """Fatal for the worker; ``code`` is the exit code (feedops.exitcodes.Worker), ``str()`` the one-line reason."""

    def __init__(self, code: Worker, message: str, *, event: str = "worker.failed"):
        super().__init__(message)
        self.code = code
        self.event = event
