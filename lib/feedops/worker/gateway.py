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
3. acknowledgements tracked per instrument, refused or unanswered ones retried, failed
   ones tried again in rounds (:mod:`feedops.worker.subscriptions`);
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
from .book import Instrument
from .callbacks import event_queue, md_spi_class
from .errors import WorkerError
from .instruments import ListCheck
from .metrics import WorkerMetrics
from .pacing import ERROR_QUERY_NOT_READY, FLOW_REFUSALS, Backoff
from .subscriptions import Subscriptions
from .trader_front import TraderFront

_log = get_logger("worker")


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
        self.subscriptions = Subscriptions(self.feed, metrics, count_refusal=self.count_refusal, last_tick_age=last_tick_age)
        self._login_backoff = Backoff(self.feed.retry_backoff_seconds, self.feed.retry_backoff_max_seconds, self.feed.max_retries)
        self._login_at: float | None = None
        self._login_sent = False
        self._connect_deadline: float | None = None
        self._disconnected_at: float | None = None
        self._no_connection_alarm = False
        self._no_tick_alarm = False
        self._session_start: float | None = None
        self.on_login: Callable[[str | None], None] | None = None

    # ------------------------------------------------------------------ shared with the trader front
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
        subs = self.subscriptions
        if self.logged_in:
            subs.send_batches(self.md, now)
            subs.check_acks(now)
        subs.log_failures(now)
        if self.logged_in:
            subs.retry_failed(now)
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
        self.subscriptions.reset()
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
    def _start_subscription(self) -> None:
        self.subscriptions.start(self.instruments)
        self._session_start = time.monotonic()
        self._no_tick_alarm = False

    def _on_sub_ack(self, payload: Any) -> None:
        self.subscriptions.on_ack(payload)

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
        subs = self.subscriptions
        if self.logged_in and subs.subscription_complete and subs.acknowledged and not self._no_tick_alarm:
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
