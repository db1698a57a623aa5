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

from reporter.usage import OTHERS, ReportTables, Row, movers

MIN_SHARE_OF_TOTAL = 0.03
"""A change smaller than this share of the period's credits is not worth a line."""

SPLIT_EXPLAINS_MOST = 2 / 3
"""The volume/unit-cost split of a change names one effect as what explains most of it
when that effect makes up at least this share of the two, counted by size."""

SPLIT_LINES = 3
"""At most this many "what changed" lines (the largest tool and project moves) carry a
volume/unit-cost split; the rest say only the change."""


@dataclass(frozen=True, slots=True)
class Split:
    """A change in credits taken apart, exactly: ``volume + unit_cost`` is the change.

    volume: the change in uses, at the comparison period's credits per use;
    unit_cost: the change in credits per use, at this period's uses."""

    uses_pct: float
    per_use_pct: float
    old_per_use: float
    new_per_use: float
    volume: float
    unit_cost: float

    @property
    def lead(self) -> str | None:
        """ "volume" or "unit_cost" when one explains most of the change, else None."""
        size = abs(self.volume) + abs(self.unit_cost)
        if size <= 0:
            return None
        if abs(self.volume) / size >= SPLIT_EXPLAINS_MOST:
            return "volume"
        if abs(self.unit_cost) / size >= SPLIT_EXPLAINS_MOST:
            return "unit_cost"
        return None


def split_change(row: Row) -> Split | None:
    """The row's change as volume and unit cost; None where a side has no uses (a new or
    discontinued tool, or credits without uses), which has no credits per use to compare."""
    return split_between(row.previous_uses, row.previous_credits, row.uses, row.credits)


def split_between(
    old_uses: float, old_credits: float, new_uses: float, new_credits: float
) -> Split | None:
    """``split_change`` for any two (uses, credits) pairs: a period and the one it is
    compared with, or (for a spike) a day and the typical day."""
    if old_uses <= 0 or new_uses <= 0:
        return None
    old, new = old_credits / old_uses, new_credits / new_uses
    if old <= 0:
        return None
    return Split(
        uses_pct=(new_uses - old_uses) / old_uses * 100.0,
        per_use_pct=(new - old) / old * 100.0,
        old_per_use=old,
        new_per_use=new,
        volume=(new_uses - old_uses) * old,
        unit_cost=(new - old) * new_uses,
    )


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
                    {
                        "tool": row.key,
                        "pct": row.change_pct,
                        "credits": row.credits,
                        "split": split_change(row),
                    },
                    abs(row.delta),
                    "warn" if growing and (row.change_pct or 0) >= 25 else "info",
                )
            )
    for tool, before in tables.discontinued:
        if before >= floor:
            found.append(Insight("tool_gone", {"tool": tool, "previous": before}, before))
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
                        {
                            "project": row.key,
                            "pct": row.change_pct,
                            "credits": row.credits,
                            "split": split_change(row),
                        },
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
    return _with_splits(found[:limit])


def _with_splits(found: list[Insight]) -> list[Insight]:
    """Keeps the split on the ``SPLIT_LINES`` largest moves that have one (the list is in
    order of weight), and drops it from the rest."""
    kept = 0
    out = []
    for insight in found:
        if insight.values.get("split") is None:
            out.append(insight)
        elif kept < SPLIT_LINES:
            kept += 1
            out.append(insight)
        else:
            values = {**insight.values, "split": None}
            out.append(Insight(insight.kind, values, insight.weight, insight.tone))
    return out
