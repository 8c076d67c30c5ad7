"""Coverage: open/fresh counting against the calendar, per exchange and product class."""

from __future__ import annotations

import datetime as dt

import pytest

from feedops import coverage
from feedops.calendar import BEIJING, TradingCalendar

AT = dt.datetime(2026, 11, 24, 21, 30, tzinfo=BEIJING)  # Tuesday night: rb, au, SR open; IF, jd closed
NOW = AT.timestamp()
ROWS = [
    ("rb2601", "SHFE", "rb", "futures"),
    ("au2602", "SHFE", "au", "futures"),
    ("cu2601C78000", "SHFE", "cu_o", "options"),
    ("SR601", "CZCE", "SR", "futures"),
    ("IF2512", "CFFEX", "IF", "futures"),
    ("jd2601", "DCE", "jd", "futures"),
]


@pytest.fixture
def cal():
    return TradingCalendar("exchange", set())


def run(cal, ticks, at=AT, **kw):
    return coverage.compute_from_rows(ROWS, ticks, calendar=cal, at=at, window_seconds=60, **kw)


def test_counts_only_open_instruments(cal):
    ticks = {"rb2601": NOW - 5, "au2602": NOW - 120, "SR601": None, "IF2512": NOW - 9999, "jd2601": None}
    cov = run(cal, ticks)
    assert (cov.instruments, cov.open, cov.fresh) == (6, 4, 1)
    assert cov.ratio == pytest.approx(0.25)
    assert cov.by_exchange["SHFE"].as_dict() == {"instruments": 3, "open": 3, "fresh": 1, "ratio": pytest.approx(1 / 3)}
    assert cov.by_exchange["CFFEX"].open == 0 and cov.by_exchange["CFFEX"].ratio is None
    assert cov.by_product_class["options"].open == 1 and cov.by_product_class["options"].fresh == 0
    assert cov.never_ticked.count == 3 and set(cov.never_ticked.sample) == {"cu2601C78000", "SR601", "jd2601"}
    assert cov.open_never_ticked == 2
    assert cov.stale.as_dict() == {"count": 1, "sample": ["au2602"]}
    assert cov.oldest_open_tick_age_seconds == pytest.approx(120)
    assert cov.newest_open_tick_age_seconds == pytest.approx(5)
    assert cov.newest_tick_age_seconds == pytest.approx(5)


def test_window_edge_is_fresh(cal):
    cov = run(cal, {"rb2601": NOW - 60})
    assert cov.fresh == 1


def test_closed_market_has_no_ratio(cal):
    saturday = dt.datetime(2026, 11, 28, 12, 0, tzinfo=BEIJING)
    cov = run(cal, {"rb2601": saturday.timestamp() - 1}, at=saturday)
    assert cov.open == 0 and cov.ratio is None and not cov.market_open
    assert cov.oldest_open_tick_age_seconds is None
    assert cov.newest_tick_age_seconds == pytest.approx(1)


def test_always_open_judges_everything():
    cov = run(TradingCalendar("always-open"), {r[0]: NOW for r in ROWS})
    assert cov.open == 6 and cov.ratio == 1.0


def test_stale_sample_is_oldest_first_and_bounded(cal):
    rows = [(f"rb{i:04d}", "SHFE", "rb", "futures") for i in range(50)]
    ticks = {name: NOW - 100 - i for i, (name, *_rest) in enumerate(rows)}
    cov = coverage.compute_from_rows(rows, ticks, calendar=cal, at=AT, window_seconds=60, sample_size=3)
    assert cov.stale.count == 50
    assert cov.stale.sample == ["rb0049", "rb0048", "rb0047"]


def test_table_shape_and_errors(cal):
    table = {"instrument": ["rb2601"], "exchange": ["SHFE"], "product": ["rb"], "product_class": ["futures"],
             "last_tick_unix": [NOW]}
    assert coverage.compute_from_table(table, calendar=cal, at=AT, window_seconds=60).fresh == 1
    with pytest.raises(ValueError, match="product_class"):
        coverage.compute_from_table({k: v for k, v in table.items() if k != "product_class"},
                                    calendar=cal, at=AT, window_seconds=60)
    with pytest.raises(ValueError, match="differ in length"):
        coverage.compute_from_table({**table, "exchange": []}, calendar=cal, at=AT, window_seconds=60)


def test_merge_tables_keeps_newest_tick():
    a = {"instrument": ["rb2601", "au2602"], "exchange": ["SHFE"] * 2, "product": ["rb", "au"],
         "product_class": ["futures"] * 2, "last_tick_unix": [10.0, None]}
    b = {"instrument": ["au2602", "SR601"], "exchange": ["SHFE", "CZCE"], "product": ["au", "SR"],
         "product_class": ["futures"] * 2, "last_tick_unix": [20.0, 5.0]}
    merged = coverage.merge_tables([a, b])
    assert merged["instrument"] == ["rb2601", "au2602", "SR601"]
    assert merged["last_tick_unix"] == [10.0, 20.0, 5.0]


def test_as_dict_matches_worker_status_coverage_shape(cal):
    import json

    import jsonschema

    from feedops.paths import SCHEMAS_DIR

    schema = json.loads((SCHEMAS_DIR / "worker-status.schema.json").read_text())
    cov_schema = {"$defs": schema["$defs"], **schema["properties"]["coverage"]}
    jsonschema.validate(run(cal, {"rb2601": NOW}).as_dict(), cov_schema)


def test_large_table_counts(cal):
    products = [("SHFE", "rb"), ("SHFE", "au"), ("CZCE", "SR"), ("CFFEX", "IF"), ("DCE", "m_o"), ("DCE", "jd")]
    n = 20_000
    cols = {"instrument": [f"X{i}" for i in range(n)], "exchange": [products[i % 6][0] for i in range(n)],
            "product": [products[i % 6][1] for i in range(n)], "product_class": ["futures"] * n,
            "last_tick_unix": [None if i % 97 == 0 else NOW - (i % 120) for i in range(n)]}
    cov = coverage.compute_from_table(cols, calendar=cal, at=AT, window_seconds=60)
    open_idx = [i for i in range(n) if i % 6 in (0, 1, 2, 4)]
    fresh = [i for i in open_idx if i % 97 and i % 120 <= 60]
    assert cov.open == len(open_idx) and cov.fresh == len(fresh)
    assert cov.open_never_ticked == sum(1 for i in open_idx if i % 97 == 0)


def reference(rows, ticks, cal, at, window, sample):
    """Coverage counted the plain way, one instrument at a time (what compute's arrays must agree with)."""
    local, now = coverage.to_beijing(at), at.timestamp()
    out = {"open": 0, "fresh": 0, "never": [], "stale": [], "by_ex": {}, "open_never": 0}
    for name, ex, prod, cls in rows:
        bucket = out["by_ex"].setdefault(ex, [0, 0, 0, 0])
        bucket[0] += 1
        last = ticks.get(name)
        if last is None:
            out["never"].append(name)
            bucket[3] += 1
        if cal.session_of(cal.hours(ex, prod), local) is None:
            continue
        out["open"] += 1
        bucket[1] += 1
        if last is None:
            out["open_never"] += 1
        elif last >= now - window:
            out["fresh"] += 1
            bucket[2] += 1
        else:
            out["stale"].append((last, name))
    return out


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_vectorised_compute_agrees_with_plain_count(cal, seed):
    import random

    rnd = random.Random(seed)
    products = [("SHFE", "rb"), ("SHFE", "au"), ("CZCE", "SR"), ("CFFEX", "IF"), ("DCE", "m_o"), ("DCE", "jd")]
    rows = []
    for i in range(3000):
        ex, prod = rnd.choice(products)
        rows.append((f"I{rnd.randrange(10**6):06d}x{i}", ex, prod, "options" if prod.endswith("_o") else "futures"))
    # whole seconds so that many stale instruments tie on time: the sample must break ties by name
    ticks = {r[0]: (None if rnd.random() < 0.1 else NOW - rnd.randrange(0, 200)) for r in rows}
    cov = coverage.compute_from_rows(rows, ticks, calendar=cal, at=AT, window_seconds=60, sample_size=7)
    ref = reference(rows, ticks, cal, AT, 60, 7)
    assert (cov.open, cov.fresh, cov.open_never_ticked) == (ref["open"], ref["fresh"], ref["open_never"])
    assert cov.never_ticked.as_dict() == {"count": len(ref["never"]), "sample": ref["never"][:7]}
    assert cov.stale.as_dict() == {"count": len(ref["stale"]), "sample": [n for _, n in sorted(ref["stale"])[:7]]}
    assert {ex: [b.instruments, b.open, b.fresh, b.never_ticked] for ex, b in cov.by_exchange.items()} == ref["by_ex"]
    assert list(cov.by_exchange) == list(ref["by_ex"])  # first-appearance order
    open_ticks = [ticks[r[0]] for r in rows if ticks[r[0]] is not None
                  and cal.session_of(cal.hours(r[1], r[2]), coverage.to_beijing(AT)) is not None]
    assert cov.oldest_open_tick_age_seconds == pytest.approx(NOW - min(open_ticks))
    assert cov.newest_open_tick_age_seconds == pytest.approx(NOW - max(open_ticks))
    assert isinstance(cov.open, int) and isinstance(cov.by_exchange["SHFE"].fresh, int)  # JSON-serialisable


def test_empty_table_and_zero_sample(cal):
    cov = coverage.compute([], [], [], [], [], calendar=cal, at=AT, window_seconds=60)
    assert (cov.instruments, cov.open, cov.ratio, cov.by_exchange) == (0, 0, None, {})
    cov = run(cal, {"au2602": NOW - 120}, sample_size=0)
    assert cov.stale.as_dict() == {"count": 1, "sample": []} and cov.never_ticked.sample == []
