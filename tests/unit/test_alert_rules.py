"""The alert rules, their promtool tests and runbook pages, checked mechanically.

promtool (Debian `prometheus`) checks and unit-tests the committed rule files; the rest
reads the committed files themselves: every alert carries its labels and annotations,
has firing and non-firing test cases (not firing before its `for`), tick alerts are
tested silent while no instrument is open, every runbook_url is a page with the five
headings, every metric a rule names exists, and every command a page or `fix` names
exists in this repository.
"""

from __future__ import annotations

import importlib.util
import re
import shlex
import shutil
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

import pytest
import yaml

from feedops import metric_names
from feedops.monitoring import rules as gen

ROOT = Path(__file__).resolve().parents[2]
RULE_FILES = sorted((ROOT / "monitoring/prometheus/rules").glob("*.yml"))
TEST_FILES = sorted((ROOT / "monitoring/prometheus/tests").glob("*.yml"))
HEADINGS = ("Meaning", "Impact", "Diagnosis", "Mitigation", "Escalation")
#: Series the exporters and servers expose themselves (not feedops names).
EXPORTER_METRICS = {
    "up", "push_time_seconds", "prometheus_rule_evaluation_failures_total", "alertmanager_notifications_failed_total",
    "redis_stream_length", "redis_stream_last_generated_id", "redis_stream_group_last_delivered_id",
    "redis_stream_group_messages_pending",
}
PROMQL_WORDS = {"and", "or", "unless", "bool", "by", "without", "on", "ignoring", "group_left", "group_right", "offset", "inf",
                "nan"}


def _promtool() -> str:
    path = shutil.which("promtool")
    if not path:
        pytest.skip("promtool not installed (apt-get install prometheus)")
    return path


@lru_cache(maxsize=None)
def rule_docs() -> tuple[dict, ...]:
    return tuple(yaml.safe_load(p.read_text()) for p in RULE_FILES)


def alert_rules() -> list[dict]:
    return [r for doc in rule_docs() for g in doc["groups"] for r in g["rules"] if "alert" in r]


def recording_rules() -> list[dict]:
    return [r for doc in rule_docs() for g in doc["groups"] for r in g["rules"] if "record" in r]


def alert_names() -> list[str]:
    return sorted({r["alert"] for r in alert_rules()})


def _seconds(duration: str) -> int:
    total = 0
    for number, unit in re.findall(r"(\d+)([smhd])", duration or "0s"):
        total += int(number) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[unit]
    return total


@lru_cache(maxsize=None)
def promtool_groups() -> tuple[dict, ...]:
    return tuple(group for path in TEST_FILES for group in yaml.safe_load(path.read_text())["tests"])


# ---------------------------------------------------------------- generated, and accepted by promtool
def test_committed_rules_and_pages_are_the_generated_ones():
    assert gen.stale_files(ROOT) == [], "regenerate: .venv/bin/python -m feedops.monitoring.rules"


def test_generation_is_deterministic():
    assert gen.all_files() == gen.all_files()


def test_promtool_check_rules():
    result = subprocess.run([_promtool(), "check", "rules", *map(str, RULE_FILES)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_tests_pass():
    assert TEST_FILES
    result = subprocess.run([_promtool(), "test", "rules", *map(str, TEST_FILES)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_tests_can_fail(tmp_path):
    """A rule file with a changed threshold makes the committed tests fail: they pin values."""
    rules_dir = tmp_path / "rules"
    rules_dir.mkdir()
    text = (ROOT / "monitoring/prometheus/rules/feedops.yml").read_text()
    assert 'feedops_coverage_ratio{exchange!="all"} < 0.98' in text
    (rules_dir / "feedops.yml").write_text(text.replace('feedops_coverage_ratio{exchange!="all"} < 0.98',
                                                        'feedops_coverage_ratio{exchange!="all"} < 0.5'))
    tests_dir = tmp_path / "tests"
    tests_dir.mkdir()
    shutil.copy(ROOT / "monitoring/prometheus/tests/feed.yml", tests_dir / "feed.yml")
    result = subprocess.run([_promtool(), "test", "rules", str(tests_dir / "feed.yml")], capture_output=True, text=True)
    assert result.returncode != 0 and "FeedCoverageLow" in result.stdout + result.stderr


# ---------------------------------------------------------------- labels and annotations
@pytest.mark.parametrize("rule", alert_rules(), ids=lambda r: f"{r['alert']}-{r['labels']['severity']}")
def test_every_alert_has_severity_env_and_annotations(rule):
    assert rule["labels"]["severity"] in {"critical", "warning", "none"}
    assert "env" in rule["labels"]
    annotations = rule["annotations"]
    for key in ("summary", "description", "runbook_url", "fix"):
        assert annotations.get(key, "").strip(), f"{rule['alert']}: no {key}"
    if rule["expr"] != "vector(1)":  # the Watchdog has nothing to observe
        assert "$value" in annotations["description"] or "$labels" in annotations["description"]
    assert rule["alert"] == "Watchdog" or _seconds(rule.get("for")) >= 60, "every alert but the Watchdog has a for"


def test_warning_and_critical_are_the_same_alert_with_different_thresholds():
    by_name: dict[str, list[dict]] = {}
    for rule in alert_rules():
        by_name.setdefault(rule["alert"], []).append(rule)
    for name, rules in by_name.items():
        severities = [r["labels"]["severity"] for r in rules]
        assert len(severities) == len(set(severities)), f"{name}: one rule per severity"
        if len(rules) > 1:
            assert set(severities) == {"warning", "critical"}
            assert len({r["expr"] for r in rules}) == len(rules)


# ---------------------------------------------------------------- every alert is tested
def _cases(name: str) -> list[tuple[int, dict, dict]]:
    return [(i, group, case) for i, group in enumerate(promtool_groups())
            for case in group.get("alert_rule_test", []) if case["alertname"] == name]


@pytest.mark.parametrize("name", alert_names())
def test_every_alert_has_firing_and_non_firing_cases(name):
    cases = _cases(name)
    firing = [c for c in cases if c[2].get("exp_alerts")]
    silent = [c for c in cases if not c[2].get("exp_alerts")]
    assert firing, f"{name}: no test case where it fires"
    assert silent or name == "Watchdog", f"{name}: no test case where it stays silent"  # the Watchdog always fires
    for _, _, case in firing:
        for alert in case["exp_alerts"]:
            assert "severity" in alert.get("exp_labels", {}), f"{name}: labels not pinned"
            assert set(alert.get("exp_annotations", {})) == {"summary", "description", "runbook_url", "fix"}, \
                f"{name}: annotations not pinned"


@pytest.mark.parametrize("rule", [r for r in alert_rules() if r.get("for")], ids=lambda r: f"{r['alert']}-{r['labels']['severity']}")
def test_every_alert_is_silent_before_its_for(rule):
    """In the group where this severity fires, a case earlier within its `for` expects nothing of it."""
    name, severity, pending = rule["alert"], rule["labels"]["severity"], _seconds(rule["for"])
    ok = False
    for index, _, case in _cases(name):
        if not any(a.get("exp_labels", {}).get("severity") == severity for a in case.get("exp_alerts") or []):
            continue
        fires_at = _seconds(case["eval_time"])
        for other_index, _, other in _cases(name):
            silent = not any(a.get("exp_labels", {}).get("severity") == severity for a in other.get("exp_alerts") or [])
            if other_index == index and silent and fires_at - pending <= _seconds(other["eval_time"]) < fires_at:
                ok = True
    assert ok, f"{name} ({severity}): no case showing it silent within its for ({rule['for']}) before it fires"


def _market_hours_alerts() -> list[str]:
    return [a.name for a in gen.ALERTS if a.market_hours]


@pytest.mark.parametrize("name", _market_hours_alerts())
def test_tick_alerts_are_tested_silent_when_the_market_is_closed(name):
    longest = max(_seconds(r.get("for")) for r in alert_rules() if r["alert"] == name)
    ok = False
    for _, group, case in _cases(name):
        closed = [s for s in group["input_series"]
                  if s["series"].startswith("feedops_instruments_open{") and re.fullmatch(r"0x\d+", s["values"])]
        if closed and not case.get("exp_alerts") and _seconds(case["eval_time"]) >= longest:
            ok = True
    assert ok, f"{name}: no test with feedops_instruments_open at 0 past its for"


def test_market_hours_alerts_are_the_tick_alerts():
    assert set(_market_hours_alerts()) >= {"FeedCoverageLow", "FeedStale", "FeedThroughputLow", "FeedTickLatencyHigh",
                                           "FeedInstrumentsNeverTicked", "FeedNotLoggedIn"}


# ---------------------------------------------------------------- runbook pages
@pytest.mark.parametrize("rule", alert_rules(), ids=lambda r: f"{r['alert']}-{r['labels']['severity']}")
def test_every_runbook_url_resolves_to_a_page_with_the_headings(rule):
    url = rule["annotations"]["runbook_url"]
    assert url == f"docs/ops/alerts/{rule['alert']}.md"
    page = ROOT / url
    assert page.is_file(), f"{url} missing"
    headings = re.findall(r"^## (.+)$", page.read_text(), flags=re.M)
    assert tuple(headings) == HEADINGS


def test_every_page_belongs_to_an_alert_and_is_indexed():
    pages = {p.stem for p in (ROOT / "docs/ops/alerts").glob("*.md")} - {"README"}
    assert pages == set(alert_names())
    index = (ROOT / "docs/ops/alerts/README.md").read_text()
    ops_readme = (ROOT / "docs/ops/README.md").read_text()
    for name in alert_names():
        assert f"]({name}.md)" in index
    assert "alerts/README.md" in ops_readme


# ---------------------------------------------------------------- metric names
def _names_in(expr: str) -> set[str]:
    text = re.sub(r'"[^"]*"', "", expr)  # label values, regexes
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # ranges
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    tokens = re.findall(r"(?<![\w:.])([A-Za-z_:][\w:]*)(?![\w:])(?!\s*\()", text)
    return {t for t in tokens if t.lower() not in PROMQL_WORDS}


def test_name_extraction_finds_metrics_and_skips_syntax():
    assert _names_in('sum by (env, job) (rate(a_total{x="y"}[5m])) > on(env) b:c:d and up == 0') == {"a_total", "b:c:d", "up"}


def test_rules_use_only_known_metric_names():
    known = metric_names.exposed_names() | EXPORTER_METRICS | {r["record"] for r in recording_rules()}
    used = set()
    for rule in alert_rules() + recording_rules():
        used |= _names_in(rule["expr"])
    assert used - known == set(), "add to lib/feedops/metric_names.py or EXPORTER_METRICS"
    for record in (r["record"] for r in recording_rules()):
        assert ":" in record, f"recording rule {record} does not follow level:metric:operations"


# ---------------------------------------------------------------- commands exist
@lru_cache(maxsize=None)
def make_targets() -> set[str]:
    return set(re.findall(r"^([a-z][a-z-]*):", (ROOT / "Makefile").read_text(), flags=re.M))


@lru_cache(maxsize=None)
def help_text(argv: tuple[str, ...]) -> str:
    result = subprocess.run(list(argv), capture_output=True, text=True, cwd=ROOT, timeout=60)
    return result.stdout + result.stderr


RUNBOOK = "scripts/operations/start_live_env.sh"
TARGET_HELP = {
    "health": (sys.executable, "scripts/operations/check_feed_health.py", "--help"),
    "validate": (sys.executable, "scripts/operations/validate_env.py", "--help"),
}


def _runbook_modes() -> set[str]:
    match = re.search(r'^readonly MODES="([^"]+)"', (ROOT / RUNBOOK).read_text(), flags=re.M)
    assert match
    return set(match.group(1).split())


def check_command(line: str) -> list[str]:
    """Problems with one shell line of a page (empty when its repository parts exist)."""
    line = line.split("  #", 1)[0].strip()
    if not line or line.startswith("#"):
        return []
    words = shlex.split(line)
    problems = []
    for word in words:  # repository paths a command reads
        if re.match(r"^(lib|scripts|docs|monitoring|deploy|envs)/", word) and "<" not in word and not (ROOT / word).exists():
            problems.append(f"{line}: {word} does not exist")
    if words[0] == "make":
        target = words[1]
        if target not in make_targets():
            return problems + [f"{line}: no make target {target}"]
        args = next((w.split("=", 1)[1] for w in words[2:] if w.startswith("ARGS=")), "")
        flags = [w for w in shlex.split(args) if w.startswith("--")]
        if flags:
            argv = TARGET_HELP.get(target) or (str(ROOT / RUNBOOK), "--help")
            if target not in TARGET_HELP and target not in _runbook_modes():
                return problems + [f"{line}: make {target} takes no runbook options"]
            text = help_text(argv)
            problems += [f"{line}: {flag} not in `{' '.join(argv[1:])}`" for flag in flags if flag not in text]
    elif words[0] == ".venv/bin/python" and words[1] == "-m":
        module = words[2]
        if importlib.util.find_spec(module) is None:
            return problems + [f"{line}: no module {module}"]
        text = help_text((sys.executable, "-m", module, "--help"))
        problems += [f"{line}: {w} not in its --help" for w in words[3:] if not w.startswith("-") or w.startswith("--")
                     if w.split("=", 1)[0] not in text]
    elif words[0] == ".venv/bin/python":
        problems += [] if (ROOT / words[1]).is_file() else [f"{line}: {words[1]} missing"]
    return problems


def test_command_check_rejects_what_does_not_exist():
    assert check_command("make frobnicate")
    assert check_command("make failover ARGS='--to-nowhere backup'")
    assert check_command(".venv/bin/python -m feedops.no_such_module")
    assert check_command("tail lib/feedops/data/no-such-file.txt")
    assert not check_command("make failover ARGS='--to backup'   # comment")
    assert not check_command("curl -s http://127.0.0.1:9108/status")


def _page_commands(text: str) -> list[str]:
    return [line for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S) for line in block.splitlines()]


@pytest.mark.parametrize("name", alert_names())
def test_every_command_of_a_page_and_fix_exists(name):
    page = (ROOT / f"docs/ops/alerts/{name}.md").read_text()
    commands = _page_commands(page)
    assert commands, f"{name}: the page names no command"
    fixes = {r["annotations"]["fix"] for r in alert_rules() if r["alert"] == name}
    problems = [p for line in commands + sorted(fixes) for p in check_command(line)]
    assert not problems, problems
    for fix in fixes:
        assert fix.startswith(("make ", ".venv/bin/python ")), f"{name}: fix {fix!r} is not a command of this repository"
        assert f"`{fix}`" in page, f"{name}: the page does not show its fix"


# ---------------------------------------------------------------- per-environment rendering
def test_an_environment_rendering_takes_its_thresholds_from_its_env_file(tmp_path):
    from feedops.monitoring.config import thresholds
    from feedops.settings import load_settings

    secrets = tmp_path / "secrets"
    secrets.mkdir(mode=0o700)
    feed = load_settings("dev", environ={"FEEDOPS_SECRETS_DIR": str(secrets)}).feed
    assert feed.latency_p99_warn_seconds == 1.0  # envs/dev.env: ctp-sim's stamp granularity
    (rel, text), = gen.rule_files(thresholds(feed)).items()
    committed = (ROOT / rel).read_text()
    changed = [(a, b) for a, b in zip(committed.splitlines(), text.splitlines()) if a != b]
    assert len(committed.splitlines()) == len(text.splitlines())
    assert changed and all("latency" in a and "0.5" in a and "0.5" not in b for a, b in changed)
    out = tmp_path / "feedops.yml"
    out.write_text(text)
    result = subprocess.run([_promtool(), "check", "rules", str(out)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
