"""Every table of ``build_tables`` against the same tables worked out in plain Python.

The stand-in API's answers (each filter kind, a month complete and one in progress,
doctored into a partial breakdown, one over its totals, and an empty period) go through
``tidy_frame`` and ``build_tables``; the expected tables are sums over the JSON rows with
no pandas, so a faster aggregation cannot change a figure, an order or a row unnoticed.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import math
import statistics
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import pytest

from reporter.magnific import parse_usage_response
from reporter.periods import Granularity, Period, last_complete_day, matching_span, parse_period
from reporter.sandbox import API_KEYS, GROUPS, PROJECTS, SandboxServer
from reporter.usage import OTHERS, Breakdown, ReportTables, build_tables, tidy_frame
from tests.conftest import TODAY, raw_usage

TOP = 10
BUDGET = 50_000.0


@dataclass(frozen=True)
class Tidy:
    """One tidy row as the model sees it; ``user`` None is unattributed usage."""

    date: dt.date
    tool: str
    user: str | None
    project: str | None
    group: str | None
    uses: int
    credits: float


# --- doctoring the API's answers ------------------------------------------------


def partial(payload: dict[str, Any]) -> dict[str, Any]:
    """Every third user row missing and every seventh without an email: the breakdown
    falls short of its totals."""
    n = 0
    for bucket in payload["data"]:
        for c in bucket["consumptions"]:
            kept = []
            for row in c.get("user_usages") or []:
                n += 1
                if n % 3 == 0:
                    continue
                kept.append({**row, "user_email": None} if n % 7 == 0 else row)
            c["user_usages"] = kept
    return payload


def excess(payload: dict[str, Any]) -> dict[str, Any]:
    """Every fourth user row claims five times its credits and three times its uses (plus
    one): most breakdowns then claim more than their tool totals."""
    n = 0
    for bucket in payload["data"]:
        for c in bucket["consumptions"]:
            for row in c.get("user_usages") or []:
                n += 1
                if n % 4 == 0:
                    row["user_credits"] *= 5
                    row["user_uses"] = row["user_uses"] * 3 + 1
    return payload


def emptied(payload: dict[str, Any]) -> dict[str, Any]:
    return {"data": []}


# --- the model: plain Python over the JSON rows ------------------------------------


def model_tidy(payload: dict[str, Any]) -> tuple[list[Tidy], float]:
    """The tidy rows and the credits claimed beyond the totals, per the module's contract:
    an over-claiming breakdown is scaled to its total (uses by largest remainder)."""
    totals: dict[tuple[dt.date, str], tuple[int, float]] = defaultdict(lambda: (0, 0.0))
    named: dict[tuple[dt.date, str], list[dict[str, Any]]] = defaultdict(list)
    for bucket in payload["data"]:
        day = dt.date.fromisoformat(bucket["date"][:10])
        for c in bucket["consumptions"]:
            before_uses, before_credits = totals[(day, c["tool"])]
            totals[(day, c["tool"])] = (
                before_uses + int(c["user_uses"]),
                before_credits + float(c["user_credits"]),
            )
            named[(day, c["tool"])] += [u for u in c.get("user_usages") or [] if u["user_email"]]
    rows: list[Tidy] = []
    claimed_beyond = 0.0
    for (day, tool), (total_uses, total_credits) in totals.items():
        users = named[(day, tool)]
        uses = [int(u["user_uses"]) for u in users]
        credits = [float(u["user_credits"]) for u in users]
        named_uses, named_credits = sum(uses), sum(credits)
        if named_credits > total_credits:
            claimed_beyond += named_credits - total_credits
            credits = [c * (total_credits / named_credits) for c in credits]
        if named_uses > total_uses:
            exact = [u * (total_uses / named_uses) for u in uses]
            whole = [math.floor(e) for e in exact]
            short = total_uses - sum(whole)
            by_remainder = sorted(range(len(exact)), key=lambda i: -(exact[i] - whole[i]))
            lucky = set(by_remainder[: int(short)])
            uses = [w + (i in lucky) for i, w in enumerate(whole)]
        for u, n, c in zip(users, uses, credits, strict=True):
            rows.append(Tidy(day, tool, u["user_email"], u["project_name"], u["group_name"], n, c))
        left_uses = max(0, total_uses - sum(uses))
        left_credits = total_credits - sum(credits)
        left_credits = left_credits if left_credits > 1e-9 * total_credits else 0.0
        if left_uses > 0 or left_credits > 0:
            rows.append(Tidy(day, tool, None, None, None, left_uses, left_credits))
    return rows, claimed_beyond


@functools.cache
def period_key(day: dt.date, period: Period) -> str:
    return next(p.key for p in period.history() if p.start <= day <= p.end)


def pct(current: float, previous: float) -> float | None:
    return (current - previous) / previous * 100 if previous > 0 else None


def expected_breakdown(
    current: list[Tidy], previous: list[Tidy], key: str, total: float
) -> list[tuple[Any, ...]]:
    """(key, uses, credits, share, previous credits, change): named rows largest first
    (ties by key), the unattributed row (key None) last."""
    uses: dict[Any, int] = defaultdict(int)
    credits: dict[Any, float] = defaultdict(float)
    before: dict[Any, float] = defaultdict(float)
    for row in current:
        uses[getattr(row, key)] += row.uses
        credits[getattr(row, key)] += row.credits
    for row in previous:
        before[getattr(row, key)] += row.credits
    named = sorted((k for k in uses if k is not None), key=lambda k: (-credits[k], k))
    keys = named + ([None] if None in uses else [])
    return [line(k, uses[k], credits[k], before[k], total) for k in keys]


def line(key: Any, uses: int, credits: float, previous: float, total: float) -> tuple[Any, ...]:
    return (
        key,
        uses,
        credits,
        credits / total * 100 if total else 0.0,
        previous,
        pct(credits, previous),
    )


def expected_users(
    current: list[Tidy], previous: list[Tidy], total: float
) -> list[tuple[Any, ...]]:
    rows = expected_breakdown(current, previous, "user", total)
    named = [r for r in rows if r[0] is not None]
    head, tail = named[:TOP], named[TOP:]
    if tail:
        sums = [sum(r[i] for r in tail) for i in (1, 2, 4)]
        head.append(line(OTHERS, sums[0], sums[1], sums[2], total))
    return head + [r for r in rows if r[0] is None]


def actual(breakdown: Breakdown | None) -> list[tuple[Any, ...]] | None:
    if breakdown is None:
        return None
    return [
        (r.key, r.uses, r.credits, r.share, r.previous_credits, r.change_pct)
        for r in breakdown.records()
    ]


def same(got: Any, want: Any) -> None:
    if isinstance(want, float):
        assert got == pytest.approx(want, rel=1e-9, abs=1e-9)
    else:
        assert got == want


def same_rows(got: list[tuple[Any, ...]] | None, want: list[tuple[Any, ...]] | None) -> None:
    if want is None:
        assert got is None
        return
    assert got is not None
    assert [r[0] for r in got] == [r[0] for r in want]  # the order a reader sees
    for g, w in zip(got, want, strict=True):
        assert len(g) == len(w)
        for a, b in zip(g, w, strict=True):
            if isinstance(b, float):
                assert a == pytest.approx(b, rel=1e-9, abs=1e-9), (g, w)
            else:
                assert a == b, (g, w)


def check_tables(
    tables: ReportTables,
    detail_payload: dict[str, Any],
    history_payload: dict[str, Any],
    period: Period,
    today: dt.date,
) -> None:
    detail, claimed_beyond = model_tidy(detail_payload)
    history, _ = model_tidy(history_payload)
    running = not period.is_complete(today)
    through = last_complete_day(period, today) if running else period.end
    if running:
        detail = [r for r in detail if r.date <= through]
    earlier_periods = period.history()[:-1]
    spans = {
        p.key: matching_span(period, p, through) if running else (p.start, p.end)
        for p in earlier_periods
    }
    comparable = not running or through >= period.start  # the history is by day here
    compared = [
        r
        for r in history
        if comparable
        and (span := spans.get(period_key(r.date, period)))
        and span[0] <= r.date <= span[1]
    ]
    previous_key = period.previous().key
    previous = [r for r in compared if period_key(r.date, period) == previous_key]

    credits = sum(r.credits for r in detail)
    uses = sum(r.uses for r in detail)
    prev_credits = sum(r.credits for r in previous)
    totals = tables.totals
    same(totals.credits, credits)
    same(totals.uses, uses)
    same(totals.previous_credits, prev_credits)
    same(totals.previous_uses, sum(r.uses for r in previous))
    same(totals.change_pct, pct(credits, prev_credits) if comparable else None)
    span_credits = [
        sum(r.credits for r in compared if period_key(r.date, period) == p.key)
        for p in earlier_periods
    ]
    # Averaged from the first period with usage on (this one when none before had any).
    first = next((i for i, c in enumerate([*span_credits, credits]) if c > 0), len(span_credits))
    with_data = span_credits[first:]
    average = statistics.fmean(with_data) if with_data else 0.0
    same(totals.history_average, average)
    same(totals.change_vs_average_pct, pct(credits, average) if comparable else None)
    current_users = {r.user for r in detail if r.user is not None}
    same(totals.active_users, len(current_users))
    same(tables.user_count, len(current_users))
    if running:
        assert totals.in_progress is not None
        days = max(0, (through - period.start).days + 1)
        whole = sum(r.credits for r in history if period_key(r.date, period) == previous_key)
        forecast = credits / days * period.days if days else None
        same(totals.in_progress.through, through)
        same(totals.in_progress.days, days)
        same(totals.in_progress.previous_span, spans[previous_key] if comparable else None)
        same(totals.in_progress.forecast, forecast)
        same(totals.in_progress.previous_period_credits, whole)
        same(
            totals.in_progress.forecast_change_pct,
            pct(forecast, whole) if forecast is not None else None,
        )
    else:
        assert totals.in_progress is None
    same(tables.breakdown_excess, claimed_beyond)

    same_rows(actual(tables.tools), expected_breakdown(detail, previous, "tool", credits))
    same_rows(actual(tables.users), expected_users(detail, previous, credits))
    named_count = len(current_users)
    same(tables.others_count, max(0, named_count - TOP))
    for key, table in (("project", tables.projects), ("group", tables.groups)):
        has_key = any(getattr(r, key) is not None for r in detail)
        same_rows(
            actual(table), expected_breakdown(detail, previous, key, credits) if has_key else None
        )

    by_tool: dict[tuple[str, str], float] = defaultdict(float)
    for r in history:
        by_tool[(period_key(r.date, period), r.tool)] += r.credits
    want_history = [(p, t, c) for (p, t), c in sorted(by_tool.items()) if p != period.key]
    current_tools: dict[str, float] = defaultdict(float)
    for r in detail:
        current_tools[r.tool] += r.credits
    want_history += [(period.key, t, current_tools[t]) for t in sorted(current_tools)]
    same_rows(list(tables.history.itertuples(index=False, name=None)), want_history)

    want_totals = []
    for p in period.history():
        rows = [r for r in history if period_key(r.date, period) == p.key]
        pair = (
            (credits, uses)
            if p.key == period.key
            else (
                sum(r.credits for r in rows),
                sum(r.uses for r in rows),
            )
        )
        want_totals.append((p.key, float(pair[0]), pair[1]))
    same_rows(
        [(p, float(c), int(u)) for p, c, u in tables.history_totals.itertuples(index=False)],
        want_totals,
    )

    tool_names = [k for k, *_ in expected_breakdown(detail, previous, "tool", credits)]
    tool_names += [t for t in sorted({r.tool for r in history}) if t not in tool_names]
    assert tables.tool_order == tool_names

    earlier_users = {
        r.user for r in history if r.user is not None and period_key(r.date, period) != period.key
    }
    assert tables.new_users == (sorted(current_users - earlier_users) if earlier_users else [])

    buckets = [period.start + dt.timedelta(days=i) for i in range(period.days)]
    if period.detail_granularity == "month":  # a year is drawn month by month
        buckets = [d for d in buckets if d.day == 1]
    tools = sorted({r.tool for r in detail})
    per_day: dict[tuple[dt.date, str], float] = defaultdict(float)
    for r in detail:
        per_day[(r.date, r.tool)] += r.credits
    want_daily = [(d, t, per_day[(d, t)]) for d in buckets for t in tools]
    same_rows([(ts.date(), t, c) for ts, t, c in tables.daily.itertuples(index=False)], want_daily)

    day_totals = [(d, sum(per_day[(d, t)] for t in tools)) for d in buckets] if tools else []
    busy = [c for _, c in day_totals if c > 0]
    want_spikes = []
    if len(busy) >= 7:
        median = statistics.median(busy)
        mad = statistics.median(abs(c - median) for c in busy) * 1.4826
        threshold = max(median + 3 * mad, median * 1.5)
        want_spikes = [(d, c, c / median) for d, c in day_totals if c > threshold]
    same_rows(
        [(ts.date(), c, ratio) for ts, c, ratio in tables.spikes.itertuples(index=False)],
        want_spikes,
    )

    assert tables.budget is not None
    same(tables.budget.used, credits)
    limit = BUDGET  # the period's (prorating a monthly budget is tests/test_budgets.py's)
    same(tables.budget.limit, limit)
    same(tables.budget.used_pct, credits / limit * 100)


# --- the cases ------------------------------------------------------------------

FILTERS: dict[str, dict[str, Any]] = {
    "whole team": {},
    "project": {"project_references": [PROJECTS[0][0]]},
    "group": {"group_ids": [GROUPS[0][0]]},
    "api key": {"api_key_ids": [API_KEYS[1]]},
}
DOCTORS = {"as sent": lambda p: p, "partial": partial, "over its totals": excess}


def build_and_check(
    api: SandboxServer, filters: dict[str, Any], text: str, doctor: Any, detail_only: bool = False
) -> ReportTables:
    period = parse_period(text, today=TODAY)
    running = not period.is_complete(TODAY)
    granularity: Granularity = "day" if running else period.history_granularity

    def fetch(granularity: str, start: dt.date) -> dict[str, Any]:
        body = {
            "granularity": granularity,
            "start_date": start.isoformat(),
            "end_date": period.end.isoformat(),
            **filters,
        }
        return raw_usage(api, body)

    detail_payload = doctor(fetch(period.detail_granularity, period.start))
    history_payload = fetch(granularity, period.history()[0].start)
    if not detail_only:
        history_payload = doctor(history_payload)

    def parsed(payload: dict[str, Any]) -> Any:
        return tidy_frame(parse_usage_response(json.dumps(payload).encode()))

    tables = build_tables(
        parsed(detail_payload),
        parsed(history_payload),
        period,
        top_users=TOP,
        budget=BUDGET,
        today=TODAY,
        history_granularity=granularity,
    )
    check_tables(tables, detail_payload, history_payload, period, TODAY)
    return tables


@pytest.mark.parametrize("period", ["2026-10", "2026-11"], ids=["complete", "in progress"])
@pytest.mark.parametrize("filters", FILTERS.values(), ids=FILTERS.keys())
def test_every_table_matches_plain_sums_for_each_filter_kind(
    api: SandboxServer, filters: dict[str, Any], period: str
) -> None:
    tables = build_and_check(api, filters, period, DOCTORS["as sent"])
    assert tables.totals.credits > 0
    assert tables.others_count > 0 or filters  # the whole team has more than TOP users


@pytest.mark.parametrize("period", ["2026-10", "2026-11"], ids=["complete", "in progress"])
@pytest.mark.parametrize("doctor", ["partial", "over its totals"])
def test_every_table_matches_plain_sums_for_a_doctored_breakdown(
    api: SandboxServer, doctor: str, period: str
) -> None:
    tables = build_and_check(api, FILTERS["project"], period, DOCTORS[doctor])
    unattributed = [r for r in tables.users.records() if r.key is None]
    if doctor == "partial":
        assert unattributed
        assert unattributed[0].credits > 0
        assert tables.breakdown_excess == 0
    else:
        assert tables.breakdown_excess > 0


def test_every_table_matches_plain_sums_for_an_empty_period_with_history(
    api: SandboxServer,
) -> None:
    tables = build_and_check(api, {}, "2026-10", emptied, detail_only=True)
    assert tables.empty
    assert tables.totals.previous_credits > 0


@pytest.mark.parametrize("period", ["2026-W47", "2026-W48", "2026-Q3", "2026-Q4", "2025"])
def test_every_table_matches_plain_sums_for_other_period_kinds(
    api: SandboxServer, period: str
) -> None:
    tables = build_and_check(api, {}, period, DOCTORS["as sent"])
    assert tables.totals.credits > 0
