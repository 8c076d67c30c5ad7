"""A dev stack of its own: the native runtime, two ctp-sim fronts, state, secrets, sink and
monitoring under one directory, every server on a free loopback port.

The fault matrix (:mod:`feedops.drills.matrix`) and the runbook pages' test
(``tests/integration/test_docs_run.py``) each start one with :func:`environ` and the
runbook, so a developer's dev stack (``var/``, the default ports) is never touched.
"""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

from ..paths import ROOT, bootstrap_locpath
from ..polling import free_port
from ..sim.cli import CONTROL_PORT_OFFSET

PROFILES = ("primary", "backup")
SECRET_VARS = tuple(f"CTP_{p.upper()}_{k}" for p in PROFILES for k in ("PASSWORD", "AUTH_CODE"))
RUNBOOK = ROOT / "scripts" / "operations" / "start_live_env.sh"
PYTHON = ROOT / ".venv" / "bin" / "python"


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def sim_port() -> int:
    """A free port whose ctp-sim control port (+CONTROL_PORT_OFFSET) is free too."""
    while True:
        port = free_port()
        if port + CONTROL_PORT_OFFSET <= 65535 and _port_free(port + CONTROL_PORT_OFFSET):
            return port


def write_secrets(directory: Path, token: str) -> Path:
    """One file per secret variable (mode 0600 in a 0700 directory), each ``token`` + a suffix."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    for var in SECRET_VARS:
        path = directory / var
        path.write_text(f"{token}{var[4]}{var[-1]}")
        path.chmod(0o600)
    return directory


def environ(base: Path, token: str, *, instruments: int = 200, sink: str | None = None,
            monitoring: bool = True, inherit: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a dev stack under ``base`` (created): FEEDOPS_ENV dev, native, ctp-sim.

    ``token`` prefixes the dev secrets (so a test can check no output contains it); ``sink``
    defaults to a file sink under ``base``; ``monitoring`` False leaves Prometheus,
    Alertmanager and the Pushgateway out."""
    base.mkdir(parents=True, exist_ok=True)
    secrets = write_secrets(base / "secrets", token)
    primary, backup, worker = sim_port(), sim_port(), free_port()
    env = {k: v for k, v in (os.environ if inherit is None else inherit).items()
           if not k.startswith(("FEEDOPS_", "CTP_")) or k == "FEEDOPS_CLOCK_AT"}
    env.update({
        "FEEDOPS_ENV": "dev", "FEEDOPS_RUNTIME": "native", "FEEDOPS_CHANNEL": "sim",
        "FEEDOPS_STATE_DIR": str(base / "state"), "FEEDOPS_SECRETS_DIR": str(secrets),
        "FEEDOPS_SINK_URL": sink or f"file:{base / 'feed'}", "FEEDOPS_FLOW_DIR": str(base / "flow"),
        "FEEDOPS_CACHE_DIR": str(base / "cache"),
        "FEEDOPS_WORKER_LISTEN": f"127.0.0.1:{worker}", "FEEDOPS_WORKER_URLS": f"http://127.0.0.1:{worker}",
        "CTP_PRIMARY_MD_FRONTS": f"tcp://127.0.0.1:{primary}", "CTP_PRIMARY_TD_FRONTS": f"tcp://127.0.0.1:{primary}",
        "CTP_BACKUP_MD_FRONTS": f"tcp://127.0.0.1:{backup}", "CTP_BACKUP_TD_FRONTS": f"tcp://127.0.0.1:{backup}",
        "FEEDOPS_SIM_INSTRUMENTS": str(instruments), "FEEDOPS_LOG_FORMAT": "json",
        "FEEDOPS_MONITORING_DIR": str(base / "monitoring"),
        "FEEDOPS_PROMETHEUS_URL": f"http://127.0.0.1:{free_port()}",
        "FEEDOPS_ALERTMANAGER_URL": f"http://127.0.0.1:{free_port()}",
        "FEEDOPS_PUSHGATEWAY_URL": f"http://127.0.0.1:{free_port()}",
    })
    if not monitoring:
        env.update({f"FEEDOPS_{n}_ENABLED": "false" for n in ("PROMETHEUS", "ALERTMANAGER", "PUSHGATEWAY")})
    if locpath := bootstrap_locpath():
        env["LOCPATH"] = locpath
    return env


def fill_disk(directory: Path) -> Path:
    """Write zeros into ``directory`` until its file system refuses (ENOSPC); return the ballast file
    (delete it to free the disk). The disk-full drill's and tests' way to fill a tmpfs."""
    import errno

    ballast = directory / "ballast"
    chunk = b"\0" * (1 << 20)
    with open(ballast, "wb", buffering=0) as fh:
        while True:
            try:
                fh.write(chunk)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                break
    return ballast


def sim_control_url(env: dict[str, str], profile: str) -> str:
    port = int(env[f"CTP_{profile.upper()}_MD_FRONTS"].rsplit(":", 1)[1])
    return f"http://127.0.0.1:{port + CONTROL_PORT_OFFSET}"


def stop(env: dict[str, str]) -> None:
    """Stop whatever the stack left running, through its pid files, by pid."""
    subprocess.run([str(PYTHON), "-m", "feedops.runbook", "--runtime", "native", "stop", "--kind", "all",
                    "--timeout", "10"], env=env, cwd=ROOT, capture_output=True, timeout=90)
