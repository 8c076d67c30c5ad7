"""docs/ops/premarket-checklist.md lists exactly the checks validate_env.py runs."""

from __future__ import annotations

import re

from feedops.validate import CHECKS, check_ids
from validate_support import ROOT

DOC = ROOT / "docs" / "ops" / "premarket-checklist.md"


def documented_ids() -> list[str]:
    """Check ids in the first column of the checklist table, in order."""
    return re.findall(r"^\| `([a-z0-9_.]+)` \|", DOC.read_text(), flags=re.M)


def test_the_page_lists_every_check_once_in_the_tool_order():
    assert documented_ids() == check_ids()


def test_check_ids_are_unique_and_stable_looking():
    ids = check_ids()
    assert len(ids) == len(set(ids))
    assert all(re.fullmatch(r"[a-z][a-z0-9_]*(\.[a-z0-9_]+)+", i) for i in ids)


def test_probe_checks_are_named_probe():
    assert {spec.id for spec in CHECKS if spec.probe} == {i for i in check_ids() if i.startswith("probe.")}


def test_the_issue_checklist_is_covered():
    required = {"profile.required", "profile.backup_complete", "fronts.well_formed", "secrets.present",
                "secrets.not_placeholder", "ratelimits.ctp_limits", "flow_dir.writable", "locale.gb18030",
                "probe.fronts_tcp", "probe.monitoring", "probe.sink"}
    assert required <= set(check_ids())
