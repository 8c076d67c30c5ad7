"""The settings model: layers, precedence, secrets directories and every ConfigError."""

from __future__ import annotations

from pathlib import Path

import pytest

from feedops.addresses import check_front_url
from feedops.log import redact
from feedops.settings import (
    ConfigError,
    FeedSettings,
    Problem,
    load_settings,
    parse_shard,
)
from validate_support import SENTINEL_AUTH_CODE, SENTINEL_PASSWORD, write_secrets

PROFILE = """FEEDOPS_ENV={env}
CTP_PRIMARY_MD_FRONTS=tcp://127.0.0.1:17001
CTP_PRIMARY_TD_FRONTS=tcp://127.0.0.1:17001
CTP_PRIMARY_BROKER_ID=9999
CTP_PRIMARY_USER_ID=u1
CTP_PRIMARY_APP_ID=app
"""


def make_root(tmp_path: Path, env: str = "dev", extra: str = "") -> Path:
    (tmp_path / "envs").mkdir(exist_ok=True)
    (tmp_path / "envs" / f"{env}.env").write_text(PROFILE.format(env=env) + extra)
    return tmp_path


def load(tmp_path, env="dev", extra="", environ=None, **kwargs):
    return load_settings(env, environ=environ or {}, root=make_root(tmp_path, env, extra), **kwargs)


def problems(tmp_path, **kwargs) -> list[Problem]:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, **kwargs)
    return info.value.problems


def test_defaults_without_any_file(tmp_path):
    settings = load_settings("dev", environ={}, root=tmp_path)
    assert settings.env_file is None
    assert settings.feed.env == "dev" and settings.feed.channel == "sim" and settings.feed.subscribe_batch_size == 1000
    assert settings.active is settings.primary and not settings.primary.is_complete()


def test_env_file_values_and_types(tmp_path):
    settings = load(tmp_path, extra="FEEDOPS_QUERY_RATE_PER_SECOND=1.5\nFEEDOPS_PROMETHEUS_ENABLED=true\n")
    assert settings.feed.query_rate_per_second == 1.5 and settings.feed.prometheus_enabled is True
    assert settings.primary.md_fronts == ["tcp://127.0.0.1:17001"]
    assert settings.sources["CTP_PRIMARY_BROKER_ID"].startswith("env file ")


def test_precedence_overrides_environment_secret_files_env_file(tmp_path):
    low = write_secrets(tmp_path / "low", {"CTP_PRIMARY_PASSWORD": "from-low-dir"})
    high = tmp_path / "high"
    high.mkdir()
    (high / "CTP_PRIMARY_PASSWORD").write_text("from-high-dir")
    (high / "FEEDOPS_IMAGE_TAG").write_text("from-secret-file")
    environ = {"FEEDOPS_SECRETS_DIR": f"{low}:{high}", "CTP_PRIMARY_AUTH_CODE": "from-env", "FEEDOPS_SHARD": "1/2"}
    settings = load(tmp_path, extra="FEEDOPS_SHARD=0/1\nFEEDOPS_IMAGE_TAG=from-file\n", environ=environ,
                    overrides={"FEEDOPS_ACTIVE_PROFILE": "backup"})
    assert settings.primary.secret_value("password") == "from-high-dir"  # the later directory wins
    assert settings.primary.secret_value("auth_code") == "from-env"  # environment beats secret files
    assert settings.feed.shard == "1/2"  # environment beats env file
    assert settings.feed.image_tag == "from-secret-file"  # secret file beats env file
    assert settings.feed.active_profile == "backup" and settings.active is settings.backup  # command line wins
    assert settings.sources["CTP_PRIMARY_PASSWORD"] == f"secret file {high / 'CTP_PRIMARY_PASSWORD'}"
    assert settings.sources["FEEDOPS_ACTIVE_PROFILE"] == "command line"
    assert settings.secrets_dirs == [low, high]
    assert redact("x from-high-dir y") == "x *** y"  # loaded secrets are registered for redaction


def test_secret_file_final_newline_is_not_part_of_the_value(tmp_path):
    d = write_secrets(tmp_path / "s", {"CTP_PRIMARY_PASSWORD": "abc"})
    settings = load(tmp_path, environ={"FEEDOPS_SECRETS_DIR": str(d)})
    assert settings.primary.secret_value("password") == "abc"
    assert settings.primary.is_complete()


@pytest.mark.parametrize("content", [b" Lq9x", b"Tr4z \n", b"Tw0k\n\n", b"Cr7f\r\n", b"Tb5q\t"])
def test_secret_file_whitespace_is_an_error_without_the_value(tmp_path, content):
    d = tmp_path / "s"
    d.mkdir()
    (d / "CTP_BACKUP_PASSWORD").write_bytes(content)
    [problem] = problems(tmp_path, environ={"FEEDOPS_SECRETS_DIR": str(d)})
    assert problem.setting == "CTP_BACKUP_PASSWORD" and "whitespace" in problem.message and "printf" in problem.fix
    assert content.strip().decode() not in str(problem)


def test_secret_file_not_utf8(tmp_path):
    d = tmp_path / "s"
    d.mkdir()
    (d / "CTP_PRIMARY_AUTH_CODE").write_bytes(b"\xff\xfe")
    [problem] = problems(tmp_path, environ={"FEEDOPS_SECRETS_DIR": str(d)})
    assert problem.setting == "CTP_PRIMARY_AUTH_CODE" and "UTF-8" in problem.message


@pytest.mark.parametrize("kind", ["missing", "file"])
def test_secrets_dir_missing_or_not_a_directory(tmp_path, kind):
    target = tmp_path / "nope"
    if kind == "file":
        target.write_text("x")
    [problem] = problems(tmp_path, environ={"FEEDOPS_SECRETS_DIR": str(target)})
    assert problem.setting == "FEEDOPS_SECRETS_DIR" and problem.source == "environment"
    assert ("does not exist" if kind == "missing" else "not a directory") in problem.message


def test_secret_in_env_file_is_refused_without_echoing_it(tmp_path):
    found = problems(tmp_path, extra=f"CTP_PRIMARY_PASSWORD={SENTINEL_PASSWORD}\n")
    assert [p.setting for p in found] == ["CTP_PRIMARY_PASSWORD"]
    assert "must not be stored" in found[0].message and SENTINEL_PASSWORD not in str(ConfigError(found))


def test_secret_values_are_hidden_in_the_models_repr(tmp_path):
    settings = load(tmp_path, environ={"CTP_PRIMARY_PASSWORD": SENTINEL_PASSWORD, "CTP_PRIMARY_AUTH_CODE": SENTINEL_AUTH_CODE})
    assert SENTINEL_PASSWORD not in repr(settings.primary) and SENTINEL_AUTH_CODE not in repr(settings)


def test_unknown_variable_in_env_file_and_environment(tmp_path):
    found = problems(tmp_path, extra="FEEDOPS_CHANEL=sim\n")
    assert found[0].setting == "FEEDOPS_CHANEL" and "spelling" in found[0].fix
    settings = load(tmp_path, environ={"CTP_PRIMARY_PASSWD": "x", "FEEDOPS_HOME": "/srv", "FEEDOPS_LOG_COMPONENT": "cron"})
    assert [w.setting for w in settings.warnings] == ["CTP_PRIMARY_PASSWD"]


def test_env_file_contradicting_its_name(tmp_path):
    root = make_root(tmp_path, "staging")
    (root / "envs" / "staging.env").write_text(PROFILE.format(env="prod"))
    with pytest.raises(ConfigError) as info:
        load_settings("staging", environ={}, root=root)
    assert info.value.problems[0].setting == "FEEDOPS_ENV" and "match" in info.value.problems[0].fix


def test_unknown_environment_and_missing_env_file(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_settings(None, environ={"FEEDOPS_ENV": "qa"}, root=tmp_path)
    assert info.value.problems[0].setting == "FEEDOPS_ENV" and "dev, staging, prod" in info.value.problems[0].fix
    with pytest.raises(ConfigError) as info:
        load_settings("prod", environ={}, root=tmp_path)
    assert "does not exist" in info.value.problems[0].message


def test_env_file_syntax_error_names_file_and_line(tmp_path):
    found = problems(tmp_path, extra="FEEDOPS_CHANNEL sim\n")
    assert found[0].setting == "dev.env:7" and "syntax error" in found[0].message and "NAME=value" in found[0].fix


@pytest.mark.parametrize("var, value, message, fix", [
    ("FEEDOPS_SUBSCRIBE_BATCH_SIZE", "1001", "at most 1000 (CTP's limit)", "1000 or less"),
    ("FEEDOPS_SUBSCRIBE_BATCH_SIZE", "0", "at least 1", "larger value"),
    ("FEEDOPS_SUBSCRIBE_BATCH_SIZE", "many", "whole number", "integer"),
    ("FEEDOPS_QUERY_RATE_PER_SECOND", "fast", "must be a number", "number such as"),
    ("FEEDOPS_QUERY_RATE_PER_SECOND", "0", "greater than 0", "larger value"),
    ("FEEDOPS_PROMETHEUS_ENABLED", "perhaps", "true or false", "true or false"),
    ("FEEDOPS_CHANNEL", "live", "one of 'ctp' or 'sim'", "one of"),
    ("FEEDOPS_ACTIVE_PROFILE", "tertiary", "one of", "one of"),
    ("FEEDOPS_WORKER_LISTEN", "9108", "host:port", "127.0.0.1:9108"),
    ("FEEDOPS_SHARD", "3/3", "0 <= i < N", "i/N"),
    ("FEEDOPS_SINK_URL", "kafka://x", "neither file", "redis://"),
    ("FEEDOPS_SINK_URL", "file:", "needs a directory", "file:"),
    ("CTP_PRIMARY_MD_FRONTS", "tcp://h:65536", "out of range", "tcp://host:port"),
    ("CTP_BACKUP_TD_FRONTS", "udp://h:1", "not of the form", "tcp://host:port"),
    ("CTP_PRIMARY_BROKER_ID", "12345678901", "at most 10 characters", "shorten CTP_PRIMARY_BROKER_ID"),
    ("CTP_BACKUP_USER_ID", "u" * 16, "at most 15 characters", "15 characters or fewer"),
    ("CTP_PRIMARY_APP_ID", "a" * 33, "at most 32 characters", "32 characters or fewer"),
    ("CTP_PRIMARY_USER_PRODUCT_INFO", "feedops-1.0", "at most 10 characters", "10 characters or fewer"),
    ("CTP_PRIMARY_PASSWORD", "p" * 41, "at most 40 characters", "40 characters or fewer"),
    ("CTP_BACKUP_AUTH_CODE", SENTINEL_AUTH_CODE + "x", "at most 16 characters", "16 characters or fewer"),
])
def test_bad_values_name_the_variable_and_the_fix(tmp_path, var, value, message, fix):
    found = problems(tmp_path, environ={var: value})
    assert [p.setting for p in found] == [var]
    assert message in found[0].message and fix in found[0].fix and found[0].source == "environment"
    assert SENTINEL_AUTH_CODE not in str(found[0])


def test_threshold_ordering(tmp_path):
    found = problems(tmp_path, environ={"FEEDOPS_COVERAGE_CRIT_RATIO": "0.99", "FEEDOPS_STALENESS_WARN_SECONDS": "500"})
    assert {p.setting for p in found} == {"FEEDOPS_COVERAGE_CRIT_RATIO", "FEEDOPS_STALENESS_WARN_SECONDS"}


def test_every_problem_is_reported_at_once(tmp_path):
    found = problems(tmp_path, environ={"FEEDOPS_SUBSCRIBE_BATCH_SIZE": "x", "CTP_PRIMARY_MD_FRONTS": "bad", "FEEDOPS_LOG_LEVEL": "loud"})
    assert {p.setting for p in found} == {"FEEDOPS_SUBSCRIBE_BATCH_SIZE", "CTP_PRIMARY_MD_FRONTS", "FEEDOPS_LOG_LEVEL"}
    assert str(ConfigError(found)).count("fix:") == 3


def test_profiles_and_missing_fields(tmp_path):
    settings = load(tmp_path, environ={"CTP_PRIMARY_PASSWORD": "p", "CTP_PRIMARY_AUTH_CODE": "a", "CTP_PRIMARY_BROKER_ID": " "})
    assert settings.primary.missing() == ["CTP_PRIMARY_BROKER_ID"]
    assert settings.profile("backup") is settings.backup and settings.backup.missing()[0] == "CTP_BACKUP_MD_FRONTS"
    assert settings.backup.secret_value("password") == ""


def test_front_and_shard_helpers():
    assert check_front_url("tcp://180.168.146.187:10211") is None
    assert check_front_url("ssl://[::1]:443") is None
    assert "out of range" in check_front_url("tcp://h:0")
    assert parse_shard(" 1 / 4 ") == (1, 4)
    with pytest.raises(ValueError, match="i/N"):
        parse_shard("1-4")


def test_env_var_names():
    assert FeedSettings.env_var("subscribe_batch_size") == "FEEDOPS_SUBSCRIBE_BATCH_SIZE"


@pytest.mark.parametrize("front, needle", [
    ("tcp://256.256.256.256:1", "neither an IPv4 address"),
    ("tcp://999:1", "neither an IPv4 address"),
    ("tcp://1.2.3:41213", "neither an IPv4 address"),
    ("tcp://-md.broker.example:41213", "not a valid hostname"),
    ("tcp://md.broker-.example:41213", "not a valid hostname"),
    ("tcp://md.123:41213", "not a valid hostname"),
    (f"tcp://{'a' * 64}.example:41213", "not a valid hostname"),
    ("tcp://[::1:::2]:41213", "not an IPv6 address"),
    ("tcp://md.broker.example:0", "out of range 1-65535"),
])
def test_front_hosts_must_be_hostnames_or_ip_literals(tmp_path, front, needle):
    [problem] = problems(tmp_path, environ={"CTP_BACKUP_MD_FRONTS": front})
    assert problem.setting == "CTP_BACKUP_MD_FRONTS" and needle in problem.message
    assert "hostname or an IP address" in problem.fix and "port 1-65535" in problem.fix


@pytest.mark.parametrize("front", ["tcp://127.0.0.1:41213", "tcp://md1.broker.example:41213", "tcp://localhost:1",
                                   "ssl://[::1]:65535", "tcp://180.168.146.187:10211", "tcp://0md.x-y.cn:1"])
def test_valid_front_hosts_pass(tmp_path, front):
    assert load(tmp_path, environ={"CTP_BACKUP_MD_FRONTS": front}).backup.md_fronts == [front]


@pytest.mark.parametrize("value", [" Lq9xSntl", "Tr4zSntl ", "Tw0kSntl\n", "Tb5qSntl\t", "  "])
@pytest.mark.parametrize("var", ["CTP_PRIMARY_PASSWORD", "CTP_BACKUP_AUTH_CODE"])
def test_environment_secret_whitespace_is_an_error_without_the_value(tmp_path, var, value):
    [problem] = problems(tmp_path, environ={var: value})
    assert problem.setting == var and "whitespace" in problem.message and problem.source == "environment"
    if value.strip():
        assert value.strip() not in str(problem)


def test_command_line_secret_whitespace_is_an_error_too(tmp_path):
    [problem] = problems(tmp_path, overrides={"CTP_PRIMARY_PASSWORD": "Ov3rSntl "})
    assert problem.setting == "CTP_PRIMARY_PASSWORD" and problem.source == "command line"
    assert "Ov3rSntl" not in str(problem)


@pytest.mark.parametrize("url, needle", [
    ("ftp://x", "neither file:<dir> nor redis://"),
    ("redis://host:6379/abc", "database 'abc'"),
    ("redis://host:6379/0/1", "database '0/1'"),
    ("redis://host:65536/0", "out of range"),
    ("redis://host:/0", "out of range"),
    ("redis:///0", "names no host"),
    ("redis://256.1.1.1:6379/0", "neither an IPv4 address"),
    ("redis://host:6379/0?db=3", "query"),
    ("file:", "needs a directory"),
    ("redis://user:Pw0rdSntl@host:6379/abc", "database 'abc'"),
])
def test_sink_urls_are_checked_in_one_place(tmp_path, url, needle):
    from feedops.addresses import check_sink_url

    [problem] = problems(tmp_path, environ={"FEEDOPS_SINK_URL": url})
    assert problem.setting == "FEEDOPS_SINK_URL" and needle in problem.message and "redis://host:port/db" in problem.fix
    assert needle in check_sink_url(url)
    assert "Pw0rdSntl" not in str(problem)


@pytest.mark.parametrize("url", ["file:var/feed", "file:///srv/feed", "redis://127.0.0.1:6379/0", "redis://redis/2",
                                 "redis://:pw@redis.internal:6380/15", "redis://[::1]:6379", "redis://h:6379/"])
def test_valid_sink_urls_pass(tmp_path, url):
    assert load(tmp_path, environ={"FEEDOPS_SINK_URL": url}).feed.sink_url == url
