"""The worker's one-shot check (``full_feed_subscription.py --probe``).

Connect, log in, subscribe a sample of the shard's instruments (every n-th, at most
``sample_size``), wait for their ticks, release the API; the result is a Nagios code and a
JSON report (docs/ops/worker.md). Same gateway as the worker; nothing is written to a sink.
"""

from __future__ import annotations

import time
from typing import Any

from ..ctpapi import CtpApi
from ..exitcodes import Check, Worker
from ..log import utc_timestamp
from ..settings import parse_shard
from .errors import WorkerError
from .gateway import Gateway
from .inputs import load_api_of, load_calendar
from .metrics import WorkerMetrics

SAMPLE_SIZE = 20


def probe(settings, *, profile: str | None = None, api: CtpApi | None = None, sample_size: int = SAMPLE_SIZE,
          timeout: float | None = None) -> tuple[Check, dict[str, Any]]:
    """Connect, log in, subscribe a sample, wait for its ticks; return (Nagios code, JSON report)."""
    feed = settings.feed
    profile_name = profile or feed.active_profile
    started = time.monotonic()
    report: dict[str, Any] = {"service": "feedops-worker-probe", "time": utc_timestamp(), "profile": profile_name,
                              "channel": feed.channel, "status": "fail", "logged_in": False, "trading_day": None,
                              "instruments_listed": 0, "sample": 0, "acknowledged": 0, "ticked": 0, "never_ticked": [],
                              "message": ""}
    calendar = load_calendar(feed)
    api = load_api_of(feed.channel, api)
    metrics = WorkerMetrics(profile_name)
    ticked: set[str] = set()

    def on_depth(depth: Any) -> None:
        ticked.add(depth.InstrumentID)

    gateway = Gateway(api, settings, profile_name, metrics, on_depth, calendar, last_tick_age=lambda: None,
                      any_open=lambda: False, shard=parse_shard(feed.shard))
    code = Check.CRITICAL
    try:
        instruments = gateway.load_instruments()
        report["instruments_listed"] = len(instruments)
        if not instruments:
            raise WorkerError(Worker.INSTRUMENTS, "the instrument list of this shard is empty")
        step = max(1, len(instruments) // sample_size)
        sample = instruments[::step][:sample_size]
        gateway.instruments = sample
        report["sample"] = len(sample)
        names = {i.instrument for i in sample}
        gateway.start_md()
        deadline = time.monotonic() + (timeout if timeout is not None else feed.connect_timeout_seconds + 10.0)
        while time.monotonic() < deadline:
            gateway.step(0.1)
            if gateway.subscriptions.subscription_complete and names <= ticked:
                break
        report["logged_in"] = gateway.logged_in
        report["trading_day"] = gateway.trading_day
        report["acknowledged"] = len(gateway.subscriptions.acknowledged)
        report["ticked"] = len(names & ticked)
        report["never_ticked"] = sorted(names - ticked)
        if not gateway.ever_connected:
            report["message"] = "no market-data front connected"
        elif not gateway.logged_in:
            report["message"] = "not logged in before the probe timeout"
        elif report["ticked"] == len(names):
            code, report["status"], report["message"] = Check.OK, "pass", "logged in; every sampled instrument ticked"
        else:
            code, report["status"] = Check.WARNING, "warn"
            report["message"] = f"logged in; {len(names) - report['ticked']} of {len(names)} sampled instruments did not tick"
    except WorkerError as exc:
        report["message"] = str(exc)
        code = Check.UNKNOWN if exc.code == Worker.CONFIG else Check.CRITICAL
    finally:
        gateway.close()
    report["duration_seconds"] = round(time.monotonic() - started, 3)
    report["exit_code"] = int(code)
    return code, report
