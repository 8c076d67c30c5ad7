"""The CTP gateway: one code path for openctp-ctp (channel=ctp) and ctp-sim (channel=sim).

Threads: CTP calls the SPI callbacks on its own native thread. The callbacks copy
what they need and return: ticks go to the pipeline's bounded queue, everything
else (connected, disconnected, login and subscription answers, query results) goes
to ``events``. The **main thread** owns the state machine (:meth:`Gateway.step`):
login, batched subscription, acknowledgement tracking, retries, watchdogs, and on
shutdown ``RegisterSpi(None)`` + ``Release()`` (never from a callback).

Order of work (CTP's rules: docs/ops/ctp-reference.md):

1. instrument list: from the per-trading-day cache, else trader front:
   ReqAuthenticate -> ReqUserLogin -> ReqQryInstrument (one query in flight; -2/-3
   and "query not ready" are flow-control refusals retried with backoff); the trader
   session is released once the list is known;
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
import zlib
from pathlib import Path
from typing import Any, Callable

from .. import clock
from ..ctpapi import CtpApi
from ..exitcodes import Worker
from ..log import get_logger
from . import instruments as instruments_mod
from .errors import WorkerError
from .metrics import WorkerMetrics
from .pipeline import PRODUCT_CLASSES, Instrument

_log = get_logger("worker")
FLOW_REFUSALS = {-2: "too_many_unprocessed", -3: "too_many_per_second"}
#: OnRspError id of "query not ready" (CTP: 查询未就绪，请稍后重试).
ERROR_QUERY_NOT_READY = 90
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


def shard_of(instrument_id: str, count: int) -> int:
    """Deterministic shard of an instrument (CRC-32 of its id modulo the shard count)."""
    return zlib.crc32(instrument_id.encode()) % count


def _err(info: Any) -> tuple[int, str]:
    if info is None:
        return 0, ""
    return int(info.ErrorID), str(info.ErrorMsg or "").strip()


def _md_spi_class(base: type) -> type:
    class MdSpi(base):  # type: ignore[misc, valid-type]
        def __init__(self, gateway: "Gateway"):
            super().__init__()
            self.gateway = gateway
            self.put = gateway.events.put
            self.on_depth = gateway.on_depth

        def OnFrontConnected(self):
            self.put(("md_connected", None))

        def OnFrontDisconnected(self, nReason):
            self.put(("md_disconnected", int(nReason)))

        def OnHeartBeatWarning(self, nTimeLapse):
            self.put(("heartbeat_warning", int(nTimeLapse)))

        def OnRspUserLogin(self, pRspUserLogin, pRspInfo, nRequestID, bIsLast):
            day = pRspUserLogin.TradingDay if pRspUserLogin is not None else ""
            self.put(("md_login", (_err(pRspInfo), day)))

        def OnRspSubMarketData(self, pSpecificInstrument, pRspInfo, nRequestID, bIsLast):
            if pSpecificInstrument is not None:
                self.put(("sub_ack", (pSpecificInstrument.InstrumentID, _err(pRspInfo))))

        def OnRspError(self, pRspInfo, nRequestID, bIsLast):
            self.put(("md_error", _err(pRspInfo)))

        def OnRtnDepthMarketData(self, pDepthMarketData):
            if pDepthMarketData is not None:
                self.on_depth(pDepthMarketData)  # copies the struct's bytes (TickQueue.offer); nothing else here

    return MdSpi


def _td_spi_class(base: type) -> type:
    class TdSpi(base):  # type: ignore[misc, valid-type]
        def __init__(self, gateway: "Gateway"):
            super().__init__()
            self.put = gateway.events.put
            self.rows: list[tuple[str, str, str, str]] = []

        def OnFrontConnected(self):
            self.put(("td_connected", None))

        def OnFrontDisconnected(self, nReason):
            self.put(("td_disconnected", int(nReason)))

        def OnRspAuthenticate(self, pRspAuthenticateField, pRspInfo, nRequestID, bIsLast):
            self.put(("td_auth", _err(pRspInfo)))

        def OnRspUserLogin(self, pRspUserLogin, pRspInfo, nRequestID, bIsLast):
            day = pRspUserLogin.TradingDay if pRspUserLogin is not None else ""
            self.put(("td_login", (_err(pRspInfo), day)))

        def OnRspQryInstrument(self, pInstrument, pRspInfo, nRequestID, bIsLast):
            if pInstrument is not None:
                self.rows.append((pInstrument.InstrumentID, pInstrument.ExchangeID, pInstrument.ProductID,
                                  pInstrument.ProductClass))
            if bIsLast:
                self.put(("qry_done", (nRequestID, _err(pRspInfo))))

        def OnRspError(self, pRspInfo, nRequestID, bIsLast):
            self.put(("td_error", (nRequestID, _err(pRspInfo))))

    return TdSpi


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


def event_queue() -> queue.Queue:
    """The queue of CTP events (logins, acknowledgements, disconnects) the main thread waits on with a timeout.

    A ``queue.Queue``, never a ``queue.SimpleQueue``: on CPython 3.11 a signal handled while
    ``SimpleQueue.get(timeout=...)`` waits, once the timeout has passed, turns the wait into one without end
    (the remaining time goes negative, which means "forever"), so a SIGTERM under load left the worker
    waiting for an event that never came until the runbook's SIGKILL. ``Queue.get`` waits on a
    ``threading`` lock, which treats an expired timeout as expired."""
    return queue.Queue()


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
        self.td = None
        self._md_spi = None
        self._td_spi = None
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
        self.list_check: instruments_mod.ListCheck | None = None  # how the instrument list was obtained and judged
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
    def _next_request_id(self) -> int:
        self._request_id += 1
        return self._request_id

    def _flow_dir(self, kind: str) -> str:
        directory = Path(self.feed.path("flow_dir")) / self.profile_name / kind
        directory.mkdir(parents=True, exist_ok=True)  # a missing flow dir segfaults the real library
        return str(directory) + os.sep

    def _login_field(self, module):
        field = module.CThostFtdcReqUserLoginField()
        field.BrokerID = self.profile.broker_id or ""
        field.UserID = self.profile.user_id or ""
        field.Password = self.profile.secret_value("password")
        if self.profile.user_product_info:
            field.UserProductInfo = self.profile.user_product_info
        return field

    def _count_refusal(self, reason: str) -> None:
        self.rate_limit_incidents += 1
        self.metrics.flow_refusal(reason)

    # ------------------------------------------------------------------ instruments
    def cache_path(self, trading_day: str) -> Path:
        return Path(self.feed.path("cache_dir")) / f"instruments-{self.api.channel}-{self.profile_name}-{trading_day}.json"

    def expected_trading_day(self) -> str:
        return self.calendar.trading_day(clock.now()).strftime("%Y%m%d")

    def load_instruments(self, stop: Callable[[], bool] = lambda: False) -> list[Instrument]:
        """The shard's instruments: from today's cache, else the trader front (then cached); checked against the
        expectation before it is trusted (:mod:`feedops.worker.instruments`)."""
        day = self.expected_trading_day()
        path = self.cache_path(day)
        prefix = path.name[: -len(f"{day}.json")]
        expected = instruments_mod.expectation(path.parent, prefix, day)
        rows, check = None, None
        if path.exists():
            try:
                rows, flagged = instruments_mod.read_cache(path)
                reason = flagged or instruments_mod.judge(rows, expected)
                if reason is None:
                    check = instruments_mod.ListCheck("cache", len(rows))
                    _log.info("worker.instruments.cached", f"instrument list for {day} read from the cache ({len(rows)} "
                              "rows, count and checksum verified)", path=str(path), trading_day=day, listed=len(rows))
                else:
                    _log.warning("worker.instruments.suspicious", f"the cached instrument list {path} is suspicious "
                                 f"({reason}); querying the front again", path=str(path), listed=len(rows), reason=reason)
                    rows = None
            except instruments_mod.CacheError as exc:
                _log.warning("worker.instruments.cache_bad", f"not trusting the instrument cache {path}: {exc}; "
                             "querying the front again", path=str(path), reason=str(exc))
                rows = None
        if rows is None:
            rows, check = self._query_checked(expected, stop, requeried=path.exists())
            try:
                instruments_mod.write_cache(path, day, rows, check.suspicious)
            except OSError as exc:
                _log.warning("worker.instruments.cache_unwritable", f"cannot write the instrument cache {path} ({exc.strerror})")
        if expected is not None:
            check.expected, check.expected_day = sum(expected[1].values()), expected[0]
        self.list_check = check
        index, count = self.shard
        selected = [Instrument(r[0], r[1], r[2], PRODUCT_CLASSES[r[3]]) for r in rows
                    if r[3] in PRODUCT_CLASSES and shard_of(r[0], count) == index]
        self.instruments = selected
        for (exchange, cls), n in collections.Counter((i.exchange, i.product_class) for i in selected).items():
            self.metrics.instruments_known.labels(exchange=exchange, product_class=cls).set(n)
        _log.info("worker.instruments.ready", f"{len(selected)} instruments in shard {index}/{count} "
                  f"(of {len(rows)} listed)", instruments=len(selected), listed=len(rows), shard=f"{index}/{count}")
        return selected

    def _query_checked(self, expected, stop: Callable[[], bool], requeried: bool) -> tuple[list[tuple], Any]:
        """Query the list; a suspicious answer is queried once more, then used but flagged (ERROR)."""
        for attempt in (1, 2):
            started = time.monotonic()
            rows = self.query_instruments(stop)
            self.metrics.query_duration.set(time.monotonic() - started)
            reason = instruments_mod.judge(rows, expected)
            if reason is None:
                return rows, instruments_mod.ListCheck("query", len(rows), requeried=requeried or attempt > 1)
            if attempt == 1:
                _log.warning("worker.instruments.suspicious", f"the front's instrument list is suspicious ({reason}); "
                             "querying once more", listed=len(rows), reason=reason)
        _log.error("worker.instruments.suspicious", f"the front's instrument list stays suspicious ({reason}); using it, "
                   "flagged in /status (instruments.list) and judged by the health check", listed=len(rows), reason=reason)
        return rows, instruments_mod.ListCheck("query", len(rows), suspicious=reason, requeried=True)

    def _wait_event(self, kinds: set[str], deadline: float, stop: Callable[[], bool]) -> tuple[str, Any]:
        while True:
            if stop():
                raise WorkerError(Worker.OK, "stopped while waiting for the trader front", event="worker.stopped")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return "timeout", None
            try:
                kind, payload = self.events.get(timeout=min(remaining, 0.2))
            except queue.Empty:
                continue
            if kind in kinds:
                return kind, payload
            if kind == "td_disconnected":
                self.metrics.disconnects.labels(profile=self.profile_name, reason=str(payload)).inc()

    def query_instruments(self, stop: Callable[[], bool] = lambda: False) -> list[tuple]:
        """Trader front: authenticate, log in, query every instrument (one query in flight)."""
        feed, td_mod = self.feed, self.api.tdapi
        if not self.profile.td_fronts:
            raise WorkerError(Worker.CONFIG, f"CTP_{self.profile_name.upper()}_TD_FRONTS is empty and there is no cached "
                              "instrument list; fix: set the trader fronts", event="worker.config.invalid")
        self.td = td_mod.CThostFtdcTraderApi.CreateFtdcTraderApi(self._flow_dir("td"))
        self._td_spi = _td_spi_class(td_mod.CThostFtdcTraderSpi)(self)
        self.td.RegisterSpi(self._td_spi)
        for front in self.profile.td_fronts:
            self.td.RegisterFront(front)
        self.td.Init()
        kind, _ = self._wait_event({"td_connected"}, time.monotonic() + feed.connect_timeout_seconds, stop)
        if kind == "timeout":
            self.metrics.watchdog_fired("no_connection")
            raise WorkerError(Worker.NO_FRONT, f"no trader front answered within {feed.connect_timeout_seconds:g} s "
                              f"({', '.join(self.profile.td_fronts)}); fix: check CTP_{self.profile_name.upper()}_TD_FRONTS "
                              "and that the front is up, or fail over to the other profile", event="worker.front.none")
        self._td_login()
        rows = self._query_loop(stop)
        self.release_td()
        return rows

    def _td_login(self) -> None:
        feed, td_mod, profile = self.feed, self.api.tdapi, self.profile
        auth = td_mod.CThostFtdcReqAuthenticateField()
        auth.BrokerID = profile.broker_id or ""
        auth.UserID = profile.user_id or ""
        auth.AppID = profile.app_id or ""
        auth.AuthCode = profile.secret_value("auth_code")
        if profile.user_product_info:
            auth.UserProductInfo = profile.user_product_info
        steps = (("td_auth", lambda: self.td.ReqAuthenticate(auth, self._next_request_id()), "authentication"),
                 ("td_login", lambda: self.td.ReqUserLogin(self._login_field(td_mod), self._next_request_id()), "trader login"))
        for event, send, what in steps:
            rc = send()
            if rc != 0:
                raise WorkerError(Worker.NO_FRONT, f"{what} request failed with return code {rc} (not connected)",
                                  event="worker.front.lost")
            kind, payload = self._wait_event({event}, time.monotonic() + feed.connect_timeout_seconds, lambda: False)
            if kind == "timeout":
                raise WorkerError(Worker.NO_FRONT, f"no answer to the {what} within {feed.connect_timeout_seconds:g} s",
                                  event="worker.front.silent")
            (error_id, message) = payload[0] if event == "td_login" else payload
            if error_id != 0:
                self.login_failures += 1
                self.metrics.login_failures.labels(profile=self.profile_name, reason=str(error_id)).inc()
                raise WorkerError(Worker.LOGIN, f"{what} refused for profile {self.profile_name} (CTP error {error_id}: "
                                  f"{message}); fix: check CTP_{self.profile_name.upper()}_USER_ID, _PASSWORD, _APP_ID and "
                                  "_AUTH_CODE", event="worker.login.failed")
        _log.info("worker.td.logged_in", "trader front: authenticated and logged in", profile=self.profile_name)

    def _query_loop(self, stop: Callable[[], bool]) -> list[tuple]:
        feed = self.feed
        backoff = Backoff(feed.retry_backoff_seconds, feed.retry_backoff_max_seconds, feed.max_retries)
        min_gap = 1.0 / feed.query_rate_per_second

        def retry(reason: str, detail: str) -> None:
            self._count_refusal(reason)
            delay = backoff.next_delay()
            if delay is None:
                raise WorkerError(Worker.INSTRUMENTS, f"the instrument query was refused {backoff.attempts + 1} times "
                                  f"({detail}); fix: retry later, raise FEEDOPS_MAX_RETRIES, or check the trader front",
                                  event="worker.instruments.failed")
            _log.warning("worker.instruments.retry", f"instrument query refused ({detail}); retrying in {delay:g} s",
                         reason=reason, attempt=backoff.attempts)
            deadline = time.monotonic() + max(delay, min_gap)
            while time.monotonic() < deadline:
                if stop():
                    raise WorkerError(Worker.OK, "stopped", event="worker.stopped")
                time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))

        while True:
            self._td_spi.rows = []
            request_id = self._next_request_id()
            rc = self.td.ReqQryInstrument(self.api.tdapi.CThostFtdcQryInstrumentField(), request_id)
            if rc in FLOW_REFUSALS:
                retry(FLOW_REFUSALS[rc], f"return code {rc}")
                continue
            if rc != 0:
                retry("not_connected", f"return code {rc}")
                continue
            deadline = time.monotonic() + max(30.0, feed.connect_timeout_seconds)
            kind, payload = self._wait_event({"qry_done", "td_error"}, deadline, stop)
            if kind == "timeout":
                retry("no_answer", "no answer within the timeout")
                continue
            req, (error_id, message) = payload
            if kind == "td_error" or error_id != 0:
                reason = "query_not_ready" if error_id == ERROR_QUERY_NOT_READY else f"error_{error_id}"
                retry(reason, f"CTP error {error_id}: {message}")
                continue
            rows = list(self._td_spi.rows)
            if not rows:
                retry("empty", "the front returned no instruments")
                continue
            _log.info("worker.instruments.queried", f"instrument query returned {len(rows)} rows", rows=len(rows))
            return rows

    # ------------------------------------------------------------------ market data
    def start_md(self) -> None:
        md_mod = self.api.mdapi
        if not self.profile.md_fronts:
            raise WorkerError(Worker.CONFIG, f"CTP_{self.profile_name.upper()}_MD_FRONTS is empty; fix: set the "
                              "market-data fronts (tcp://host:port, comma-separated)", event="worker.config.invalid")
        self.md = md_mod.CThostFtdcMdApi.CreateFtdcMdApi(self._flow_dir("md"))
        self._md_spi = _md_spi_class(md_mod.CThostFtdcMdSpi)(self)
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
        rc = self.md.ReqUserLogin(self._login_field(self.api.mdapi), self._next_request_id())
        if rc in FLOW_REFUSALS:
            self._count_refusal(FLOW_REFUSALS[rc])
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
            self._count_refusal("query_not_ready")
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
                self._count_refusal(FLOW_REFUSALS[rc])
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
    def release_td(self) -> None:
        if self.td is not None:
            self.td.RegisterSpi(None)
            self.td.Release()
            self.td = None
            self._td_spi = None

    def close(self) -> None:
        """RegisterSpi(None) then Release(), from the main thread (never from a callback)."""
        self.release_td()
        if self.md is not None:
            self.md.RegisterSpi(None)
            self.md.Release()
            self.md = None
            self._md_spi = None
        self.connected = self.logged_in = False
