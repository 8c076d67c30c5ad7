"""The one exit-code table: shell include and docs page stay identical to feedops.exitcodes."""

from __future__ import annotations

import re
import subprocess

from feedops import exitcodes
from feedops.exitcodes import FAMILIES, Check, render_markdown_table, render_shell
from validate_support import PYTHON, ROOT

SHELL_INCLUDE = ROOT / "scripts" / "operations" / "lib" / "exitcodes.sh"
DOC = ROOT / "docs" / "ops" / "exit-codes.md"


def test_shell_include_is_the_generator_output():
    assert SHELL_INCLUDE.read_text() == render_shell(), "regenerate: python -m feedops.exitcodes --shell > " + str(SHELL_INCLUDE)


def test_module_cli_prints_the_same_include():
    out = subprocess.run([PYTHON, "-m", "feedops.exitcodes", "--shell"], capture_output=True, text=True, check=True).stdout
    assert out == SHELL_INCLUDE.read_text()


def test_shell_include_defines_the_codes_in_bash():
    script = f'source "{SHELL_INCLUDE}"; echo "$EXIT_VALIDATION_FAILED $CHECK_CRITICAL $CHECK_UNKNOWN"'
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True).stdout.split()
    assert out == [str(exitcodes.Runbook.VALIDATION_FAILED.value), "2", "3"]


def test_docs_page_has_every_family_table():
    text = DOC.read_text()
    for key, family in FAMILIES.items():
        assert f"### {key}\n\n{render_markdown_table(family)}" in text, f"docs/ops/exit-codes.md is out of date for {key}"


def test_checker_codes_are_nagios():
    assert [(c.name, c.value) for c in Check] == [("OK", 0), ("WARNING", 1), ("CRITICAL", 2), ("UNKNOWN", 3)]


def test_codes_unique_per_family_and_every_code_has_a_meaning():
    for family in FAMILIES.values():
        values = [m.value for m in family]
        assert len(values) == len(set(values)), family
        # programs choose 0-125; 128+n is only the shell's convention for death by signal n
        assert all(0 <= v <= 125 or (v - 128) in (2, 15) for v in values), family
        assert all(meaning for _, _, meaning in exitcodes.describe(family)), family


def test_module_usage_error():
    done = subprocess.run([PYTHON, "-m", "feedops.exitcodes", "--nope"], capture_output=True, text=True)
    assert done.returncode == 2 and "usage" in done.stderr


def test_shell_scripts_point_to_the_table_and_copy_none_of_it():
    """A copied table drifts (the runbook header's once did, at 66 and 74): scripts name the doc instead."""
    from feedops.exitcodes import Runbook

    names = "|".join(m.name for m in Runbook)
    row = re.compile(rf"^#.*\b\d+\s+({names})\b", re.M)
    scripts = [p for p in sorted((ROOT / "scripts" / "operations").rglob("*.sh")) if p != SHELL_INCLUDE]
    assert scripts
    copies = {str(p.relative_to(ROOT)): row.findall(p.read_text()) for p in scripts}
    assert not {k: v for k, v in copies.items() if v}, f"exit-code rows copied into scripts: {copies}"
    header = (ROOT / "scripts" / "operations" / "start_live_env.sh").read_text().split("\nsource ", 1)[0]
    assert "docs/ops/exit-codes.md" in header and (ROOT / "docs" / "ops" / "exit-codes.md").exists()
