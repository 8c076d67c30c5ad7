"""Every relative link in the operators' docs resolves to a file of this repository, and code, comments
and docs cite no file outside it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = sorted([*ROOT.glob("docs/**/*.md"), ROOT / "README.md", ROOT / "monitoring" / "README.md"])
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")
#: A cited markdown file: a path with a slash (docs/ops/time.md, ../shared/X.md) or an upper-case name (README.md).
CITED = re.compile(r"(?<![\w$/.-])((?:[\w.-]+/)+[\w.-]+\.md|[A-Z][A-Z0-9_-]*\.md)\b")
#: Where this machine keeps material that is not part of the repository.
OUTSIDE = re.compile(r"/work/|\.\./shared/|\bshared/[\w.-]+\.md")
SKIP_DIRS = {".git", ".venv", "var", "build", "__pycache__", ".pytest_cache", ".ruff_cache"}
TEXT_SUFFIXES = {".py", ".sh", ".bash", ".bats", ".md", ".toml", ".yml", ".yaml", ".json", ".env", ".example", ".tmpl",
                 ".txt", ".csv", ".service", ".timer", ""}


def repository_files() -> list[Path]:
    found = []
    for path in ROOT.rglob("*"):
        rel = path.relative_to(ROOT)
        if path.is_file() and not SKIP_DIRS & set(rel.parts) and not rel.parts[0].endswith(".egg-info") \
                and path.suffix in TEXT_SUFFIXES and path.name != "requirements.lock":
            found.append(path)
    return found


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page):
    missing = [target for target in LINK.findall(page.read_text())
               if not target.startswith(("http://", "https://", "mailto:")) and not (page.parent / target).exists()]
    assert not missing, f"{page.relative_to(ROOT)} links to missing files: {missing}"


def test_the_link_pattern_finds_links():
    assert LINK.findall("see [a](b.md#x) and [c](../d/e.md)") == ["b.md", "../d/e.md"]


def outside_citations(files: list[Path]) -> dict[str, list[str]]:
    """Per file, the markdown files it names that are not in the repository, and paths outside it."""
    known = [f.relative_to(ROOT).as_posix() for f in files]
    here = Path(__file__).resolve()
    problems: dict[str, list[str]] = {}
    for path in files:
        if path.resolve() == here:  # this file's patterns and examples
            continue
        text = path.read_text(errors="replace")
        bad = [m.group(0) for m in OUTSIDE.finditer(text)]
        for cited in CITED.findall(text):
            name = cited.lstrip("./")
            if not any(k == name or k.endswith("/" + name) for k in known):
                bad.append(cited)
        if bad:
            problems[path.relative_to(ROOT).as_posix()] = sorted(set(bad))
    return problems


def test_code_comments_and_docs_cite_no_file_outside_the_repository():
    files = repository_files()
    assert ROOT / "lib" / "feedops" / "settings.py" in files and ROOT / "docs" / "ops" / "README.md" in files
    problems = outside_citations(files)
    assert not problems, f"cite files of this repository only (CTP facts: docs/ops/ctp-reference.md): {problems}"


def test_the_citation_check_finds_outside_files():
    assert CITED.findall("see CTP_FACTS.md and docs/ops/time.md, not self.md") == ["CTP_FACTS.md", "docs/ops/time.md"]
    assert OUTSIDE.findall("(see ../shared/STYLE.md or /work/shared/x)") == ["../shared/", "/work/"]
