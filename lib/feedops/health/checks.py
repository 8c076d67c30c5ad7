"""Thresholds applied to observations: one result per ``component:measurement`` and component.

Every check names what it measured, in which unit, its status (pass/warn/fail) and a
one-line output a person can act on. Outside trading hours (no open instrument) the
feed checks report "not judged: market closed" and pass; the sources, the consumer
lag and the pre-market freshness are judged at any hour.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
from dataclasses import dataclass
from typing import Any

from ..calendar import TradingCalendar, to_beijing
from ..coverage import Bucket, Coverage, Listing, compute_from_table, merge_tables
from .sources import ConsumerGroup, ExpectedWorker, PremarketRun, SourceError, Sources, WorkerObservation

PASS, WARN, FAIL = "pass", "warn", "fail"
_RANK = {PASS: 0, WARN: 1, FAIL: 2}
NOT_JUDGED = "not judged: market closed"
NOT_IN_SESSION = "not judged: no subscribed instrument in session"


@dataclass(frozen=True)
class Thresholds:
    """The thresholds applied; names are FeedSettings fields (FEEDOPS_<NAME>)."""

    coverage_warn_ratio: float
    coverage_crit_ratio: float
    staleness_window_seconds: float
    staleness_warn_seconds: float
    staleness_crit_seconds: float
    latency_p99_warn_seconds: float
    latency_p99_crit_seconds: float
    throughput_warn_ratio: float
    consumer_lag_warn: int
    consumer_lag_crit: int
    rate_limit_incidents_warn: int
    premarket_max_age_seconds: float
    disconnect_storm_count: int

    @classmethod
    def from_settings(cls, feed: Any) -> "Thresholds":
        return cls(**{f.name: getattr(feed, f.name) for f in dataclasses.fields(cls)})

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class CheckResult:
    key: str  # component:measurement
    status: str  # pass | warn | fail
    observed_value: Any
    observed_unit: str | None
    output: str
    component_id: str | None = None
    component_type: str | None = None
    unknown: bool = False  # the source could not be read: the run's verdict is UNKNOWN unless something failed

    def as_dict(self, time: str) -> dict[str, Any]:
        entry: dict[str, Any] = {}
        if self.component_id is not None:
            entry["componentId"] = self.component_id
        if self.component_type is not None:
            entry["componentType"] = self.component_type
        entry.update(observedValue=self.observed_value, observedUnit=self.observed_unit, status=self.status,
                     time=time, output=self.output)
        return entry


def worst(statuses) -> str:
    return max(statuses, key=_RANK.__getitem__, default=PASS)


def _above(value: float, warn: float, crit: float | None) -> str:
    if crit is not None and value > crit:
        return FAIL
    return WARN if value > warn else PASS


def _fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "n/a"
    if unit == "%":
        return f"{value * 100:.2f}%"
    text = f"{value:.3f}".rstrip("0").rstrip(".") if isinstance(value, float) else str(value)
    return f"{text}{unit}"


# ---------------------------------------------------------------------------- coverage
def feed_coverage(sources: Sources, calendar: TradingCalendar, at: _dt.datetime, window_seconds: float) -> tuple[Coverage | None, str]:
    """Coverage across shards and the basis it was computed on."""
    if sources.prometheus is not None:
        view = sources.prometheus
        exchanges = sorted(set(view.open_by_exchange) | set(view.fresh_by_exchange))
        buckets = {ex: Bucket(0, round(view.open_by_exchange.get(ex, 0)), round(view.fresh_by_exchange.get(ex, 0))) for ex in exchanges}
        return _summary_coverage(buckets, calendar, at, window_seconds, view.newest_tick_age_seconds, view.never_ticked), \
            "prometheus (the workers' calendar, as of --at)"
    if not sources.workers:
        return None, "none"
    if all(w.instrument_table is not None for w in sources.workers):
        tables = [w.instrument_table for w in sources.workers]
        table = tables[0] if len(tables) == 1 else merge_tables(tables)
        return compute_from_table(table, calendar=calendar, at=at, window_seconds=window_seconds), \
            f"instrument tables of {len(tables)} worker(s), {calendar.mode} calendar"
    buckets = {}
    for w in sources.workers:
        for ex, cov in ((w.coverage_summary or {}).get("by_exchange") or {}).items():
            b = buckets.setdefault(ex, Bucket())
            b.open += int(cov.get("open") or 0)
            b.fresh += int(cov.get("fresh") or 0)
    ages = [w.newest_tick_age_seconds for w in sources.workers if w.newest_tick_age_seconds is not None]
    return _summary_coverage(buckets, calendar, at, window_seconds, min(ages) if ages else None, 0), \
        "the workers' own summaries (no instrument table; --at not applied)"


def _summary_coverage(buckets: dict[str, Bucket], calendar: TradingCalendar, at: _dt.datetime, window: float,
                      newest_age: float | None, never: int) -> Coverage:
    open_count = sum(b.open for b in buckets.values())
    fresh = sum(b.fresh for b in buckets.values())
    return Coverage(at_unix=at.timestamp(), window_seconds=window, calendar_mode=calendar.mode,
                    instruments=sum(b.instruments for b in buckets.values()), open=open_count, fresh=fresh,
                    by_exchange=buckets, by_product_class={}, never_ticked=Listing(never, []), open_never_ticked=0,
                    stale=Listing(open_count - fresh, []), oldest_open_tick_age_seconds=None,
                    newest_tick_age_seconds=newest_age, newest_open_tick_age_seconds=newest_age if open_count else None)


# ---------------------------------------------------------------------------- individual checks
def source_checks(errors: list[SourceError]) -> list[CheckResult]:
    return [CheckResult(f"{e.component}:reachable", FAIL, False, None, f"{e.reason}; fix: {e.fix}",
                        e.target, "datastore" if e.component == "redis" else "component", unknown=True) for e in errors]


def market_checks(calendar: TradingCalendar, at: _dt.datetime, market_open: bool, cov: Coverage | None) -> list[CheckResult]:
    local = to_beijing(at)
    trading_day = calendar.trading_day(at)
    if market_open:
        judged = f"; {cov.open} instrument(s) in session" if cov is not None else ""
        output = f"market open at {local:%Y-%m-%d %H:%M:%S} Beijing, trading day {trading_day}{judged}"
    else:
        nxt = calendar.next_open(at)
        when = f"; next session {nxt:%Y-%m-%d %H:%M} Beijing" if nxt else ""
        output = f"market closed at {local:%Y-%m-%d %H:%M:%S} Beijing ({calendar.mode} calendar){when}; coverage, staleness and throughput not judged"
    results = [CheckResult("market:open", PASS, market_open, None, output, calendar.mode, "system")]
    horizon = calendar.horizon(at)
    if horizon.status != "ok":
        known = calendar.known_until
        results.append(CheckResult("calendar:holiday-list", WARN, str(known) if known else None, None, str(horizon), None,
                                   "system"))
    return results


def worker_checks(w: WorkerObservation, th: Thresholds, market_open: bool) -> list[CheckResult]:
    results = []
    front = f"front {w.front_address or 'unknown'}" + (f", profile {w.profile}" if w.profile else "")
    for key, ok, good, bad in (("front:connected", w.connected, "connected", "not connected"),
                               ("front:logged-in", w.logged_in, "logged in", "not logged in")):
        status = PASS if ok or not market_open else FAIL
        note = "" if ok or market_open else f" ({NOT_JUDGED})"
        fix = "" if ok or not market_open else "; fix: see docs/ops (failover with `make failover`)"
        results.append(CheckResult(key, status, ok, None, f"{front}: {good if ok else bad}{note}{fix}", w.source, "component"))
    if w.recent_disconnects is not None:
        n = w.recent_disconnects
        status = FAIL if n >= th.disconnect_storm_count else WARN if n >= 1 else PASS
        extra = f"; {w.reconnects} reconnect(s) since start" if w.reconnects is not None else ""
        results.append(CheckResult("front:recent-disconnects", status, n, "disconnects",
                                   f"{n} disconnect(s) in the storm window (fail at {th.disconnect_storm_count}){extra}",
                                   w.source, "component"))
    if w.instruments is not None:
        counts = {k: int(w.instruments.get(k) or 0) for k in ("known", "subscribed", "acknowledged", "failed")}
        too_many = counts["failed"] > (1.0 - th.coverage_crit_ratio) * counts["known"]
        status = FAIL if market_open and (counts["known"] == 0 or too_many) else WARN if counts["failed"] else PASS
        fix = "; fix: check the instrument query in the worker log" if status == FAIL and not counts["known"] else \
            "; fix: see /status and the worker log for the refused subscriptions (the worker tries them again)" \
            if counts["failed"] else ""
        results.append(CheckResult("instruments:known", status, counts["known"], "instruments",
                                   ", ".join(f"{v} {k}" for k, v in counts.items()) + fix, w.source, "component"))
    if w.instrument_list is not None:
        lst = w.instrument_list
        expected = f"; {lst['expected']} on {lst.get('expected_day')}" if lst.get("expected") is not None else \
            "; no earlier day to compare with"
        how = f"{lst['listed']} listed (from the {lst.get('source', '?')}{', queried again' if lst.get('requeried') else ''}"
        if lst.get("suspicious"):
            results.append(CheckResult("instruments:list", FAIL, lst["listed"], "instruments",
                                       f"{how}{expected}): suspicious, {lst['suspicious']}; fix: check the trader front's "
                                       f"instrument query, then `make restart` (the cache is re-queried)",
                                       w.source, "component"))
        else:
            results.append(CheckResult("instruments:list", PASS, lst["listed"], "instruments",
                                       f"{how}{expected}): count and checksum verified, in line with the expectation",
                                       w.source, "component"))
    if w.sink_up is not None:
        buffered = f", {w.sink_buffered} tick(s) buffered" if w.sink_buffered else ""
        results.append(CheckResult("sink:up", PASS if w.sink_up else WARN, w.sink_up, None,
                                   f"{w.sink_kind or 'sink'} {'accepts writes' if w.sink_up else 'is down'}{buffered}",
                                   w.source, "datastore"))
    return results


def coverage_checks(cov: Coverage | None, th: Thresholds, market_open: bool) -> list[CheckResult]:
    if cov is None:
        return []

    def judge(ratio: float | None, open_: int, fresh: int, component: str, detail: str = "") -> CheckResult:
        if ratio is None:
            text = NOT_JUDGED if not market_open else "no instrument of it in session"
            return CheckResult("coverage:ratio", PASS, None, "ratio", text, component, "system")
        status = FAIL if ratio < th.coverage_crit_ratio else WARN if ratio < th.coverage_warn_ratio else PASS
        bound = "" if status == PASS else \
            f" < {_fmt(th.coverage_crit_ratio if status == FAIL else th.coverage_warn_ratio, '%')}"
        return CheckResult("coverage:ratio", status, round(ratio, 6), "ratio",
                           f"{_fmt(ratio, '%')}{bound}: {fresh} of {open_} open instruments ticked within "
                           f"{_fmt(cov.window_seconds, 's')}{detail}", component, "system")

    parts = []
    if cov.open_never_ticked:
        parts.append(f"{cov.open_never_ticked} never ticked")
    if cov.stale.count:
        sample = ", ".join(cov.stale.sample[:5])
        parts.append(f"{cov.stale.count} stale" + (f" (oldest: {sample})" if sample else ""))
    results = [judge(cov.ratio, cov.open, cov.fresh, "all", ("; " + "; ".join(parts)) if parts else "")]
    for ex, bucket in sorted(cov.by_exchange.items()):
        results.append(judge(bucket.ratio, bucket.open, bucket.fresh, ex))
    return results


def staleness_checks(cov: Coverage | None, th: Thresholds, in_session: bool) -> list[CheckResult]:
    """``in_session``: some subscribed instrument's session is open."""
    if cov is None:
        return []
    age = cov.newest_open_tick_age_seconds
    if not in_session:
        status, text = PASS, f"{NOT_IN_SESSION}; newest tick {_fmt(cov.newest_tick_age_seconds, 's')} old"
    elif age is None:
        status, text = FAIL, "no open instrument has ticked; fix: check the front and the subscriptions (/status never_ticked)"
    else:
        status = _above(age, th.staleness_warn_seconds, th.staleness_crit_seconds)
        text = f"newest tick of an open instrument is {_fmt(age, 's')} old (warn > {_fmt(th.staleness_warn_seconds, 's')}, " \
               f"fail > {_fmt(th.staleness_crit_seconds, 's')})"
    results = [CheckResult("staleness:newest-tick-age", status, None if age is None else round(age, 3), "s", text, "all", "system")]
    if cov.oldest_open_tick_age_seconds is not None:
        oldest = cov.oldest_open_tick_age_seconds
        first = f" ({cov.stale.sample[0]})" if cov.stale.sample else ""
        results.append(CheckResult("staleness:oldest-open-tick-age", PASS, round(oldest, 3), "s",
                                   f"informational: the least recently ticked open instrument{first} ticked {_fmt(oldest, 's')} ago; "
                                   f"coverage counts instruments older than {_fmt(cov.window_seconds, 's')} as stale",
                                   "all", "system"))
    return results


#: Exchanges push one snapshot per active instrument every 500 ms (docs/ops/ctp-reference.md): the session's ceiling.
SNAPSHOTS_PER_SECOND = 2.0


def traffic_checks(workers: list[WorkerObservation], th: Thresholds, in_session: bool, window_text: str,
                   open_instruments: int | None = None) -> list[CheckResult]:
    """Throughput is judged against the workers' expected rate, else against the snapshot
    ceiling of the instruments in session (``open_instruments`` x 2/s)."""
    if not workers:
        return []
    results = []
    rates = [w.ticks_per_second for w in workers if w.ticks_per_second is not None]
    tps = sum(rates) if rates else None
    expected = [w.expected_ticks_per_second for w in workers]
    expected_tps = sum(expected) if expected and all(e is not None for e in expected) else None
    basis = "the workers' expected rate"
    if expected_tps is None and open_instruments:
        expected_tps = SNAPSHOTS_PER_SECOND * open_instruments
        basis = f"the snapshot ceiling of {open_instruments} open instruments x {_fmt(SNAPSHOTS_PER_SECOND)}/s"
    if not in_session:
        status, text = PASS, f"{NOT_IN_SESSION}; {_fmt(tps, ' ticks/s')}"
    elif tps is None:
        status, text = PASS, "no rate reported yet"
    elif any(w.rate_warming_up for w in workers):
        status, text = PASS, f"{_fmt(tps, ' ticks/s')}; a worker connected less than its rate window ago, not judged yet"
    elif not expected_tps:
        status, text = PASS, f"{_fmt(tps, ' ticks/s')}; no expected rate, not judged"
    else:
        floor = th.throughput_warn_ratio * expected_tps
        status = WARN if tps < floor else PASS
        text = f"{_fmt(tps, ' ticks/s')} against {_fmt(expected_tps)} expected from {basis} " \
               f"(warn below {_fmt(th.throughput_warn_ratio, '%')}: {_fmt(floor)})"
    results.append(CheckResult("throughput:ticks-per-second", status, None if tps is None else round(tps, 3), "ticks/s",
                               text, "all", "system"))

    # the skew correction removes the smallest offset of the last minute: a front that delays every tick by
    # 2 s reads as 2 s of skew and ~0 latency, so the delay judged is latency + skew, however it is split
    delays = [(w.latency_p99_seconds + max(0.0, w.clock_skew_seconds or 0.0), w.latency_p99_seconds,
               w.clock_skew_seconds, w.source) for w in workers if w.latency_p99_seconds is not None]
    if delays:
        delay, p99, skew, source = max(delays)
        status = _above(delay, th.latency_p99_warn_seconds, th.latency_p99_crit_seconds)
        split = f"p99 {_fmt(p99, 's')} + clock skew {_fmt(skew or 0.0, 's')} = {_fmt(delay, 's')}" \
            if skew else f"p99 {_fmt(p99, 's')}, no clock skew measured"
        results.append(CheckResult("latency:p99", status, round(delay, 6), "s",
                                   f"exchange-to-publish delay {split} (worst worker {source}; "
                                   f"warn > {_fmt(th.latency_p99_warn_seconds, 's')}, fail > {_fmt(th.latency_p99_crit_seconds, 's')})",
                                   "all", "system"))
    else:
        results.append(CheckResult("latency:p99", PASS, None, "s", "no latency measured yet", "all", "system"))
    skews = [(abs(w.clock_skew_seconds), w.clock_skew_seconds, w.source) for w in workers if w.clock_skew_seconds is not None]
    if skews:
        _, skew, source = max(skews)
        results.append(CheckResult("latency:clock-skew", PASS, round(skew, 6), "s",
                                   f"informational: measured exchange-to-local clock offset {_fmt(skew, 's')} (largest, worker "
                                   f"{source}); counted into the delay judged by latency:p99", "all", "system"))

    incidents = sum(w.rate_limit_incidents for w in workers)
    warn_at = th.rate_limit_incidents_warn
    status = WARN if warn_at and incidents >= warn_at else PASS
    results.append(CheckResult("ratelimit:incidents", status, incidents, "incidents",
                               f"{incidents} flow-control refusal(s) {window_text} (warn at {warn_at or 'never'})", "all", "system"))
    windowed = [w for w in workers if w.lost_recent is not None]
    if windowed:
        lost = sum(w.lost_recent for w in windowed)
        window = max(w.lost_window_seconds or 0 for w in windowed)
        status = FAIL if lost else PASS
        fix = "; fix: see worker.md (queue full: the pipeline falls behind; sink buffer full: the sink is down)" if lost else ""
        results.append(CheckResult("ticks:lost", status, round(lost), "ticks",
                                   f"{round(lost)} received tick(s) discarded (queue full, sink buffer full) in the last "
                                   f"{_fmt(float(window), 's')}{fix}", "all", "system"))
    errors = sum(w.errors for w in workers)
    dropped = sum(w.dropped for w in workers if w.lost_recent is None)  # a worker without the window: since start
    status = WARN if errors or dropped else PASS
    text = f"{errors} error(s) {window_text}" + (f" and {dropped} dropped tick(s) since the worker started" if dropped else "")
    results.append(CheckResult("errors:count", status, errors + dropped, "errors", text, "all", "system"))
    return results


def expected_worker_checks(expected: list[ExpectedWorker], where: str) -> list[CheckResult]:
    """A worker the runbook started and did not stop (pid file present) must be running, at any hour."""
    results = []
    for w in expected:
        if w.running:
            results.append(CheckResult("worker:running", PASS, True, None, f"{w.name} runs (pid {w.pid}, {w.address})",
                                       w.name, "component"))
        else:
            reason = w.problem or f"pid {w.pid} is gone"
            results.append(CheckResult("worker:running", FAIL, False, None,
                                       f"{w.name} should be running (pid file in {where}) but is not: {reason}; fix: "
                                       f"`make restart` (its log is {where.rsplit('/', 1)[0]}/logs/{w.name}.log)",
                                       w.name, "component"))
    return results


def consumer_checks(groups: list[ConsumerGroup] | None, th: Thresholds, target: str) -> list[CheckResult]:
    if groups is None:
        return []
    if not groups:
        return [CheckResult("redis:consumer-lag", PASS, 0, "entries", f"no consumer groups on the feed streams at {target}",
                            target, "datastore")]
    results = []
    for g in groups:
        component = f"{g.stream}/{g.group}"
        if g.lag is None:
            results.append(CheckResult("redis:consumer-lag", WARN, None, "entries",
                                       f"lag unknown (Redis reports nil after XDEL or for a group created at an arbitrary id); "
                                       f"{g.pending} pending, {g.consumers} consumer(s)", component, "datastore"))
        else:
            status = _above(g.lag, th.consumer_lag_warn, th.consumer_lag_crit)
            results.append(CheckResult("redis:consumer-lag", status, g.lag, "entries",
                                       f"{g.lag} undelivered entries (warn > {th.consumer_lag_warn}, fail > {th.consumer_lag_crit}); "
                                       f"{g.consumers} consumer(s)", component, "datastore"))
        status = _above(g.pending, th.consumer_lag_warn, th.consumer_lag_crit)
        results.append(CheckResult("redis:consumer-pending", status, g.pending, "entries",
                                   f"{g.pending} delivered but unacknowledged entries (same thresholds as lag)", component, "datastore"))
    return results


def premarket_checks(run: PremarketRun | None, error: SourceError | None, th: Thresholds, at: _dt.datetime,
                     where: str) -> list[CheckResult]:
    if error is not None:
        return [CheckResult("premarket:age", WARN, None, "s", f"{error.target} {error.reason}; fix: {error.fix}",
                            "premarket", "system")]
    if run is None:
        return [CheckResult("premarket:age", WARN, None, "s",
                            f"no successful pre-market run recorded in {where}; fix: run `make premarket`", "premarket", "system")]
    age = max(0.0, at.timestamp() - run.ts)
    status = WARN if age > th.premarket_max_age_seconds else PASS
    when = _dt.datetime.fromtimestamp(run.ts, _dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    who = ", ".join(f"{k} {v}" for k, v in (("env", run.env), ("profile", run.profile)) if v)
    return [CheckResult("premarket:age", status, round(age, 1), "s",
                        f"last successful pre-market run {when} ({_fmt(age / 3600)} h ago{'; ' + who if who else ''}; "
                        f"warn after {_fmt(th.premarket_max_age_seconds / 3600)} h)", "premarket", "system")]
