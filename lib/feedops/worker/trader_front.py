"""The trader-front session, only to list the instruments (when the day's cache has no trusted list).

ReqAuthenticate -> ReqUserLogin -> ReqQryInstrument, one query in flight; -2/-3 and
"query not ready" are flow-control refusals retried with backoff (:mod:`feedops.worker.pacing`).
The callbacks (:func:`feedops.worker.callbacks.td_spi_class`) collect the rows and put the
answers in the gateway's event queue; this class waits for them on the main thread. The
session is released as soon as the list is known (:meth:`TraderFront.release`: ``RegisterSpi(None)``
then ``Release()``, from the main thread).

It shares the profile's state with the :class:`feedops.worker.gateway.Gateway` that owns it: the
event queue, the request ids, the login field and the login-failure and rate-limit counters
(reported in ``/status``).
"""

from __future__ import annotations

import queue
import time
from typing import TYPE_CHECKING, Any, Callable

from ..exitcodes import Worker
from ..log import get_logger
from .callbacks import td_spi_class
from .errors import WorkerError
from .pacing import ERROR_QUERY_NOT_READY, FLOW_REFUSALS, Backoff

if TYPE_CHECKING:
    from .gateway import Gateway

_log = get_logger("worker")


class TraderFront:
    """Authenticate, log in and query every instrument on the profile's trader fronts."""

    def __init__(self, gateway: Gateway):
        self.gateway = gateway
        self.api, self.feed, self.metrics = gateway.api, gateway.feed, gateway.metrics
        self.profile, self.profile_name = gateway.profile, gateway.profile_name
        self.events = gateway.events
        self.td = None
        self._td_spi = None

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

    def query(self, stop: Callable[[], bool] = lambda: False) -> list[tuple]:
        """Trader front: authenticate, log in, query every instrument (one query in flight)."""
        feed, td_mod = self.feed, self.api.tdapi
        if not self.profile.td_fronts:
            raise WorkerError(Worker.CONFIG, f"CTP_{self.profile_name.upper()}_TD_FRONTS is empty and there is no cached "
                              "instrument list; fix: set the trader fronts", event="worker.config.invalid")
        self.td = td_mod.CThostFtdcTraderApi.CreateFtdcTraderApi(self.gateway.flow_dir("td"))
        self._td_spi = td_spi_class(td_mod.CThostFtdcTraderSpi)(self)
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
        self.release()
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
        steps = (("td_auth", lambda: self.td.ReqAuthenticate(auth, self.gateway.next_request_id()), "authentication"),
                 ("td_login", lambda: self.td.ReqUserLogin(self.gateway.login_field(td_mod), self.gateway.next_request_id()), "trader login"))
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
                self.gateway.login_failures += 1
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
            self.gateway.count_refusal(reason)
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
            request_id = self.gateway.next_request_id()
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

    def release(self) -> None:
        """RegisterSpi(None) then Release(), from the main thread (never from a callback)."""
        if self.td is not None:
            self.td.RegisterSpi(None)
            self.td.Release()
            self.td = None
            self._td_spi = None
