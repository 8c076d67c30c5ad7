"""The CTP gateway of one profile: the market-data session, one code path for openctp-ctp (channel=ctp) and ctp-sim (channel=sim).

Threads: CTP calls the SPI callbacks (:mod:`feedops.worker.callbacks`) on its own native
thread. The callbacks copy what they need and return: ticks go to the pipeline's bounded
queue, everything else (connected, disconnected, login and subscription answers, query
results) goes to ``events``. The **main thread** owns the state machine (:meth:`Gateway.step`):
login, batched subscription, acknowledgement tracking, retries, watchdogs, and on
shutdown ``RegisterSpi(None)`` + ``Release()`` (never from a callback).

Order of work (CTP's rules: docs/ops/ctp-reference.md):

1. instrument list (:mod:`feedops.worker.instrument_list`): from the per-trading-day cache,
   else the trader front (:mod:`feedops.worker.trader_front`), released once the list is known;
2. market data: the flow directory is created, then the API; on every
   OnFrontConnected: ReqUserLogin; on every login: SubscribeMarketData of *all*
   instruments in batches (bytes; size and pause from settings);
3. acknowledgements tracked per instrument; refused or unanswered ones are retried
   up to FEEDOPS_MAX_RETRIES times, then counted as failed; failed ones are tried
   again in rounds (first after FEEDOPS_RETRY_BACKOFF_MAX_SECONDS, doubling while
   nothing recovers, at most FAILED_RETRY_MAX_FACTOR times that; at once when ticks
   flow again after a quiet spell), so the subscription
   state heals by itself once the front answers again (a long silent front). Failures
   and retry rounds are logged one line per event with the count, never one per
   instrument;
4. watchdogs: no connection FEEDOPS_CONNECT_TIMEOUT_SECONDS after Init (fatal before
   the first connection: the real library is silent on a closed port), no tick for
   FEEDOPS_NO_TICK_TIMEOUT_SECONDS while instruments are open (re-subscribes
   everything), a disconnect storm (fatal: the runbook fails over).
"""

from __future__ import annotations

import collections
import os
import queue
import time
from pathlib import Path
from typing import Any, Callable

from ..ctpapi import CtpApi
from ..exitcodes import Worker
from ..log import get_logger
from . import instrument_list
from .callbacks import event_queue, md_spi_class
from .errors import WorkerError
from .instruments import ListCheck
from .metrics import WorkerMetrics
from .pacing import ERROR_QUERY_NOT_READY, FLOW_REFUSALS, Backoff
from .pipeline import Instrument
from .trader_front import TraderFront

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


class Gateway:
    """Login, instrument list, subscription and watchdogs for one profile."""

    def __init__(self, api: CtpApi, settings, profile_name: str, metrics: WorkerMetrics,
                 on_depth: Callable[[Any], None], calendar, *, last_tick_age: Callable[[], float | None],
                 any_open: Callable[[], bool], shard: tuple[int, int] = (0, 1)):
        self.api = api
        self.feed = settings.feed
        self.profile_name = profile_name
        self.profile = settings.profile(profile_name)
        self.metrics = metrics
        self.on_depth = on_depth
        self.calendar = calendar
        self.shard = shard
        self.last_tick_age = last_tick_age
        self.any_open = any_open
        self.events: queue.Queue = event_queue()
        self.md = None
        self._md_spi = None
        self.trader = TraderFront(self)  # the instrument query; released once the list is known
        self._request_id = 0
        # market-data session state (read by /status from another thread: plain values only)
        self.front_address: str | None = ",".join(self.profile.md_fronts) or None
        self.connected = False
        self.logged_in = False
        self.ever_connected = False
        self.connected_since: float | None = None
        self.trading_day: str | None = None
        self.reconnects = 0
        self.disconnect_counts: collections.Counter[int] = collections.Counter()
        self.recent_disconnects: collections.deque[float] = collections.deque()
        self.login_failures = 0
        self.rate_limit_incidents = 0
        self.instruments: list[Instrument] = []
        self.list_check: ListCheck | None = None  # how the instrument list was obtained and judged
        self.subscribed: set[str] = set()
        self.acknowledged: set[str] = set()
        self.failed: dict[str, str] = {}
        self._pending: collections.deque[str] = collections.deque()
        self._sent_at: dict[str, float] = {}
        self._sub_retries: collections.Counter[str] = collections.Counter()
        self._newly_failed: dict[str, list[str]] = {}  # cause -> instruments that failed, not logged yet
        self._newly_failed_since: float | None = None
        self._failed_retry_at: float | None = None  # when the failed instruments are tried again
        self._failed_retry_factor = 1
        self._retry_round: tuple[float, int] | None = None  # (started, instruments) of the retry round in flight
        self._retry_on_ticks = False  # the next round starts as soon as ticks flow again
        self._next_batch_at = 0.0
        self._login_backoff = Backoff(self.feed.retry_backoff_seconds, self.feed.retry_backoff_max_seconds, self.feed.max_retries)
        self._login_at: float | None = None
        self._login_sent = False
        self._subscribe_started: float | None = None
        self.subscription_complete = False
        self._connect_deadline: float | None = None
        self._disconnected_at: float | None = None
        self._no_connection_alarm = False
        self._no_tick_alarm = False
        self._session_start: float | None = None
        self.on_login: Callable[[str | None], None] | None = None

    # ------------------------------------------------------------------ helpers
    def next_request_id(self) -> int:
        self._request_id += 1
        return self._request_id

    def flow_dir(self, kind: str) -> str:
        directory = Path(self.feed.path("flow_dir")) / self.profile_name / kind
        directory.mkdir(parents=True, exist_ok=True)  # a missing flow dir segfaults the real library
        return str(directory) + os.sep

    def login_field(self, module):
        field = module.CThostFtdcReqUserLoginField()
        field.BrokerID = self.profile.broker_id or ""
        field.UserID = self.profile.user_id or ""
        field.Password = self.profile.secret_value("password")
        if self.profile.user_product_info:
            field.UserProductInfo = self.profile.user_product_info
        return field

    def count_refusal(self, reason: str) -> None:
        self.rate_limit_incidents += 1
        self.metrics.flow_refusal(reason)

    # ------------------------------------------------------------------ instruments
    def load_instruments(self, stop: Callable[[], bool] = lambda: False) -> list[Instrument]:
        """The shard's instruments to subscribe, from today's cache or the trader front (:mod:`feedops.worker.instrument_list`)."""
        self.instruments, self.list_check = instrument_list.load(self.trader, self.calendar, self.shard, stop)
        return self.instruments

    # ------------------------------------------------------------------ market data
    def start_md(self) -> None:
        md_mod = self.api.mdapi
        if not self.profile.md_fronts:
            raise WorkerError(Worker.CONFIG, f"CTP_{self.profile_name.upper()}_MD_FRONTS is empty; fix: set the "
                              "market-data fronts (tcp://host:port, comma-separated)", event="worker.config.invalid")
        self.md = md_mod.CThostFtdcMdApi.CreateFtdcMdApi(self.flow_dir("md"))
        self._md_spi = md_spi_class(md_mod.CThostFtdcMdSpi)(self)
        self.md.RegisterSpi(self._md_spi)
        for front in self.profile.md_fronts:
            self.md.RegisterFront(front)
        self.md.Init()
        self._connect_deadline = time.monotonic() + self.feed.connect_timeout_seconds
        _log.info("worker.md.started", f"market-data API started on {', '.join(self.profile.md_fronts)}",
                  profile=self.profile_name, channel=self.api.channel)

    def step(self, timeout: float = 0.1) -> None:
        """Handle pending events, send due subscription batches, run the watchdogs."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                kind, payload = self.events.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            self._handle(kind, payload)
            if time.monotonic() >= deadline:
                break
        self._drain_quick()
        now = time.monotonic()
        self._send_login(now)
        self._send_batches(now)
        self._check_acks(now)
        self._log_failures(now)
        self._retry_failed(now)
        self._watchdogs(now)

    def _drain_quick(self) -> None:
        for _ in range(50_000):
            try:
                kind, payload = self.events.get_nowait()
            except queue.Empty:
                return
            self._handle(kind, payload)

    def _handle(self, kind: str, payload: Any) -> None:
        handler = getattr(self, f"_on_{kind}", None)
        if handler is not None:
            handler(payload)

    def _on_md_connected(self, _payload: Any) -> None:
        now = time.monotonic()
        if self.ever_connected:
            self.reconnects += 1
            self.metrics.reconnects.labels(profile=self.profile_name).inc()
        self.connected = True
        self.ever_connected = True
        self.connected_since = time.time()
        self._disconnected_at = None
        self._no_connection_alarm = False
        self.metrics.front_connected.labels(profile=self.profile_name).set(1)
        _log.info("worker.md.connected", "market-data front connected; logging in", profile=self.profile_name,
                  reconnects=self.reconnects)
        self._login_sent = False
        self._login_at = now

    def _on_md_disconnected(self, reason: int) -> None:
        now = time.monotonic()
        was_connected = self.connected
        self.connected = False
        self.logged_in = False
        self.connected_since = None
        self._disconnected_at = self._disconnected_at or now
        self._login_at = None
        self._reset_subscriptions()
        self.disconnect_counts[reason] += 1
        self.metrics.disconnects.labels(profile=self.profile_name, reason=str(reason)).inc()
        self.metrics.front_connected.labels(profile=self.profile_name).set(0)
        self.metrics.logged_in.labels(profile=self.profile_name).set(0)
        self.recent_disconnects.append(now)
        self._trim_disconnects(now)
        _log.warning("worker.md.disconnected", f"market-data front disconnected (reason {reason} = 0x{reason:04x}); "
                     "the API reconnects by itself, then we log in and re-subscribe",
                     profile=self.profile_name, reason=reason, was_connected=was_connected,
                     recent_disconnects=len(self.recent_disconnects))

    def _trim_disconnects(self, now: float) -> None:
        window = self.feed.disconnect_storm_window_seconds
        while self.recent_disconnects and now - self.recent_disconnects[0] > window:
            self.recent_disconnects.popleft()

    def _on_heartbeat_warning(self, lapse: int) -> None:
        _log.warning("worker.md.heartbeat", f"no packet from the market-data front for {lapse} s", lapse_seconds=lapse)

    def _send_login(self, now: float) -> None:
        if not self.connected or self.logged_in or self._login_sent or self._login_at is None or now < self._login_at:
            return
        rc = self.md.ReqUserLogin(self.login_field(self.api.mdapi), self.next_request_id())
        if rc in FLOW_REFUSALS:
            self.count_refusal(FLOW_REFUSALS[rc])
            self._login_at = now + 1.0
            return
        if rc != 0:
            self._login_at = now + 1.0
            return
        self._login_sent = True

    def _on_md_login(self, payload: Any) -> None:
        (error_id, message), day = payload
        self._login_sent = False
        if error_id != 0:
            self.login_failures += 1
            self.metrics.login_failures.labels(profile=self.profile_name, reason=str(error_id)).inc()
            delay = self._login_backoff.next_delay()
            _log.error("worker.login.failed", f"market-data login refused (CTP error {error_id}: {message})",
                       profile=self.profile_name, error_id=error_id, retry_in_seconds=delay)
            if delay is None:
                raise WorkerError(Worker.LOGIN, f"market-data login refused {self.login_failures} times for profile "
                                  f"{self.profile_name} (CTP error {error_id}: {message}); fix: check "
                                  f"CTP_{self.profile_name.upper()}_BROKER_ID, _USER_ID and _PASSWORD",
                                  event="worker.login.failed")
            self._login_at = time.monotonic() + delay
            return
        self._login_backoff.reset()
        self.logged_in = True
        self.trading_day = day if day and len(day) == 8 and day.isdigit() else self.trading_day
        self.metrics.logged_in.labels(profile=self.profile_name).set(1)
        _log.info("worker.login.ok", f"market-data login ok (trading day {self.trading_day}); subscribing "
                  f"{len(self.instruments)} instruments", profile=self.profile_name, trading_day=self.trading_day)
        if self.on_login is not None:
            self.on_login(self.trading_day)
        self._start_subscription()

    def _on_md_error(self, payload: Any) -> None:
        error_id, message = payload
        if error_id == ERROR_QUERY_NOT_READY:
            self.count_refusal("query_not_ready")
        _log.warning("worker.md.error", f"market-data front error {error_id}: {message}", error_id=error_id)

    # ------------------------------------------------------------------ subscription
    def _reset_subscriptions(self) -> None:
        self._pending.clear()
        self._sent_at.clear()
        self.subscribed.clear()
        self.acknowledged.clear()
        self.subscription_complete = False

    def _start_subscription(self) -> None:
        self._reset_subscriptions()
        self.failed.clear()
        self._sub_retries.clear()
        self._failed_retry_at = None
        self._failed_retry_factor = 1
        self._retry_round = None
        self._pending.extend(i.instrument for i in self.instruments)
        self._next_batch_at = time.monotonic()
        self._subscribe_started = time.monotonic()
        self._session_start = time.monotonic()
        self._no_tick_alarm = False

    def _send_batches(self, now: float) -> None:
        if not self.logged_in or not self._pending or now < self._next_batch_at:
            return
        size = self.feed.subscribe_batch_size
        batch = [self._pending.popleft() for _ in range(min(size, len(self._pending)))]
        rc = self.md.SubscribeMarketData([name.encode() for name in batch], len(batch))
        if rc != 0:
            self._pending.extendleft(reversed(batch))
            if rc in FLOW_REFUSALS:
                self.count_refusal(FLOW_REFUSALS[rc])
                _log.warning("worker.subscribe.refused", f"SubscribeMarketData refused with {rc} (flow control); "
                             "pausing before the next batch", return_code=rc)
            self._next_batch_at = now + max(1.0, self.feed.subscribe_batch_interval_seconds)
            return
        for name in batch:
            self.subscribed.add(name)
            self._sent_at[name] = now
        self._next_batch_at = now + self.feed.subscribe_batch_interval_seconds
        _log.debug("worker.subscribe.batch", f"subscribed a batch of {len(batch)}", batch=len(batch),
                   pending=len(self._pending))

    def _on_sub_ack(self, payload: Any) -> None:
        name, (error_id, message) = payload
        if name not in self._sent_at:
            return  # an ack from before a reconnect, or a repeated ack
        del self._sent_at[name]
        if error_id == 0:
            self.acknowledged.add(name)
            self.failed.pop(name, None)  # a failed one tried again
            self._check_complete()
            return
        self._subscription_failed(name, f"error_{error_id}", f"CTP error {error_id}: {message}")

    def _subscription_failed(self, name: str, reason: str, detail: str) -> None:
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

    def _check_acks(self, now: float) -> None:
        if not self.logged_in or not self._sent_at:
            return
        timeout = max(ACK_TIMEOUT_MIN_SECONDS, 3 * self.feed.subscribe_batch_interval_seconds)
        expired = [name for name, sent in self._sent_at.items() if now - sent > timeout]
        for name in expired:
            del self._sent_at[name]
            self._subscription_failed(name, "no_ack", f"no acknowledgement within {timeout:g} s")

    def _check_complete(self) -> None:
        if self.subscription_complete or self._pending or self._sent_at:
            return
        self.subscription_complete = True
        took = time.monotonic() - (self._subscribe_started or time.monotonic())
        self.metrics.subscribe_duration.set(took)
        _log.info("worker.subscribe.complete", f"{len(self.acknowledged)} instruments acknowledged, "
                  f"{len(self.failed)} failed, in {took:.1f} s", acknowledged=len(self.acknowledged),
                  failed=len(self.failed), seconds=round(took, 3))

    def _log_failures(self, now: float) -> None:
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

    def _retry_failed(self, now: float) -> None:
        """Try the failed instruments again once the subscription round is over (one line per round)."""
        if not self.logged_in or not self.subscription_complete:
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

    def resubscribe_all(self, why: str) -> None:
        if self.logged_in:
            _log.warning("worker.subscribe.again", f"re-subscribing every instrument ({why})")
            self._start_subscription()

    # ------------------------------------------------------------------ watchdogs
    def _watchdogs(self, now: float) -> None:
        feed = self.feed
        if not self.connected and self._connect_deadline is not None:
            if not self.ever_connected and now > self._connect_deadline:
                self.metrics.watchdog_fired("no_connection")
                raise WorkerError(Worker.NO_FRONT, f"no market-data front connected within {feed.connect_timeout_seconds:g} s "
                                  f"after Init ({', '.join(self.profile.md_fronts)}); fix: check "
                                  f"CTP_{self.profile_name.upper()}_MD_FRONTS and that the front is up, or fail over",
                                  event="worker.watchdog.no_connection")
            if self.ever_connected and not self._no_connection_alarm and self._disconnected_at is not None \
                    and now - self._disconnected_at > feed.connect_timeout_seconds:
                self._no_connection_alarm = True
                self.metrics.watchdog_fired("no_connection")
                _log.error("worker.watchdog.no_connection", f"no market-data front for {feed.connect_timeout_seconds:g} s "
                           "after a disconnect; still retrying", profile=self.profile_name)
        self._trim_disconnects(now)
        if len(self.recent_disconnects) >= feed.disconnect_storm_count:
            self.metrics.watchdog_fired("disconnect_storm")
            raise WorkerError(Worker.STORM, f"disconnect storm: {len(self.recent_disconnects)} disconnects within "
                              f"{feed.disconnect_storm_window_seconds:g} s (reasons "
                              f"{dict(sorted(self.disconnect_counts.items()))}); fix: check the front and the network, "
                              "or fail over to the other profile", event="worker.watchdog.disconnect_storm")
        if self.logged_in and self.subscription_complete and self.acknowledged and not self._no_tick_alarm:
            age = self.last_tick_age()
            since_session = now - (self._session_start or now)
            quiet = since_session if age is None else min(age, since_session)
            if quiet > feed.no_tick_timeout_seconds and self.any_open():
                self._no_tick_alarm = True
                self.metrics.watchdog_fired("no_ticks")
                _log.error("worker.watchdog.no_ticks", f"no tick for {quiet:.0f} s while instruments are open",
                           profile=self.profile_name, quiet_seconds=round(quiet, 1))
                self.resubscribe_all("no ticks")

    # ------------------------------------------------------------------ shutdown
    def close(self) -> None:
        """RegisterSpi(None) then Release(), from the main thread (never from a callback)."""
        self.trader.release()
        if self.md is not None:
            self.md.RegisterSpi(None)
            self.md.Release()
            self.md = None
            self._md_spi = None
        self.connected = self.logged_in = False
