"""``start_live_env.sh drill`` with the reference consumer attached, on the native dev stack.

Two ctp-sim fronts, the worker with the Redis sink (a real redis-server on a loopback
port, streams under a prefix of this test's own), the monitoring stack when installed.
The drill kills the primary front, fails over to the backup, fails back; the test
asserts its exit code, its printed recovery time against the target
(instruments / FEEDOPS_SUBSCRIBE_BATCH_SIZE x FEEDOPS_SUBSCRIBE_BATCH_INTERVAL_SECONDS + 5 s),
no gap outside the outage windows and no duplicate at any time, then reconciles what
the sims sent, what the workers published and what a consumer reading the whole day
from the streams sees.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import redis as redis_lib

from conftest import free_port
from feedops.consumer import ReferenceConsumer, TickTracker, open_source
from feedops.exitcodes import Runbook
from feedops.settings import load_settings
from sink_support import duplicates
from test_runbook_e2e import REQUIRED, ROOT, explain, runbook, stack_environ, stop_stack

pytestmark = pytest.mark.integration


def _log_events(path: Path, event: str) -> list[dict]:
    found = []
    for line in path.read_text(errors="replace").splitlines():
        if f'"{event}"' in line:
            try:
                found.append(json.loads(line))
            except ValueError:
                continue
    return [entry for entry in found if entry.get("event") == event]


@pytest.fixture
def drill_env(tmp_path, redis_server):
    missing = [s for s in REQUIRED if not (ROOT / "scripts" / "operations" / s).exists()]
    if missing:
        pytest.skip(f"the drill needs {', '.join(missing)}")
    environ = stack_environ(tmp_path)
    environ.update({"FEEDOPS_SINK_URL": redis_server.url, "FEEDOPS_REDIS_STREAM_PREFIX": f"drill{free_port()}:md"})
    yield environ
    stop_stack(environ)


def test_drill_measures_recovery_loss_and_duplicates_from_the_subscribers_side(drill_env):
    env = drill_env
    proc = runbook(env, "drill", timeout=400)
    assert proc.returncode == Runbook.OK, explain(proc)
    state = Path(env["FEEDOPS_STATE_DIR"])
    report = json.loads((state / "drill" / "last-report.json").read_text())
    assert report["measured"] and report["exit_code"] == 0 and report["outcome"] == "OK", report

    # the target is the re-subscription time + 5 s, from the settings the drill ran with
    feed = load_settings("dev", environ=env).feed
    instruments = int(env["FEEDOPS_SIM_INSTRUMENTS"])
    target = instruments / feed.subscribe_batch_size * feed.subscribe_batch_interval_seconds + 5
    assert report["recovery_target_seconds"] == pytest.approx(target)
    printed = re.search(r"drill: recovery failover ([0-9.]+) s, failback ([0-9.]+) s \(target ([0-9.]+) s\)", proc.stdout)
    assert printed, explain(proc)
    for phase, seconds in zip(("failover", "failback"), printed.groups()[:2]):
        assert 0 < float(seconds) <= target, f"{phase} recovery {seconds} s beyond the target {target} s"
        assert float(seconds) == report["recovery_seconds"][phase]
        assert report["phases"][phase]["instruments"] >= 0.9 * instruments  # fresh when the outage started
    # outside the outage windows no gap; at no time a duplicate or an out-of-order tick
    assert report["gaps_outside_outages"] == 0, report["gaps_seen"]
    assert report["duplicates"] == 0 and report["out_of_order"] == 0
    assert report["consumer"]["ticks"] > 0 and report["consumer"]["acknowledged"] == report["consumer"]["ticks"]
    assert report["consumer_lag_seconds"]["p99"] is not None

    # the end state: on the home profile again, and the consumer gone with its group
    done = runbook(env, "shutdown")
    assert done.returncode == Runbook.OK, explain(done)
    assert not (state / "pids" / "consumer-drill.pid").exists()
    client = redis_lib.Redis.from_url(env["FEEDOPS_SINK_URL"])
    prefix = env["FEEDOPS_REDIS_STREAM_PREFIX"]
    streams = sorted(k.decode() for k in client.scan_iter(match=f"{prefix}:*", _type="STREAM"))
    assert streams
    assert all(not client.xinfo_groups(s) for s in streams), "the drill's consumer group was left behind"

    # reconcile: every worker run's published ticks are in the streams once; the sims sent at least that
    logs = state / "logs"
    runs = _log_events(logs / "worker-0.log", "worker.stopped")
    assert len(runs) == 3, runs  # primary, backup, primary again
    published = sum(run["published"] for run in runs)
    in_streams = sum(client.xlen(s) for s in streams)
    assert published == in_streams
    backup_sent = sum(e["ticks_sent"] for e in _log_events(logs / "sim-backup.log", "sim.stopped"))
    assert runs[1]["published"] <= backup_sent <= runs[1]["published"] * 1.02 + 200, (runs[1], backup_sent)
    primary_sent = _log_events(logs / "sim-primary.log", "sim.stopped")  # its first run was killed (no line)
    assert runs[2]["published"] <= primary_sent[-1]["ticks_sent"] <= runs[2]["published"] * 1.02 + 200

    # a consumer reading the whole day from the streams sees every published tick once, and gaps only in the outages
    replay = ReferenceConsumer(open_source(env["FEEDOPS_SINK_URL"], prefix=prefix, group="reconcile", start="all"),
                               TickTracker(coverage_ratio=0.9))
    replay.start()
    seen = replay.wait_for(lambda r: r["totals"]["ticks"] >= in_streams, timeout=60)
    final = replay.stop()
    assert seen is not None, final["totals"]
    assert final["totals"]["ticks"] == in_streams and final["totals"]["duplicates"] == 0
    assert final["totals"]["out_of_order"] == 0
    windows = [(p["start"] - 1, p["start"] + p["recovery_seconds"] + target) for p in report["phases"].values()]
    for gap in final["gaps"]:
        assert any(lo <= gap["to_exchange_ts"] and gap["from_exchange_ts"] <= hi for lo, hi in windows), gap
    entries = [json.loads(fields[b"tick"]) for s in streams for _, fields in client.xrange(s)]
    assert duplicates(entries) == 0
    print(f"drill figures: recovery {report['recovery_seconds']} s (target {target} s), ticks missed "
          f"{report['ticks_missed']}, duplicates {report['duplicates']}, consumer lag {report['consumer_lag_seconds']}; "
          f"published {published} = in streams {in_streams} = replayed {final['totals']['ticks']}; sims sent "
          f"backup {backup_sent} vs published {runs[1]['published']}, primary (2nd run) "
          f"{primary_sent[-1]['ticks_sent']} vs {runs[2]['published']}")
