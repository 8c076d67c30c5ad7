""".env.example and the settings model agree in both directions; no env file holds a secret."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from feedops.envexample import render_env_example
from feedops.envfile import parse_env_file
from feedops.settings import ENV_NAMES, all_env_vars, load_settings, secret_env_vars
from validate_support import ROOT

EXAMPLE = ROOT / ".env.example"
SECRET_NAME = re.compile(r"(PASSWORD|PASSWD|AUTH_CODE|SECRET|TOKEN|API_KEY)$")


def example_variables() -> tuple[set[str], set[str]]:
    """(variables with an example value, secret variables documented as comments)."""
    active = set(parse_env_file(EXAMPLE))
    commented = set(re.findall(r"^# ([A-Z][A-Z0-9_]*)=<secret>$", EXAMPLE.read_text(), flags=re.M))
    return active, commented


def test_every_model_variable_is_documented():
    active, commented = example_variables()
    missing = set(all_env_vars()) - active - commented
    assert not missing, f"add to .env.example (python -m feedops.envexample > .env.example): {sorted(missing)}"


def test_every_documented_variable_is_in_the_model():
    active, commented = example_variables()
    unknown = (active | commented) - set(all_env_vars())
    assert not unknown, f"not in the settings model: {sorted(unknown)}"


def test_secrets_are_documented_only_as_comments():
    active, commented = example_variables()
    assert commented == secret_env_vars()
    assert not active & secret_env_vars()


def test_every_variable_has_a_comment_line_above_it():
    lines = EXAMPLE.read_text().splitlines()
    for i, line in enumerate(lines):
        if re.match(r"^(# )?[A-Z][A-Z0-9_]*=", line):
            assert i > 0 and lines[i - 1].startswith("# ") and "=" not in lines[i - 1].split(" ", 2)[1], line


def test_env_example_is_the_generator_output():
    assert EXAMPLE.read_text() == render_env_example(), "regenerate: .venv/bin/python -m feedops.envexample > .env.example"


def test_env_example_values_load_as_a_configuration(tmp_path):
    settings = load_settings("dev", environ={"FEEDOPS_SECRETS_DIR": str(tmp_path)}, env_file=EXAMPLE)
    assert settings.primary.md_fronts and settings.backup.td_fronts


def tracked_env_files() -> list[Path]:
    try:
        out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
        names = out.splitlines()
    except (OSError, subprocess.CalledProcessError):  # a copy without .git: every file but the ignored dirs
        names = [str(p.relative_to(ROOT)) for p in ROOT.rglob("*") if p.is_file()
                 and not {".venv", "var", ".git"} & set(p.relative_to(ROOT).parts)]
    files = [ROOT / n for n in names if n.endswith(".env") or Path(n).name.startswith(".env")]
    assert ROOT / ".env.example" in files and ROOT / "envs" / "dev.env" in files
    return files


ASSIGNMENT = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*?)\s*$")


@pytest.mark.parametrize("path", tracked_env_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_tracked_env_files_hold_no_secret_values(path):
    """Line by line, so that a deliberately broken fixture env file is checked too."""
    text = path.read_text(errors="replace")
    assignments = [m.groups() for m in map(ASSIGNMENT.match, text.splitlines()) if m]
    leaked = {name for name, value in assignments
              if value.strip("'\"") and (name in secret_env_vars() or SECRET_NAME.search(name.upper()))}
    assert not leaked, f"{path} holds secret values for {sorted(leaked)}: use the environment or a secrets directory"
    secrets_dir = ROOT / "var" / "secrets"
    for secret_file in (secrets_dir.glob("CTP_*") if secrets_dir.is_dir() else []):
        value = secret_file.read_text().strip()
        assert value and value not in text, f"{path} contains the value of {secret_file.name}"


def test_generated_secrets_are_ignored_by_git():
    assert "var/" in (ROOT / ".gitignore").read_text().split()


@pytest.mark.parametrize("env", ENV_NAMES)
def test_every_environment_has_its_file_with_known_variables_only(env):
    values = parse_env_file(ROOT / "envs" / f"{env}.env")
    assert values["FEEDOPS_ENV"] == env
    unknown = set(values) - set(all_env_vars())
    assert not unknown, f"envs/{env}.env: unknown variables {sorted(unknown)}"


@pytest.mark.parametrize("env", ["staging", "prod"])
def test_staging_and_prod_are_real_deployments(env):
    values = parse_env_file(ROOT / "envs" / f"{env}.env")
    assert values["FEEDOPS_CHANNEL"] == "ctp"
    assert values["FEEDOPS_CALENDAR"] == "exchange"
    assert values["FEEDOPS_RUNTIME"] == "compose"
    assert values["FEEDOPS_SINK_URL"].startswith("redis://")
    for part in ("PROMETHEUS", "PUSHGATEWAY", "ALERTMANAGER", "GRAFANA"):
        assert values[f"FEEDOPS_{part}_ENABLED"] == "true"
    for profile in ("PRIMARY", "BACKUP"):
        for field in ("MD_FRONTS", "TD_FRONTS", "BROKER_ID", "USER_ID", "APP_ID"):
            assert values.get(f"CTP_{profile}_{field}"), f"CTP_{profile}_{field} missing in envs/{env}.env"
        hosts = re.findall(r"tcp://([^:]+):", values[f"CTP_{profile}_MD_FRONTS"])
        assert hosts and all(h.endswith(".example") for h in hosts)  # placeholders until the broker's are filled in
