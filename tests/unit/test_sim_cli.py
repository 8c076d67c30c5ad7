"""ctp-sim's command line: every bad input gives one clear line and the documented exit code."""

from __future__ import annotations

import socket

import pytest

from feedops.exitcodes import Sim
from feedops.sim.cli import main

SENTINEL = "sentinel-pw-7f3a9c"


@pytest.fixture(autouse=True)
def dev_env(monkeypatch, tmp_path):
    for var in ("FEEDOPS_ENV", "FEEDOPS_SECRETS_DIR", "CTP_PRIMARY_PASSWORD", "CTP_PRIMARY_AUTH_CODE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("FEEDOPS_SECRETS_DIR", str(tmp_path))
    monkeypatch.setenv("CTP_PRIMARY_PASSWORD", SENTINEL)
    monkeypatch.setenv("CTP_PRIMARY_AUTH_CODE", "sentinelauth7f3a")


def run(capsys, *argv: str) -> tuple[int, str]:
    code = main(["--env", "dev", *argv])
    captured = capsys.readouterr()
    assert captured.out == ""
    assert SENTINEL not in captured.err
    return code, captured.err


@pytest.mark.parametrize("argv, needle", [
    (["--fault", "bogus"], "unknown fault bogus"),
    (["--fault", "slow,nope"], "unknown fault nope"),
    (["--listen", "localhost"], "--listen 'localhost' is not HOST:PORT"),
    (["--listen", "127.0.0.1:99999"], "--listen '127.0.0.1:99999' is not HOST:PORT"),
    (["--control", "nonsense"], "--control 'nonsense' is not HOST:PORT"),
    (["--instruments", "0"], "--instruments 0 is out of range"),
    (["--instruments", "30001"], "--instruments 30001 is out of range"),
    (["--instruments", "many"], "--instruments 'many' is not a whole number"),
    (["--seed", "abc"], "--seed 'abc' is not a whole number"),
    (["--active-share", "0"], "--active-share 0.0 is out of range"),
    (["--profile", "tertiary"], "invalid choice: 'tertiary'"),
    (["--env", "qa"], "unknown environment 'qa'"),
])
def test_bad_argument_one_line_usage_exit(capsys, argv, needle):
    code, err = run(capsys, *argv)
    assert code == Sim.USAGE
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert needle in lines[0]
    assert "fix" in lines[0] or "use one of" in lines[0]
    assert "Traceback" not in err


def test_missing_password_names_the_variable(capsys, monkeypatch):
    monkeypatch.delenv("CTP_PRIMARY_PASSWORD")
    code, err = run(capsys, "--listen", "127.0.0.1:0", "--control", "off")
    assert code == Sim.USAGE
    assert "CTP_PRIMARY_PASSWORD" in err and "--accept-any-login" in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("which", ["--listen", "--control"])
def test_port_in_use_exits_listen(capsys, which):
    with socket.socket() as busy, socket.socket() as free:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        free.bind(("127.0.0.1", 0))
        busy_port, free_port = busy.getsockname()[1], free.getsockname()[1]
        free.close()
        listen = busy_port if which == "--listen" else free_port
        control = free_port if which == "--listen" else busy_port
        code, err = run(capsys, "--listen", f"127.0.0.1:{listen}", "--control", f"127.0.0.1:{control}",
                        "--instruments", "10", "--log-format", "text")
    assert code == Sim.LISTEN
    assert f"127.0.0.1:{busy_port}" in err and "fix" in err
    assert "Traceback" not in err


def test_defaults_come_from_the_profile_and_settings():
    from feedops.settings import load_settings
    from feedops.sim.cli import build_parser, config_from_args

    settings = load_settings("dev")
    config, control = config_from_args(build_parser().parse_args(["--profile", "backup", "--accept-any-login"]),
                                       settings)
    assert (config.host, config.port) == ("127.0.0.1", 17002)  # CTP_BACKUP_MD_FRONTS in envs/dev.env
    assert control == ("127.0.0.1", 18002)  # listen port + 1000
    assert config.instruments == settings.feed.sim_instruments and config.seed == settings.feed.sim_seed
    config, _ = config_from_args(build_parser().parse_args(["--listen", "127.0.0.1:0"]), settings)
    assert config.credentials.password.get_secret_value() == SENTINEL
    assert config.credentials.user_id == "dev-primary"
