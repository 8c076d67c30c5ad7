"""The file sink's whole-record guarantee: failed writes leave nothing, torn tails are cut off and kept aside.

The failing disk is real: a child process runs the sink under a file size limit
(RLIMIT_FSIZE set by ``preexec_fn``, SIGXFSZ ignored), so the kernel refuses the write
part-way with EFBIG; the child then raises its own limit (the disk "empties") and
flushes. Nothing is mocked.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import textwrap

from conftest import wait_for
from feedops.worker.sinks import FileSink
from sink_support import parse_lines

DAY = "20261127"


def record(seq: int, day: str = DAY) -> dict:
    return {"instrument": f"rb{seq % 7}", "exchange": "SHFE", "trading_day": day, "seq": seq, "pad": "x" * 40}


def test_whole_batches_only_and_published_equals_lines(tmp_path):
    sink = FileSink(tmp_path, (0, 1), buffer_max=1000)
    assert sink.open()
    assert len(sink.publish([record(i) for i in range(5)])) == 5
    assert len(sink.publish([record(5), record(6, "20261130")])) == 2  # two days in one batch
    sink.close()
    first, torn = parse_lines(sink.path_for(DAY))
    assert [r["seq"] for r in first] == [0, 1, 2, 3, 4, 5] and torn == 0
    assert [r["seq"] for r in parse_lines(sink.path_for("20261130"))[0]] == [6]
    assert sink.published_total == 7


def test_torn_tail_is_quarantined_and_cut_before_the_next_write(tmp_path, capsys):
    path = tmp_path / DAY / "ticks-0of1.jsonl"
    path.parent.mkdir()
    whole = b"".join(json.dumps(record(i)).encode() + b"\n" for i in range(3))
    fragment = json.dumps(record(3)).encode()[:17]  # a crash in the middle of a record
    path.write_bytes(whole + fragment)
    sink = FileSink(tmp_path, (0, 1), buffer_max=1000)
    assert sink.open()
    assert parse_lines(path) == ([record(i) for i in range(3)], 0)  # repaired at start, before any write
    assert len(sink.publish([record(4)])) == 1
    sink.close()
    records, torn = parse_lines(path)
    assert [r["seq"] for r in records] == [0, 1, 2, 4] and torn == 0  # nothing glued onto the fragment
    side = path.with_name(f"{path.name}.torn-{len(whole)}")
    assert side.read_bytes() == fragment and sink.repaired_total == 1
    [line] = [json.loads(x) for x in capsys.readouterr().err.splitlines() if "worker.sink.torn_tail" in x]
    assert line["level"] == "error" and line["quarantine"] == str(side) and line["torn_bytes"] == len(fragment)
    # a second crash at the same offset keeps both fragments
    path.write_bytes(path.read_bytes()[:len(whole)] + fragment)
    sink = FileSink(tmp_path, (0, 1), buffer_max=1000)
    assert sink.open() and len(sink.publish([record(5)])) == 1
    sink.close()
    assert side.with_name(side.name + "-1").read_bytes() == fragment
    assert [r["seq"] for r in parse_lines(path)[0]] == [0, 1, 2, 5]


def test_a_file_without_any_newline_is_cut_to_empty(tmp_path):
    path = tmp_path / DAY / "ticks-0of1.jsonl"
    path.parent.mkdir()
    path.write_bytes(b'{"instrument":"rb')
    sink = FileSink(tmp_path, (0, 1), buffer_max=1000)
    assert sink.open() and len(sink.publish([record(1)])) == 1
    sink.close()
    assert [r["seq"] for r in parse_lines(path)[0]] == [1]
    assert path.with_name(path.name + ".torn-0").read_bytes() == b'{"instrument":"rb'


CHILD = textwrap.dedent("""
    import json, os, resource, sys
    from pathlib import Path
    from feedops.worker import sinkbase
    from feedops.worker.sinks import FileSink

    directory, batches, size = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    room = int(sys.argv[4]) if len(sys.argv) > 4 else 0  # > 0: first free this many bytes only
    sinkbase.SEND_CHUNK = 25  # a backlog is written in whole chunks of 25 records
    def record(seq):
        return {"instrument": f"rb{seq % 7}", "exchange": "SHFE", "trading_day": "@DAY@", "seq": seq, "pad": "x" * 40}
    sink = FileSink(directory, (0, 1), buffer_max=100000)
    sink.reconnect_interval = 0.0
    assert sink.open()
    sent, failed_calls = 0, 0
    for b in range(batches):
        delivered = sink.publish([record(sent + i) for i in range(size)])
        sent += size
        failed_calls += not delivered
    full = {"published": sink.published_total, "buffered": sink.buffered, "rolled_back": sink.rolled_back_total,
            "up": sink.up}
    partial = None
    if room:  # some room only: whole chunks of the backlog fit, the rest waits
        path = sink.path_for("@DAY@")
        resource.setrlimit(resource.RLIMIT_FSIZE, (path.stat().st_size + room, resource.RLIM_INFINITY))
        sink.publish([])
        partial = {"published": sink.published_total, "buffered": sink.buffered, "size": path.stat().st_size}
    resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))  # the disk empties
    sink.flush(10.0)
    sink.close()
    print(json.dumps({"sent": sent, "failed_calls": failed_calls, "full": full, "partial": partial,
                      "published": sink.published_total, "buffered": sink.buffered, "dropped": sink.dropped_total}))
""").replace("@DAY@", DAY)


def _limited(limit: int):
    def preexec() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
    return preexec


def test_failed_writes_at_the_file_size_limit_leave_no_duplicate_and_no_torn_line(tmp_path):
    limit = 20_000  # ~2.5 batches of 30 records: the third batch is cut part-way by the kernel
    done = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path), "12", "30"], capture_output=True, text=True,
                          timeout=60, preexec_fn=_limited(limit))
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    path = tmp_path / DAY / "ticks-0of1.jsonl"
    records, torn = parse_lines(path)
    seqs = [r["seq"] for r in records]
    # while full: only whole batches on disk, the size never above the limit, the rest buffered
    assert report["failed_calls"] >= 1 and report["full"]["up"] is False and report["full"]["rolled_back"] >= 1
    assert report["full"]["published"] + report["full"]["buffered"] == report["sent"]
    assert 0 < report["full"]["published"] < report["sent"]
    # after the limit is lifted everything is written once, in order
    assert torn == 0
    assert seqs == list(range(report["sent"])), "duplicate, missing or reordered records"
    assert report["published"] == len(records) == report["sent"] and report["dropped"] == 0
    rolled = [json.loads(x) for x in done.stderr.splitlines() if '"worker.sink.rolled_back"' in x]
    assert rolled and all(entry["size"] > entry["committed"] for entry in rolled)  # part of a batch was cut off


def test_sigkill_mid_write_then_restart_does_not_glue_records(tmp_path):
    """A child killed while writing big batches leaves (maybe) a torn tail; the next sink cuts it off."""
    script = textwrap.dedent("""
        import sys
        from pathlib import Path
        from feedops.worker.sinks import FileSink
        sink = FileSink(Path(sys.argv[1]), (0, 1), buffer_max=1000)
        sink.open()
        seq = 0
        print("writing", flush=True)
        while True:
            sink.publish([{"instrument": "rb", "exchange": "SHFE", "trading_day": "@DAY@", "seq": seq + i, "pad": "y" * 300}
                          for i in range(2000)])
            seq += 2000
    """).replace("@DAY@", DAY)
    path = tmp_path / DAY / "ticks-0of1.jsonl"
    proc = subprocess.Popen([sys.executable, "-c", script, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline() == "writing\n"
        def far_enough() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"writer exited {proc.returncode}")
            return path.exists() and path.stat().st_size > 4_000_000
        wait_for(far_enough, timeout=30, what="4 MB written")
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(10)
    if path.read_bytes().endswith(b"\n"):  # killed between two records: tear the tail by hand
        with open(path, "ab") as fh:
            fh.write(b'{"instrument":"rb","exch')
    before, torn_before = parse_lines(path)
    sink = FileSink(tmp_path, (0, 1), buffer_max=1000)
    assert sink.open()
    assert len(sink.publish([{"instrument": "rb", "exchange": "SHFE", "trading_day": DAY, "seq": -1}])) == 1
    sink.close()
    after, torn_after = parse_lines(path)
    assert torn_before == 1 and torn_after == 0
    assert after[:-1] == before and after[-1]["seq"] == -1
    assert len(list(path.parent.glob("*.torn-*"))) == 1


def test_a_backlog_goes_out_in_whole_chunks_as_room_appears(tmp_path):
    """The limit is first raised by room for about two and a half chunks of the backlog: two whole chunks are
    written, the rest stays buffered (nothing torn); then everything, once, in order."""
    record_bytes = len(json.dumps(record(100)).replace(" ", "")) + 1
    done = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path), "12", "30", str(int(62.5 * record_bytes))],
                          capture_output=True, text=True, timeout=60, preexec_fn=_limited(20_000))
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    full, partial = report["full"], report["partial"]
    assert partial["published"] - full["published"] == 50  # two chunks of 25, whole
    assert partial["buffered"] == report["sent"] - partial["published"] > 0
    records, torn = parse_lines(tmp_path / DAY / "ticks-0of1.jsonl")
    assert torn == 0 and [r["seq"] for r in records] == list(range(report["sent"])) and report["published"] == len(records)
