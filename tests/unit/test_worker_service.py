"""The worker's pipeline, file sink, /status schema, metrics (promtool) and HTTP endpoints, without a front."""

from __future__ import annotations

import datetime as dt
import faulthandler
import json
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import jsonschema
import pytest

from conftest import free_port, wait_for
from feedops import ctpapi, ctpbinding, metric_names
from feedops.calendar import BEIJING
from feedops.exitcodes import Worker
from feedops.paths import SCHEMAS_DIR
from feedops.settings import load_settings
from feedops.worker.book import Instrument
from feedops.worker.errors import WorkerError
from feedops.worker.service import FeedWorker
from feedops.worker.sinks import FileSink, Sink, public_target
from feedops.worker.status import LossWindow
from feedops.worker.ticks import VALUE_FIELDS
from tick_support import depth_struct

SCHEMA = json.loads((SCHEMAS_DIR / "worker-status.schema.json").read_text())
INSTRUMENTS = [Instrument("rb2601", "SHFE", "rb", "futures"), Instrument("m2601", "DCE", "m", "futures"),
               Instrument("cu2601C80000", "SHFE", "cu_o", "options")]


def settings_for(tmp_path, **extra):
    environ = {"FEEDOPS_SECRETS_DIR": "", "FEEDOPS_CALENDAR": "always-open", "FEEDOPS_CHANNEL": "sim",
               "FEEDOPS_FLOW_DIR": str(tmp_path / "flow"), "FEEDOPS_CACHE_DIR": str(tmp_path / "cache"),
               "FEEDOPS_SINK_URL": f"file:{tmp_path / 'feed'}", "FEEDOPS_WORKER_LISTEN": f"127.0.0.1:{free_port()}",
               "CTP_PRIMARY_PASSWORD": "sentinel-pw-9f3a"}
    environ.update(extra)
    return load_settings("dev", environ=environ)


def tick(instrument="rb2601", volume=10, update_time=None, exchange="SHFE", **fields):
    """A depth struct as the callback receives it (the queue copies it: TickQueue.offer)."""
    now = time.time()
    local = time.gmtime(now + 8 * 3600)
    values = {field: 1.0 for _, field in VALUE_FIELDS}
    values.update(InstrumentID=instrument, ExchangeID=exchange, TradingDay=time.strftime("%Y%m%d", local),
                  ActionDay=time.strftime("%Y%m%d", local), UpdateTime=update_time or time.strftime("%H:%M:%S", local),
                  UpdateMillisec=0, Volume=volume, SettlementPrice=sys.float_info.max)
    values.update(fields)
    return depth_struct(**values)


@pytest.fixture
def worker(tmp_path):
    w = FeedWorker(settings_for(tmp_path))
    w.book.load(INSTRUMENTS)
    w.gateway.instruments = list(INSTRUMENTS)
    yield w
    if w.pipeline.is_alive():
        w.pipeline.stop()
    w.sink.close()
    if w.http is not None:
        w.http.stop()


def run_pipeline(w, depths):
    w.sink.open()
    w.pipeline.start()
    for depth in depths:
        w.queue.offer(depth)
    wait_for(lambda: w.pipeline.published_total + sum(w.pipeline.dropped_by_reason.values()) >= len(depths),
             timeout=10, what="pipeline")


def test_pipeline_writes_json_lines_per_trading_day_and_drops_duplicates(worker, tmp_path):
    first = tick(volume=10)
    run_pipeline(worker, [first, first, tick("m2601", exchange="DCE", volume=3), tick(volume=5)])
    worker.pipeline.stop()
    assert worker.pipeline.published_total == 2
    assert worker.pipeline.dropped_by_reason == {"duplicate": 1, "backwards_volume": 1}
    files = list((tmp_path / "feed").glob("*/ticks-0of1.jsonl"))
    assert len(files) == 1 and files[0].parent.name.isdigit()
    lines = [json.loads(line) for line in files[0].read_text().splitlines()]
    assert [r["instrument"] for r in lines] == ["rb2601", "m2601"]
    assert lines[0]["settlement"] is None and lines[0]["volume"] == 10
    assert worker.book.last_tick_of("rb2601") > 0 and worker.book.last_tick_of("cu2601C80000") is None


def test_full_queue_drops_and_counts_without_blocking(tmp_path):
    w = FeedWorker(settings_for(tmp_path, FEEDOPS_QUEUE_MAX="1000"))
    try:
        started = time.monotonic()
        for i in range(1500):
            w.queue.offer(tick(volume=i))
        assert time.monotonic() - started < 5  # never blocks (generous bound: not a speed test)
        assert w.queue.dropped == 500 and len(w.queue) == 1000
        w.pipeline.housekeeping()
        assert "feedops_queue_dropped_total 500.0" in w.metrics.render().decode()
    finally:
        w.http.stop()


def test_discarded_ticks_are_counted_and_logged_at_error_on_shutdown(tmp_path, capsys):
    w = FeedWorker(settings_for(tmp_path, FEEDOPS_QUEUE_MAX="1000"))
    assert w.lost_ticks() == {}
    for i in range(1200):
        w.queue.offer(tick(volume=i))
    assert w.lost_ticks() == {"queue_full": 200, "queue_abandoned": 1000}  # the pipeline never ran
    w.shutdown()
    [line] = [json.loads(x) for x in capsys.readouterr().err.splitlines() if '"worker.ticks.lost"' in x]
    assert line["level"] == "error" and line["lost"] == 1200 and line["queue_full"] == 200
    assert "exits 18" in line["msg"] and int(Worker.TICKS_LOST) == 18


def test_loss_window_counts_only_the_ticks_lost_in_the_last_window():
    """Time is an input: samples at given monotonic seconds, a 60 s window."""
    window = LossWindow(60.0, now=0.0)
    assert window.recent(0, 0) == {"window_seconds": 60.0, "queue_dropped": 0, "sink_dropped": 0}
    window.sample(1.0, 0, 0)
    window.sample(2.0, 5, 0)  # 5 dropped at the queue between 1 s and 2 s
    window.sample(30.0, 5, 7)  # 7 at the sink by 30 s
    assert window.recent(5, 7) == {"window_seconds": 60.0, "queue_dropped": 5, "sink_dropped": 7}
    window.sample(62.5, 5, 7)  # the queue drops are older than 60 s now
    assert window.recent(5, 7)["queue_dropped"] == 0 and window.recent(5, 7)["sink_dropped"] == 7
    window.sample(91.0, 5, 7)
    assert window.recent(5, 7) == {"window_seconds": 60.0, "queue_dropped": 0, "sink_dropped": 0}
    window.sample(92.0, 6, 7)  # a new loss shows at once
    assert window.recent(6, 7)["queue_dropped"] == 1


def test_status_reports_recent_losses_and_the_clock_skew(tmp_path):
    w = FeedWorker(settings_for(tmp_path, FEEDOPS_QUEUE_MAX="1000"))
    try:
        w.book.load(INSTRUMENTS)
        for i in range(1200):
            w.queue.offer(tick(volume=i))
        w.pipeline.skew = 2.25  # as the writer would estimate it for a front 2.25 s behind our clock
        w.refresh()
        status = w.status()
        jsonschema.validate(status, SCHEMA)
        assert status["ticks_lost_recent"]["queue_dropped"] == 200 and status["ticks_lost_recent"]["sink_dropped"] == 0
        assert status["ticks_lost_recent"]["window_seconds"] == w.feed.staleness_window_seconds == 60
        assert status["latency"]["clock_skew_seconds"] == 2.25
        assert f"{metric_names.CLOCK_SKEW.name} 2.25" in w.metrics.render().decode()
    finally:
        w.http.stop()
        w.sink.close()


def test_status_validates_against_the_schema_with_and_without_the_table(worker):
    run_pipeline(worker, [tick(), tick("m2601", exchange="DCE")])
    worker.refresh()
    status = worker.status(False)
    jsonschema.validate(status, SCHEMA)
    assert "instrument_table" not in status
    assert status["instruments"]["known"] == 3 and status["instruments"]["never_ticked"] == 1
    assert status["never_ticked"]["sample"] == ["cu2601C80000"]
    assert status["coverage"]["ratio"] == pytest.approx(2 / 3)
    assert status["coverage"]["by_product_class"]["options"]["fresh"] == 0
    assert status["ready"] is False and "not connected" in " ".join(status["ready_reasons"])
    full = worker.status(True)
    jsonschema.validate(full, SCHEMA)
    table = full["instrument_table"]
    assert table["instrument"] == [i.instrument for i in INSTRUMENTS]
    assert table["last_tick_unix"][2] is None and table["last_tick_unix"][0] > 0


def test_metrics_pass_promtool_and_use_only_declared_names(worker):
    promtool = shutil.which("promtool") or "/usr/bin/promtool"
    run_pipeline(worker, [tick(), tick("m2601", exchange="DCE")])
    worker.refresh()
    worker.metrics.flow_refusal("too_many_per_second")
    worker.metrics.disconnects.labels(profile="primary", reason="4097").inc()
    text = worker.metrics.render().decode()
    names = {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and not line.startswith("#")}
    assert names <= metric_names.exposed_names(), names - metric_names.exposed_names()
    assert 'feedops_coverage_ratio{exchange="all"}' in text
    for line in text.splitlines():
        if "{" in line and not line.startswith("#"):
            labels = {kv.split("=")[0] for kv in line.split("{", 1)[1].split("}")[0].split(",") if kv}
            assert labels <= {"exchange", "product_class", "profile", "reason", "le", "api_version", "channel",
                              "env", "shard"}, line
    if not shutil.which(promtool) and not __import__("os").path.exists(promtool):
        pytest.skip("promtool not installed: apt-get install prometheus")
    result = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_http_endpoints_over_a_real_socket(worker):
    worker.http.start()
    worker.heartbeat = time.monotonic()
    base = f"http://{worker.listen_address}"
    run_pipeline(worker, [tick()])
    worker.refresh()
    with urllib.request.urlopen(base + "/livez", timeout=5) as resp:
        assert resp.status == 200 and json.load(resp)["status"] == "pass"
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(base + "/readyz", timeout=5)
    assert info.value.code == 503 and json.load(info.value)["reasons"]
    with urllib.request.urlopen(base + "/status?instruments=1", timeout=5) as resp:
        body = json.load(resp)
    jsonschema.validate(body, SCHEMA)
    assert len(body["instrument_table"]["instrument"]) == 3
    with urllib.request.urlopen(base + "/metrics", timeout=5) as resp:
        assert b"feedops_ticks_published_total" in resp.read()
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(base + "/nope", timeout=5)
    assert info.value.code == 404


def test_listen_port_in_use_is_a_listen_error(tmp_path):
    first = FeedWorker(settings_for(tmp_path))
    try:
        with pytest.raises(WorkerError) as info:
            FeedWorker(settings_for(tmp_path, FEEDOPS_WORKER_LISTEN=first.listen_address))
        assert info.value.code == Worker.LISTEN and "FEEDOPS_WORKER_LISTEN" in str(info.value)
    finally:
        first.http.stop()


def test_unwritable_file_sink_is_a_sink_error(tmp_path):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a directory")
    w = FeedWorker(settings_for(tmp_path, FEEDOPS_SINK_URL=f"file:{blocker}/feed"))
    with pytest.raises(WorkerError) as info:
        w.run()
    assert info.value.code == Worker.SINK and "FEEDOPS_SINK_URL" in str(info.value)


@pytest.mark.parametrize("url", ["redis://127.0.0.1:notaport/0", "redis://127.0.0.1:6379/abc", "ftp://x"])
def test_malformed_sink_url_is_refused_by_the_settings_and_by_the_worker(tmp_path, url):
    from feedops.settings import ConfigError

    with pytest.raises(ConfigError) as refused:  # the settings model: validate_env, every CLI
        settings_for(tmp_path, FEEDOPS_SINK_URL=url)
    assert [p.setting for p in refused.value.problems] == ["FEEDOPS_SINK_URL"]
    settings = settings_for(tmp_path)
    settings.feed.sink_url = url  # settings built past the model: the worker checks again when it opens the sink
    with pytest.raises(WorkerError) as info:
        FeedWorker(settings)
    assert info.value.code == Worker.SINK and "FEEDOPS_SINK_URL" in str(info.value)


def test_sink_buffer_is_bounded_and_counts_drops():
    class Down(Sink):
        kind = "file"

        def _connect(self):
            raise ConnectionError("down")

        def _send(self, records):
            raise AssertionError("never reached")

    sink = Down("test", buffer_max=1000, reconnect_interval=3600)
    assert sink.open() is False and sink.errors_total == 1
    for i in range(3):
        assert sink.publish([{"n": i * 1000 + k} for k in range(1000)]) == []
    assert sink.buffered == 1000 and sink.dropped_total == 2000
    assert sink.buffer[0] == {"n": 2000}  # the oldest were dropped


def test_file_sink_reconnects_and_delivers_the_buffer(tmp_path):
    feed = tmp_path / "feed"
    sink = FileSink(feed, (1, 4), buffer_max=5000, reconnect_interval=0.0)
    assert sink.open() is True
    feed.rmdir()
    feed.write_text("a file where the directory was")  # every write now fails
    records = [{"instrument": "rb2601", "trading_day": "20261127", "n": n} for n in range(3)]
    assert sink.publish(records) == []
    assert sink.up is False and sink.buffered == 3 and sink.errors_total == 1
    feed.unlink()
    delivered = sink.publish([{"instrument": "rb2601", "trading_day": "20261127", "n": 3}])
    assert [r["n"] for r in delivered] == [0, 1, 2, 3] and sink.up and sink.buffered == 0
    lines = (feed / "20261127" / "ticks-1of4.jsonl").read_text().splitlines()
    assert [json.loads(line)["n"] for line in lines] == [0, 1, 2, 3]
    sink.close()


def test_a_redis_password_never_shows(tmp_path, capsys):
    assert public_target("redis://:sentinel-pw@127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"
    assert public_target("file:var/feed") == "file:var/feed"
    port = free_port()  # nothing listens: the sink is down from the start
    w = FeedWorker(settings_for(tmp_path, FEEDOPS_SINK_URL=f"redis://:sentinel-redis-pw@127.0.0.1:{port}/0"))
    try:
        assert w.sink.open() is False
        status = w.status()
        jsonschema.validate(status, SCHEMA)
        assert status["sink"]["up"] is False and status["sink"]["errors_total"] == 1
        assert "sentinel-redis-pw" not in json.dumps(status) + w.metrics.render().decode() + capsys.readouterr().err
    finally:
        w.http.stop()


def test_unknown_channel_and_missing_locale_are_clear(monkeypatch):
    with pytest.raises(ctpapi.CtpApiError, match="ctp or sim"):
        ctpapi.load_api("fix")
    monkeypatch.setattr(ctpbinding, "locale_available", lambda name=ctpbinding.CTP_LOCALE: False)
    with pytest.raises(ctpapi.CtpApiError, match="zh_CN.GB18030.*make bootstrap"):
        ctpapi.load_api("ctp")


def test_calendar_horizon_is_exported_on_the_exchange_calendar_only(tmp_path):
    holidays = tmp_path / "holidays.txt"
    holidays.write_text("2026-10-01\ncomplete 2026\ncomplete 2027\ncomplete 2029\n2030-01-01\n")
    w = FeedWorker(settings_for(tmp_path, FEEDOPS_CALENDAR="exchange", FEEDOPS_HOLIDAYS_FILE=str(holidays)))
    try:
        until = w.metrics.registry.get_sample_value(metric_names.CALENDAR_KNOWN_UNTIL.name)
        # 2026 and 2027 in a row (2029 does not extend it): known until the end of 2027, Beijing time
        assert until == dt.datetime(2028, 1, 1, tzinfo=BEIJING).timestamp()
    finally:
        w.sink.close()
    holidays.write_text("2026-10-01\n")  # dates but no year marked complete: known until nothing
    w = FeedWorker(settings_for(tmp_path, FEEDOPS_CALENDAR="exchange", FEEDOPS_HOLIDAYS_FILE=str(holidays)))
    try:
        assert w.metrics.registry.get_sample_value(metric_names.CALENDAR_KNOWN_UNTIL.name) == 0.0
    finally:
        w.sink.close()
    w = FeedWorker(settings_for(tmp_path))  # always-open: absent, so no alert can fire in dev
    try:
        assert w.metrics.registry.get_sample_value(metric_names.CALENDAR_KNOWN_UNTIL.name) is None
        assert metric_names.CALENDAR_KNOWN_UNTIL.name not in w.metrics.render().decode()
    finally:
        w.sink.close()


def test_a_stop_signal_while_the_worker_holds_its_log_lock_stops_it_without_deadlock():
    """The CLI's SIGTERM handler runs on the main thread between two bytecodes, possibly inside a log call
    (the logger's lock held). A handler that logged there waited for itself forever: the worker never
    stopped and the runbook's shutdown exited 72 after SIGKILL. Here the signal arrives exactly there."""
    script = (
        "import os, signal\n"
        "from feedops.log import get_logger\n"
        "from feedops.worker.service import stop_on_signals\n"
        "reasons = []\n"
        "stop_on_signals(reasons.append)\n"
        "with get_logger('worker')._lock:\n"
        "    os.kill(os.getpid(), signal.SIGTERM)\n"
        "    for _ in range(1000):\n"
        "        if reasons:\n"
        "            break\n"
        "print(reasons)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['received SIGTERM']"


def test_a_second_stop_signal_inside_the_first_ones_event_set_does_not_deadlock(tmp_path):
    """A stop brings two SIGTERMs (the runbook's to the group, the supervisor's forwarded one); the second
    handler ran inside the first one's Event.set(), which holds the event's lock, and its own set() waited for
    that lock forever (CI's stacks: set() inside set()). Here the second request arrives exactly there."""
    w = FeedWorker(settings_for(tmp_path))
    outer_set = w._stop.set

    def set_with_a_second_signal_inside():
        with w._stop._cond:  # where Event.set() is when the second signal's handler runs
            w.request_stop("received SIGTERM")
        outer_set()

    w._stop.set = set_with_a_second_signal_inside
    stopper = threading.Thread(target=w.request_stop, args=("received SIGTERM",), daemon=True)
    try:
        stopper.start()
        stopper.join(10)
        assert not stopper.is_alive(), "the second stop request waited for the first one's lock"
        assert w._stop.is_set() and w._stop_reason == "received SIGTERM"
    finally:
        faulthandler.cancel_dump_traceback_later()
        w.sink.close()
