"""The subscription of every instrument on the market-data front, tracked per instrument.

On every login the gateway starts a round (:meth:`Subscriptions.start`): SubscribeMarketData
of *all* instruments in batches (bytes; size and pause from settings). Acknowledgements are
tracked per instrument; refused or unanswered ones are retried up to FEEDOPS_MAX_RETRIES
times, then counted as failed; failed ones are tried again in rounds (first after
FEEDOPS_RETRY_BACKOFF_MAX_SECONDS, doubling while nothing recovers, at most
FAILED_RETRY_MAX_FACTOR times that; at once when ticks flow again after a quiet spell), so
the subscription state heals by itself once the front answers again (a long silent front).
Failures and retry rounds are logged one line per event with the count, never one per
instrument.

Main thread only (:meth:`feedops.worker.gateway.Gateway.step` calls it); ``/status`` reads the
sets and the completion flag from the HTTP thread.
"""

from __future__ import annotations

import collections
import time
from typing import Any, Callable

from ..log import get_logger
from .book import Instrument
from .metrics import WorkerMetrics
from .pacing import FLOW_REFUSALS

_log = get_logger("worker")
ACK_TIMEOUT_MIN_SECONDS = 5.0
#: Failed subscriptions are retried every FEEDOPS_RETRY_BACKOFF_MAX_SECONDS, doubled after each round in which
#: none recovered, up to this many times that.
FAILED_RETRY_MAX_FACTOR = 8
#: Instrument names quoted in a log line (the count is what matters; the full list is in /status).
LOG_SAMPLE = 5
#: A tick this recent after a quiet spell starts the next retry round of failed subscriptions at once.
TICKS_AGAIN_SECONDS = 1.0
#: Failures are logged together when their round is over, or this long after the first one at the latest.
FAILURE_LOG_SECONDS = 10.0


class Subscriptions:
    """Subscribed, acknowledged and failed instruments of the market-data session, with their retries."""

    def __init__(self, feed, metrics: WorkerMetrics, *, count_refusal: Callable[[str], None],
                 last_tick_age: Callable[[], float | None]):
        self.feed = feed
        self.metrics = metrics
        self._count_refusal = count_refusal
        self.last_tick_age = last_tick_age
        self.subscribed: set[str] = set()
        self.acknowledged: set[str] = set()
        self.failed: dict[str, str] = {}
        self.subscription_complete = False
        self.next_batch_at = 0.0
        self._pending: collections.deque[str] = collections.deque()
        self._sent_at: dict[str, float] = {}
        self._sub_retries: collections.Counter[str] = collections.Counter()
        self._newly_failed: dict[str, list[str]] = {}  # cause -> instruments that failed, not logged yet
        self._newly_failed_since: float | None = None
        self._failed_retry_at: float | None = None  # when the failed instruments are tried again
        self._failed_retry_factor = 1
        self._retry_round: tuple[float, int] | None = None  # (started, instruments) of the retry round in flight
        self._retry_on_ticks = False  # the next round starts as soon as ticks flow again
        self._subscribe_started: float | None = None

    def reset(self) -> None:
        """Forget what was sent and acknowledged (a disconnect; a new round)."""
        self._pending.clear()
        self._sent_at.clear()
        self.subscribed.clear()
        self.acknowledged.clear()
        self.subscription_complete = False

    def start(self, instruments: list[Instrument]) -> None:
        """A new round: every instrument pending again, the failed ones included."""
        self.reset()
        self.failed.clear()
        self._sub_retries.clear()
        self._failed_retry_at = None
        self._failed_retry_factor = 1
        self._retry_round = None
        self._pending.extend(i.instrument for i in instruments)
        self.next_batch_at = time.monotonic()
        self._subscribe_started = time.monotonic()

    def send_batches(self, md: Any, now: float) -> None:
        """Send the next batch when it is due (logged in only)."""
        if not self._pending or now < self.next_batch_at:
            return
        size = self.feed.subscribe_batch_size
        batch = [self._pending.popleft() for _ in range(min(size, len(self._pending)))]
        rc = md.SubscribeMarketData([name.encode() for name in batch], len(batch))
        if rc != 0:
            self._pending.extendleft(reversed(batch))
            if rc in FLOW_REFUSALS:
                self._count_refusal(FLOW_REFUSALS[rc])
                _log.warning("worker.subscribe.refused", f"SubscribeMarketData refused with {rc} (flow control); "
                             "pausing before the next batch", return_code=rc)
            self.next_batch_at = now + max(1.0, self.feed.subscribe_batch_interval_seconds)
            return
        for name in batch:
            self.subscribed.add(name)
            self._sent_at[name] = now
        self.next_batch_at = now + self.feed.subscribe_batch_interval_seconds
        _log.debug("worker.subscribe.batch", f"subscribed a batch of {len(batch)}", batch=len(batch),
                   pending=len(self._pending))

    def on_ack(self, payload: Any) -> None:
        """OnRspSubMarketData's event: acknowledged, or refused (retried, then failed)."""
        name, (error_id, message) = payload
        if name not in self._sent_at:
            return  # an ack from before a reconnect, or a repeated ack
        del self._sent_at[name]
        if error_id == 0:
            self.acknowledged.add(name)
            self.failed.pop(name, None)  # a failed one tried again
            self._check_complete()
            return
        self._failed(name, f"error_{error_id}", f"CTP error {error_id}: {message}")

    def _failed(self, name: str, reason: str, detail: str) -> None:
        self.subscribed.discard(name)
        self.metrics.subscribe_failures.labels(reason=reason).inc()
        self._sub_retries[name] += 1
        if self._sub_retries[name] > self.feed.max_retries:
            if name not in self.failed:
                self._newly_failed.setdefault(detail, []).append(name)
            self.failed[name] = reason
            self._check_complete()
        else:
            self._pending.append(name)

    def check_acks(self, now: float) -> None:
        """Subscriptions unanswered for too long fail like refused ones (logged in only)."""
        if not self._sent_at:
            return
        timeout = max(ACK_TIMEOUT_MIN_SECONDS, 3 * self.feed.subscribe_batch_interval_seconds)
        expired = [name for name, sent in self._sent_at.items() if now - sent > timeout]
        for name in expired:
            del self._sent_at[name]
            self._failed(name, "no_ack", f"no acknowledgement within {timeout:g} s")

    def _check_complete(self) -> None:
        if self.subscription_complete or self._pending or self._sent_at:
            return
        self.subscription_complete = True
        took = time.monotonic() - (self._subscribe_started or time.monotonic())
        self.metrics.subscribe_duration.set(took)
        _log.info("worker.subscribe.complete", f"{len(self.acknowledged)} instruments acknowledged, "
                  f"{len(self.failed)} failed, in {took:.1f} s", acknowledged=len(self.acknowledged),
                  failed=len(self.failed), seconds=round(took, 3))

    def log_failures(self, now: float) -> None:
        """One ERROR line for the instruments that failed, with the count per cause: when the round in flight is
        over (its batches expire one after the other), or FAILURE_LOG_SECONDS after the first unlogged one."""
        if not self._newly_failed:
            self._newly_failed_since = None
            return
        if self._newly_failed_since is None:
            self._newly_failed_since = now
        if (self._pending or self._sent_at) and now - self._newly_failed_since < FAILURE_LOG_SECONDS:
            return
        self._newly_failed_since = None
        count = sum(len(names) for names in self._newly_failed.values())
        causes = "; ".join(f"{len(names)} {detail}" for detail, names in sorted(self._newly_failed.items()))
        sample = sorted(n for names in self._newly_failed.values() for n in names)[:LOG_SAMPLE]
        _log.error("worker.subscribe.failed", f"{count} subscription(s) failed after {self.feed.max_retries} retries "
                   f"({causes}; e.g. {', '.join(sample)}); {len(self.failed)} failed in all, tried again in rounds",
                   failed=count, failed_total=len(self.failed), sample=sample,
                   reasons={detail: len(names) for detail, names in self._newly_failed.items()})
        self._newly_failed.clear()

    def retry_failed(self, now: float) -> None:
        """Try the failed instruments again once the subscription round is over, one line per round (logged in only)."""
        if not self.subscription_complete:
            return
        if self._retry_round is not None:
            if self._pending or self._sent_at:
                return
            started, tried = self._retry_round
            self._retry_round = None
            still = len(self.failed)
            recovered = max(0, tried - still)
            self._failed_retry_factor = 1 if recovered else min(self._failed_retry_factor * 2, FAILED_RETRY_MAX_FACTOR)
            log = _log.info if not still else _log.warning
            log("worker.subscribe.retried", f"retry round over: {recovered} of {tried} failed subscription(s) acknowledged, "
                f"{still} still failed, {len(self.acknowledged)} acknowledged in all ({now - started:.1f} s)",
                tried=tried, recovered=recovered, failed=still, acknowledged=len(self.acknowledged))
        if not self.failed:
            self._failed_retry_at = None
            return
        age = self.last_tick_age()
        if self._failed_retry_at is None:
            self._failed_retry_at = now + self.feed.retry_backoff_max_seconds * self._failed_retry_factor
            # scheduled while no tick flows (a silent front): ticks flowing again are the cue to try at once
            self._retry_on_ticks = age is None or age > self.feed.no_tick_timeout_seconds
            return
        ticks_again = self._retry_on_ticks and age is not None and age < TICKS_AGAIN_SECONDS
        if now < self._failed_retry_at and not ticks_again:
            return
        self._failed_retry_at = None
        names = sorted(self.failed)
        for name in names:
            self._sub_retries.pop(name, None)
        self._pending.extend(names)
        self._retry_round = (now, len(names))
        _log.info("worker.subscribe.retry", f"trying {len(names)} failed subscription(s) again",
                  tried=len(names), acknowledged=len(self.acknowledged))
