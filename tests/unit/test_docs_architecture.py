"""The architecture map of docs/ops/README.md names modules that exist: a split or a rename that
leaves the map behind fails here, not in a newcomer's search."""

from __future__ import annotations

import re

from feedops.paths import ROOT

README = ROOT / "docs" / "ops" / "README.md"
#: A backticked path: a module (``worker/gateway.py``), a folder (``envs/``) or a file with a suffix.
PATH = re.compile(r"`([A-Za-z0-9_./-]+(?:\.py|\.json|\.sh|/))`")


def architecture_section() -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index("\n## Architecture")
    end = text.find("\n## ", start + 1)
    return text[start:] if end < 0 else text[start:end]


def cited_paths(section: str) -> list[str]:
    return sorted(set(PATH.findall(section)))


def test_every_module_the_map_names_exists():
    section = architecture_section()
    cited = cited_paths(section)
    assert len(cited) > 40, cited  # the map names the modules of every step
    missing = [p for p in cited if not ((ROOT / "lib" / "feedops" / p).exists() or (ROOT / p).exists())]
    assert not missing, f"docs/ops/README.md's architecture names paths that do not exist: {missing}"


def test_the_map_names_every_step_of_the_flow():
    section = architecture_section()
    for step in ("config", "validate", "start", "worker", "sink", "health", "monitoring"):
        assert re.search(rf"^\| {step} \|", section, re.M), f"no row for the step {step!r}"


def test_the_path_pattern_finds_modules_folders_and_repository_files():
    sample = "`worker/gateway.py`, `envs/`, `schemas/tick-record.schema.json`, `feedops.<tool>.cli`, `make drills`"
    assert cited_paths(sample) == ["envs/", "schemas/tick-record.schema.json", "worker/gateway.py"]
