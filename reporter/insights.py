"""What changed this period, as facts a sentence can be made from. Pure.

Each ``Insight`` names a message and carries its values unformatted, so the
template layer can word it in the report's language with Babel's formatting.
Ordered by how much of the bill each one explains.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from reporter.usage import OTHERS, ReportTables, movers

MIN_SHARE_OF_TOTAL = 0.03
"""A change smaller than this share of the period's credits is not worth a line."""


@dataclass(frozen=True, slots=True)
class Insight:
    kind: str  # budget_over, budget_at_risk, total_changed, forecast, tool_grew, user_share, ...
    values: dict[str, Any] = field(default_factory=dict)
    weight: float = 0.0  # credits involved: orders the list
    tone: str = "info"  # info | good | warn


def find_insights(tables: ReportTables, *, limit: int = 6) -> list[Insight]:
    """The handful of plain facts a manager should read first."""
    totals = tables.totals
    if tables.empty:
        return []
    found: list[Insight] = []
    budget = tables.budget
    if budget is not None and budget.status == "over":
        found.append(
            Insight(
                "budget_over",
                {"used": budget.used, "limit": budget.limit, "pct": budget.used_pct - 100},
                math.inf,
                "warn",
            )
        )
    elif budget is not None and budget.status == "at_risk":
        found.append(
            Insight(
                "budget_at_risk",
                {"forecast": budget.forecast, "limit": budget.limit},
                math.inf,
                "warn",
            )
        )
    progress = totals.in_progress
    if totals.change_pct is not None:
        found.append(
            Insight(
                "total_changed",
                {
                    "pct": totals.change_pct,
                    "credits": totals.credits,
                    "previous": totals.previous_credits,
                    # A period in progress names the days it is compared with.
                    "span": progress.previous_span if progress else None,
                    "period": tables.period,
                },
                math.inf if abs(totals.change_pct) >= 10 else 0.0,
                "warn" if totals.change_pct >= 25 else "info",
            )
        )
    if progress is not None and progress.forecast_change_pct is not None:
        change = progress.forecast_change_pct
        found.append(
            Insight(
                "forecast",
                {
                    "forecast": progress.forecast,
                    "pct": change,
                    "previous": progress.previous_period_credits,
                    "period": tables.period.previous(),
                },
                # Where a period in progress is heading is always worth its line.
                math.inf,
                "warn" if change >= 25 else "info",
            )
        )
    floor = totals.credits * MIN_SHARE_OF_TOTAL
    for row in movers(tables.tools):
        if abs(row.delta) < floor:
            continue
        if row.previous_credits == 0:
            found.append(
                Insight("tool_new", {"tool": row.key, "credits": row.credits}, abs(row.delta))
            )
        else:
            growing = row.delta > 0
            found.append(
                Insight(
                    "tool_grew" if growing else "tool_fell",
                    {"tool": row.key, "pct": row.change_pct, "credits": row.credits},
                    abs(row.delta),
                    "warn" if growing and (row.change_pct or 0) >= 25 else "info",
                )
            )
    named = [r for r in tables.users.records() if r.key is not None and r.key != OTHERS]
    if named and named[0].share >= 10:
        top = named[0]
        found.append(
            Insight(
                "user_share",
                {"user": top.key, "share": top.share, "credits": top.credits},
                top.credits,
            )
        )
    for row in movers(tables.users, limit=1):
        if row.delta > floor and row.previous_credits > 0 and named and row.key != named[0].key:
            found.append(
                Insight(
                    "user_grew",
                    {"user": row.key, "pct": row.change_pct, "credits": row.credits},
                    row.delta,
                )
            )
    if tables.projects is not None:
        for row in movers(tables.projects, limit=1):
            if abs(row.delta) >= floor and row.previous_credits > 0:
                found.append(
                    Insight(
                        "project_grew" if row.delta > 0 else "project_fell",
                        {"project": row.key, "pct": row.change_pct, "credits": row.credits},
                        abs(row.delta),
                    )
                )
    if tables.new_users:
        new_credits = float(
            tables.detail.loc[tables.detail["user"].isin(tables.new_users), "credits"].sum()
        )
        found.append(
            Insight(
                "new_users",
                {
                    "count": len(tables.new_users),
                    "names": tables.new_users[:3],
                    "credits": new_credits,
                },
                new_credits,
            )
        )
    for day, credits, ratio in zip(
        tables.spikes["date"], tables.spikes["credits"], tables.spikes["ratio"], strict=True
    ):
        found.append(
            Insight(
                "spike",
                {
                    "date": pd.Timestamp(day).date(),
                    "credits": float(credits),
                    "ratio": float(ratio),
                },
                float(credits),
            )
        )
    unattributed = [r for r in tables.users.records() if r.key is None]
    if unattributed and unattributed[0].share >= 15:
        found.append(
            Insight("unattributed", {"share": unattributed[0].share}, unattributed[0].credits)
        )
    found.sort(key=lambda insight: insight.weight, reverse=True)
    return found[:limit]
