"""CTP's flow-control refusals and the retry pacing of both sessions (market-data login, instrument query).

A request CTP refuses for flow control returns -2 (too many requests not yet answered) or -3
(too many per second); the trader front may also answer a query with ``OnRspError`` 90
"query not ready" (docs/ops/ctp-reference.md). Each is counted as a rate-limit incident
and retried after a :class:`Backoff` delay.
"""

from __future__ import annotations

FLOW_REFUSALS = {-2: "too_many_unprocessed", -3: "too_many_per_second"}
#: OnRspError id of "query not ready" (CTP: 查询未就绪，请稍后重试).
ERROR_QUERY_NOT_READY = 90


class Backoff:
    """Retry pacing: first delay from settings, doubled per retry, capped."""

    def __init__(self, first: float, cap: float, max_retries: int):
        self.first, self.cap, self.max_retries = first, cap, max_retries
        self.attempts = 0

    def next_delay(self) -> float | None:
        """Delay before the next retry, or None when retries are exhausted."""
        if self.attempts >= self.max_retries:
            return None
        delay = min(self.cap, self.first * (2 ** self.attempts))
        self.attempts += 1
        return delay

    def reset(self) -> None:
        self.attempts = 0
