"""The instrument list is checked before it is trusted (feedops.worker.instruments; no front)."""

from __future__ import annotations

import json

import pytest

from feedops.worker import instruments as im


def rows(n_shfe=300, n_dce=200, n_czce=100):
    out = []
    for exchange, n in (("SHFE", n_shfe), ("DCE", n_dce), ("CZCE", n_czce)):
        out += [[f"{exchange.lower()}{i:04d}", exchange, "p", "1"] for i in range(n)]
    return out


def test_cache_round_trip_verifies_count_and_checksum(tmp_path):
    path = tmp_path / "instruments-sim-primary-20261127.json"
    im.write_cache(path, "20261127", rows(), None)
    listed, flagged = im.read_cache(path)
    assert len(listed) == 600 and flagged is None and listed[0] == ("shfe0000", "SHFE", "p", "1")


def test_a_truncated_but_well_formed_cache_is_not_trusted(tmp_path):
    path = tmp_path / "instruments-sim-primary-20261127.json"
    im.write_cache(path, "20261127", rows(), None)
    doc = json.loads(path.read_text())
    doc["instruments"] = doc["instruments"][:10]  # valid JSON, 10 rows, the count and checksum of 600
    path.write_text(json.dumps(doc))
    with pytest.raises(im.CacheError, match="10 rows do not match the count \\(600\\)"):
        im.read_cache(path)
    del doc["count"], doc["sha256"]  # the old format, or a hand-made file
    path.write_text(json.dumps(doc))
    with pytest.raises(im.CacheError, match="no count and checksum"):
        im.read_cache(path)


def test_the_expectation_is_the_newest_earlier_trusted_day(tmp_path):
    prefix = "instruments-sim-primary-"
    im.write_cache(tmp_path / f"{prefix}20261125.json", "20261125", rows(), None)
    im.write_cache(tmp_path / f"{prefix}20261126.json", "20261126", rows(n_dce=5), "flagged")  # suspicious: skipped
    im.write_cache(tmp_path / f"{prefix}20261128.json", "20261128", rows(n_shfe=1), None)  # later day: ignored
    (tmp_path / f"{prefix}20261124.json").write_text("{}")  # unreadable: skipped
    assert im.expectation(tmp_path, prefix, "20261127") == ("20261125", {"CZCE": 100, "DCE": 200, "SHFE": 300})
    assert im.expectation(tmp_path, prefix, "20261125") is None
    assert im.expectation(tmp_path, "instruments-ctp-primary-", "20261127") is None  # another channel


@pytest.mark.parametrize("today, verdict", [
    (rows(), None),
    (rows(n_shfe=290, n_dce=190), None),  # an ordinary day: a few expiries
    (rows(n_shfe=10, n_dce=0, n_czce=0), "10 instruments, 600 on 20261126"),
    (rows(n_shfe=400, n_dce=90), "exchanges short against 20261126: DCE 90 of 200"),
    ([], "the list is empty"),
])
def test_judge_against_the_previous_day(today, verdict):
    expected = ("20261126", im.by_exchange(rows()))
    reason = im.judge(today, expected)
    assert (reason is None) if verdict is None else (verdict in reason), reason


def test_without_an_earlier_day_only_an_empty_list_is_suspicious():
    assert im.judge(rows(n_shfe=1, n_dce=0, n_czce=0), None) is None
    assert im.judge([], None) == "the list is empty"
