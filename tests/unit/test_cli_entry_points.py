"""Every CLI lives in the package: pyproject's console scripts name ``feedops.<tool>.cli:main``,
and each scripts/operations/*.py is a shim that runs one of them, with the same --help."""

from __future__ import annotations

import ast
import contextlib
import importlib
import io
import subprocess
import sys
import tomllib

import pytest

from conftest import ROOT

SCRIPTS_DIR = ROOT / "scripts" / "operations"
CONSOLE_SCRIPTS = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
SHIMS = sorted(SCRIPTS_DIR.glob("[!_]*.py"))


def shim_module(path) -> str:
    """The module a shim hands over to: its one ``run("feedops.x.cli")`` call."""
    tree = ast.parse(path.read_text())
    calls = [node for node in ast.walk(tree) if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "run"]
    assert len(calls) == 1 and isinstance(calls[0].args[0], ast.Constant), f"{path.name} is not a one-call shim"
    # the worker's sink writer is a multiprocessing spawn child, which re-imports the main module:
    # an unguarded call would start a second worker in it
    guard = tree.body[-1]
    assert isinstance(guard, ast.If) and ast.unparse(guard.test) == "__name__ == '__main__'" and calls[0] in ast.walk(guard), \
        f"{path.name}: run() must sit under if __name__ == '__main__'"
    return calls[0].args[0].value


def help_of(module: str) -> str:
    """What ``main(["--help"])`` prints; it exits 0 (argparse) or returns 0."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        try:
            code = importlib.import_module(module).main(["--help"])
        except SystemExit as done:
            code = done.code
    assert code in (0, None), f"{module} --help: {code}"
    return out.getvalue()


def test_the_expected_console_scripts_exist():
    assert {"feedops-validate", "feedops-worker", "feedops-health", "feedops-sim", "feedops-consumer"} <= set(CONSOLE_SCRIPTS)


@pytest.mark.parametrize("name", sorted(CONSOLE_SCRIPTS))
def test_console_script_is_a_cli_module_of_the_package(name):
    module, _, attr = CONSOLE_SCRIPTS[name].partition(":")
    assert module.startswith("feedops.") and module.endswith(".cli") and attr == "main", CONSOLE_SCRIPTS[name]
    assert "usage:" in help_of(module)


def test_every_shim_runs_a_console_script_module():
    assert {p.name for p in SHIMS} >= {"validate_env.py", "full_feed_subscription.py", "check_feed_health.py", "ctp_sim.py"}
    targets = {value.partition(":")[0] for value in CONSOLE_SCRIPTS.values()}
    assert {p.name: shim_module(p) for p in SHIMS if shim_module(p) not in targets} == {}


@pytest.mark.parametrize("shim", SHIMS, ids=lambda p: p.name)
def test_shim_help_is_the_modules_help(shim):
    done = subprocess.run([sys.executable, str(shim), "--help"], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"usage: {shim.name} ")  # the name the runbook and the docs use
    assert done.stdout == help_of(shim_module(shim))


def test_one_sys_path_set_up_and_no_runpy():
    """The shims share _package.py; nothing in the package runs a script file."""
    touching = [p.name for p in SCRIPTS_DIR.glob("*.py") if "sys.path" in p.read_text()]
    assert touching == ["_package.py"]
    assert [str(p.relative_to(ROOT)) for p in (ROOT / "lib").rglob("*.py") if "runpy" in p.read_text()] == []
