"""A process whose main thread is blocked for good still tells where: feedops.log.dump_stacks_on_signal."""

from __future__ import annotations

import os
import subprocess
import sys

from conftest import wait_for
from feedops.log import STACKS_SIGNAL
from feedops.paths import ROOT

BLOCKED = """
import sys, threading
from feedops.log import dump_stacks_on_signal
dump_stacks_on_signal()
lock = threading.Lock()
lock.acquire()
def parked_forever():
    lock.acquire()
print("blocked", flush=True)
parked_forever()  # an untimed wait: a Python signal handler would never run here
"""


def test_the_stacks_signal_dumps_a_blocked_main_thread_to_stderr(tmp_path):
    err = tmp_path / "stderr.log"
    with open(err, "wb") as fh:
        proc = subprocess.Popen([sys.executable, "-c", BLOCKED], stdout=subprocess.PIPE, stderr=fh,
                                env={**os.environ, "PYTHONPATH": str(ROOT / "lib")})
    try:
        assert proc.stdout.readline().strip() == b"blocked"
        proc.send_signal(STACKS_SIGNAL)
        wait_for(lambda: b"parked_forever" in err.read_bytes(), timeout=10, what="the stack dump")
        assert proc.poll() is None  # the dump does not end the process: the runbook's SIGKILL does
    finally:
        proc.kill()
        proc.wait()
