"""The runbook pages' runner (feedops.docrun): which blocks it selects, what it refuses,
and that a broken page fails (the integration test tests/integration/test_docs_run.py runs
the real pages against a dev stack)."""

from __future__ import annotations

import os
from pathlib import Path

from conftest import ROOT
from feedops import docrun

PAGE = """# Procedure: something

## Steps

```bash
cd /opt/feedops
make status                 # a comment with 'quotes' and make nothing-here
```

<!-- not-run: needs the production host -->
```bash
make premarket ENV=prod
```

```text
make not-a-command-but-output
```

## Diagnosis

```console
$ make health
output line
```
"""


def _stack(tmp_path: Path) -> docrun.Stack:
    return docrun.Stack(ROOT, {"PATH": os.environ["PATH"]}, {"/opt/feedops": str(ROOT)})


def test_selects_bash_and_console_blocks_and_reads_the_marker(tmp_path):
    page = tmp_path / "premarket.md"
    page.write_text(PAGE)
    blocks = docrun.extract(page, page="procedures/premarket.md")
    assert [(b.heading, b.lang, b.not_run) for b in blocks] == [
        ("Steps", "bash", None), ("Steps", "bash", "needs the production host"), ("Diagnosis", "console", None)]
    assert blocks[0].commands() == ["cd /opt/feedops", "make status"]
    assert blocks[2].commands() == ["make health"]  # the $ lines only


def test_alert_pages_run_only_their_diagnosis(tmp_path):
    page = tmp_path / "Watchdog.md"
    page.write_text("# A\n\n## Diagnosis\n\n```bash\nmake status\n```\n\n## Mitigation\n\n```bash\nmake restart\n```\n")
    assert [b.commands() for b in docrun.extract(page, page="alerts/Watchdog.md")] == [["make status"]]


def test_a_marker_applies_to_the_next_block_only(tmp_path):
    page = tmp_path / "premarket.md"
    page.write_text("<!-- not-run: x -->\nsome prose\n\n```bash\nmake status\n```\n")
    assert docrun.extract(page, page="procedures/premarket.md")[0].not_run is None


def test_missing_make_target_file_and_module_are_problems():
    block = docrun.Block("procedures/restart.md", 1, "Steps", "bash",
                         "make frobnicate ARGS='--x'\ntail -n 5 lib/feedops/data/nope.txt\n"
                         "bash scripts/operations/gone.sh\n.venv/bin/python -m feedops.nothere check\n"
                         "make status && cat docs/ops/README.md  # make fine-in-a-comment")
    found = docrun.problems(block)
    assert found == ["make target 'frobnicate' does not exist (Makefile)", "lib/feedops/data/nope.txt does not exist",
                     "scripts/operations/gone.sh does not exist",
                     "python module feedops.nothere does not exist (lib/feedops/nothere.py)"]


def test_a_broken_page_fails_and_a_marked_block_is_not_run(tmp_path):
    failing = docrun.Block("procedures/restart.md", 1, "Steps", "bash", "cd /opt/feedops\ntrue\nexit 3\necho never")
    result = docrun.run(failing, _stack(tmp_path))
    assert not result.ok and result.returncode == 3 and result.problems == ["exit 3"]
    assert "exit 3" in docrun.explain(result)
    pipe = docrun.Block("procedures/restart.md", 1, "Steps", "bash", "false | cat")  # pipefail: a failing pipe fails
    assert not docrun.run(pipe, _stack(tmp_path)).ok
    missing = docrun.Block("procedures/restart.md", 1, "Steps", "bash", "make no-such-target")
    result = docrun.run(missing, _stack(tmp_path))
    assert not result.ok and result.returncode is None  # refused before it runs
    marked = docrun.Block("procedures/restart.md", 1, "Steps", "bash", "exit 9", not_run="prod only")
    assert docrun.run(marked, _stack(tmp_path)).ok


def test_replacements_point_the_pages_at_the_stack(tmp_path):
    block = docrun.Block("alerts/Watchdog.md", 1, "Diagnosis", "bash",
                         "curl -s http://127.0.0.1:9108/status\ntail var/state/logs/worker-0.log")
    stack = docrun.Stack(ROOT, {}, {"127.0.0.1:9108": "127.0.0.1:40001", "var/state/": "/tmp/s/"})
    assert stack.render(block) == "curl -s http://127.0.0.1:40001/status\ntail /tmp/s/logs/worker-0.log\n"


def test_every_procedure_and_alert_page_has_a_block_and_names_what_exists():
    blocks = [b for page in docrun.pages() for b in docrun.extract(page)]
    expected = {str(p.relative_to(docrun.DOCS)) for p in docrun.pages()}
    assert {b.page for b in blocks} == expected, sorted(expected - {b.page for b in blocks})
    assert docrun.pages()[-1].name == "shutdown.md"  # the feed runs while the alert pages are diagnosed
    skipped = [f"{b.where}: {b.not_run}" for b in blocks if b.not_run is not None]
    assert len(skipped) <= 3, skipped
    assert {b.where: docrun.problems(b) for b in blocks if docrun.problems(b)} == {}
