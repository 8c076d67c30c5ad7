"""The runbook pages run: extract the command blocks of docs/ops and execute them.

Which blocks run (docs/ops/README.md, "The pages run"):

* every fenced ````bash```` or ````console```` block of a procedure page
  (``docs/ops/procedures/*.md``);
* the ````bash```` block under the ``## Diagnosis`` heading of an alert page
  (``docs/ops/alerts/*.md``);
* except a block preceded (on the line before its fence, blank lines allowed) by
  ``<!-- not-run: REASON -->``: it is counted and listed with its reason, never run.

A ``console`` block's commands are its ``$ `` lines; a ``bash`` block is a script. Every
block is checked before it runs: each ``make TARGET`` must be a target of the Makefile, each
repository path it names (``scripts/...``, ``lib/...``, ``envs/...``, ...) must exist.
It then runs with ``bash -euo pipefail`` in the checkout, on the addresses and state of the
stack it is given: :class:`Stack` maps what the pages show (the dev defaults, e.g.
``127.0.0.1:9108``, ``var/state/``, ``/opt/feedops``) to that stack's. A non-zero exit
fails the block.
"""

from __future__ import annotations

import dataclasses
import re
import subprocess
import time
from pathlib import Path

from .paths import ROOT

DOCS = ROOT / "docs" / "ops"
#: the procedure pages in the order of a trading day (the order the integration test runs them);
#: the alert pages' diagnosis runs on the running feed, before the shutdown
PROCEDURES = ("premarket", "restart", "failover", "rollback")
LAST = ("shutdown",)
NOT_RUN = re.compile(r"<!--\s*not-run:\s*(?P<reason>.+?)\s*-->")
FENCE = re.compile(r"^(?P<indent>\s*)```(?P<lang>[\w-]*)\s*$")
HEADING = re.compile(r"^(#{1,6})\s+(?P<title>.+?)\s*$")
RUN_LANGS = ("bash", "console")
#: top-level names of the repository a command may name as a path
REPO_DIRS = ("scripts", "lib", "docs", "envs", "deploy", "monitoring", "bench", "tests", ".ci")
PATH_TOKEN = re.compile(r"(?<![\w./-])(?:\./)?(?P<path>(?:%s)/[\w./@-]*[\w])" % "|".join(re.escape(d) for d in REPO_DIRS))
MAKE_CALL = re.compile(r"(?:^|[;&|]\s*|\s)make\s+(?P<args>[^;&|#]*)")
MODULE_CALL = re.compile(r"-m\s+(?P<module>feedops(?:\.\w+)*)")


@dataclasses.dataclass(frozen=True)
class Block:
    page: str  # relative to docs/ops
    line: int  # 1-based line of the opening fence
    heading: str
    lang: str
    text: str
    not_run: str | None = None  # the reason, when marked

    @property
    def where(self) -> str:
        return f"docs/ops/{self.page}:{self.line}"

    def commands(self) -> list[str]:
        """The command lines (comments and blank lines dropped; console: the ``$`` lines)."""
        lines = self.text.splitlines()
        if self.lang == "console":
            lines = [ln.strip()[2:] for ln in lines if ln.strip().startswith("$ ")]
        return [ln for ln in (strip_comment(ln) for ln in lines) if ln.strip()]

    def script(self) -> str:
        return "\n".join(self.commands()) + "\n"


def strip_comment(line: str) -> str:
    """``line`` without a trailing shell comment (a ``#`` outside quotes, at the start or after a blank)."""
    quote = None
    for i, ch in enumerate(line):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip()
    return line.rstrip()


def pages() -> list[Path]:
    """The pages whose blocks run, in the order they run: the procedures of a trading day, every
    alert page (on the running feed), the shutdown."""
    procs = [DOCS / "procedures" / f"{name}.md" for name in PROCEDURES]
    named = {*PROCEDURES, *LAST}
    procs += sorted(p for p in (DOCS / "procedures").glob("*.md") if p.stem not in named)
    alerts = sorted(p for p in (DOCS / "alerts").glob("*.md") if p.name != "README.md")
    return procs + alerts + [DOCS / "procedures" / f"{name}.md" for name in LAST]


def extract(path: Path, text: str | None = None, page: str | None = None) -> list[Block]:
    """The blocks of ``path`` that the convention selects (marked ones included, with their reason)."""
    text = path.read_text() if text is None else text
    if page is None:
        page = str(path.relative_to(DOCS)) if path.is_relative_to(DOCS) else path.name
    alert_page = page.startswith("alerts/")
    blocks: list[Block] = []
    heading, pending, fence, body, start = "", None, None, [], 0
    for number, line in enumerate(text.splitlines(), 1):
        if fence is not None:
            if line.strip() == "```":
                selected = fence in RUN_LANGS and (not alert_page or heading == "Diagnosis")
                if selected:
                    blocks.append(Block(page, start, heading, fence, "\n".join(_dedent(body)), pending))
                fence, body, pending = None, [], None
            else:
                body.append(line)
            continue
        if m := FENCE.match(line):
            fence, start = m["lang"], number
            body = []
            continue
        if m := HEADING.match(line):
            heading, pending = m["title"], None
        elif m := NOT_RUN.search(line):
            pending = m["reason"]
        elif line.strip():
            pending = None
    return blocks


def _dedent(lines: list[str]) -> list[str]:
    width = min((len(ln) - len(ln.lstrip()) for ln in lines if ln.strip()), default=0)
    return [ln[width:] for ln in lines]


def make_targets(makefile: Path = ROOT / "Makefile") -> set[str]:
    targets = set()
    for line in makefile.read_text().splitlines():
        if m := re.match(r"^([A-Za-z][\w.-]*(?:\s+[A-Za-z][\w.-]*)*)\s*:(?!=)", line):
            targets.update(m[1].split())
    return targets


def problems(block: Block, root: Path = ROOT, targets: set[str] | None = None) -> list[str]:
    """What ``block`` names that does not exist: make targets, repository files, feedops modules."""
    targets = make_targets(root / "Makefile") if targets is None else targets
    found = []
    for command in block.commands():
        for m in MAKE_CALL.finditer(command):
            words = [w for w in m["args"].split() if "=" not in w and not w.startswith("-")]
            for word in words[:1] or ["(none)"]:
                if word not in targets:
                    found.append(f"make target {word!r} does not exist (Makefile)")
        for m in PATH_TOKEN.finditer(command):
            path = m["path"]
            if "<" in path or "*" in path:
                continue
            if not (root / path).exists():
                found.append(f"{path} does not exist")
        for m in MODULE_CALL.finditer(command):
            rel = Path("lib", *m["module"].split("."))
            if not ((root / rel).with_suffix(".py").exists() or (root / rel / "__init__.py").exists()):
                found.append(f"python module {m['module']} does not exist ({rel}.py)")
    return found


@dataclasses.dataclass(frozen=True)
class Stack:
    """Where the pages' dev defaults point on the stack the blocks run against."""

    root: Path
    environ: dict[str, str]
    replacements: dict[str, str]

    def render(self, block: Block) -> str:
        script = block.script()
        for old in sorted(self.replacements, key=len, reverse=True):
            script = script.replace(old, self.replacements[old])
        return script


@dataclasses.dataclass
class Result:
    block: Block
    returncode: int | None  # None: not run (marked, or a reference is missing)
    output: str
    seconds: float
    problems: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems and (self.block.not_run is not None or self.returncode == 0)


def run(block: Block, stack: Stack, timeout: float = 300) -> Result:
    """Check what ``block`` names, then (unless marked not-run) execute it against ``stack``."""
    found = problems(block, stack.root)
    if block.not_run is not None or found:
        return Result(block, None, "", 0.0, found)
    started = time.monotonic()
    try:
        proc = subprocess.run(["bash", "-euo", "pipefail", "-c", stack.render(block)], cwd=stack.root,
                              env=stack.environ, capture_output=True, text=True, timeout=timeout)
        rc, out = proc.returncode, proc.stdout + proc.stderr
    except subprocess.TimeoutExpired as exc:
        rc, out = 124, f"timed out after {timeout:.0f}s\n{exc.stdout or ''}{exc.stderr or ''}"
    return Result(block, rc, out, time.monotonic() - started, [] if rc == 0 else [f"exit {rc}"])


def explain(result: Result) -> str:
    lines = [f"{result.block.where} ({result.block.heading}): " + "; ".join(result.problems or ["ok"]),
             "block:", *("  " + ln for ln in result.block.text.splitlines())]
    if result.output:
        lines += ["output (tail):", *("  " + ln for ln in result.output.splitlines()[-40:])]
    return "\n".join(lines)
