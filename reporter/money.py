"""Money beside credits: what a report's credits cost, at the price in force each day. Pure.

Finance approves spend in money, and a plan's price per credit changes on a date. So an
amount is never a total of credits times one price: each day's credits are priced at
that day's price, and the products summed, in ``Decimal`` (a float cannot hold a cent
exactly). Rounding happens once, to the currency's minor unit, when a figure is shown;
a table's rows are rounded so that, as printed, they add up to its printed total (the
cents lost to rounding go to the rows that lost the most: largest remainder).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_FLOOR, Decimal
from typing import TypeVar

import numpy as np
import pandas as pd

from reporter.periods import Period
from reporter.prices import Prices
from reporter.usage import OTHERS, ReportTables

K = TypeVar("K")


def credits_decimal(credits: float) -> Decimal:
    """A float of credits as the decimal the API meant: its sums of whole or tenths of
    credits carry float noise far below a millionth, which this drops."""
    return Decimal(repr(round(float(credits), 6)))


def exact_amounts(rows: pd.DataFrame, key: str, prices: Prices) -> dict[str | None, Decimal]:
    """Each ``key`` value's credits priced day by day: unrounded. Missing keys (usage
    with no user, project or group) are gathered under None."""
    if rows.empty:
        return {}
    starts = np.array(prices.starts, dtype="datetime64[ns]")
    segment = np.searchsorted(starts, rows["date"].to_numpy(dtype="datetime64[ns]"), "right") - 1
    if (segment < 0).any():
        raise ValueError("usage before the first credit price: check Prices.covers first")
    keys = rows[key].astype(object).where(rows[key].notna(), None)
    sums = rows["credits"].groupby([keys, segment], dropna=False, sort=False).sum()
    amounts: dict[str | None, Decimal] = {}
    for pair, credits in sums.items():
        name, index = pair[0], int(pair[1])  # type: ignore[index]
        label = name if isinstance(name, str) else None  # NaN or None: no key
        price = prices.prices[index]
        amounts[label] = amounts.get(label, Decimal(0)) + credits_decimal(credits) * price
    return amounts


def allocate(exact: Mapping[K, Decimal], prices: Prices) -> tuple[dict[K, Decimal], Decimal]:
    """Rows rounded to the minor unit so that they add up to their rounded total.

    Each row gets its amount rounded down, and the units still missing from the total go
    one each to the rows with the largest remainders (ties: the larger row first). Every
    row is then within one minor unit of its exact amount."""
    quantum = prices.quantum
    total = prices.round(sum(exact.values(), Decimal(0)))
    floors = {key: amount.quantize(quantum, ROUND_FLOOR) for key, amount in exact.items()}
    missing = int((total - sum(floors.values(), Decimal(0))) / quantum)
    order = sorted(exact, key=lambda key: (exact[key] - floors[key], exact[key]), reverse=True)
    for key in order[:missing]:
        floors[key] += quantum
    return floors, total


@dataclass(frozen=True, slots=True)
class ReportMoney:
    """A report's amounts, rounded for display: each table's rows add up to ``total``."""

    currency: str
    total: Decimal
    tables: Mapping[str, Mapping[str | None, Decimal]]  # "tools", "users", ... -> row key
    prices: Sequence[tuple[dt.date, Decimal]]  # in force during the period, from when
    forecast: Decimal | None  # the forecast's credits, priced as its days would be


def report_money(tables: ReportTables, prices: Prices) -> ReportMoney | None:
    """The amounts of every figure the report prints; None when some day of the period
    has no price (then no amount is shown rather than a part of one)."""
    period = tables.period
    if not prices.covers(period.start):
        return None
    detail = tables.detail
    by_table: dict[str, Mapping[str | None, Decimal]] = {}
    total = Decimal(0)
    for name, key, breakdown in (
        ("tools", "tool", tables.tools),
        ("users", "user", tables.users),
        ("projects", "project", tables.projects),
        ("groups", "group", tables.groups),
    ):
        if breakdown is None:
            continue
        exact = exact_amounts(detail, key, prices)
        shown = [None if pd.isna(k) else str(k) for k in breakdown.rows["key"]]
        rows = {k: exact.get(k, Decimal(0)) for k in shown if k != OTHERS}
        if OTHERS in shown:
            rows[OTHERS] = sum((amount for k, amount in exact.items() if k not in rows), Decimal(0))
        by_table[name], total = allocate(rows, prices)
    progress = tables.totals.in_progress
    forecast = None
    if progress is not None and progress.forecast is not None and progress.days:
        so_far = sum(exact_amounts(detail, "tool", prices).values(), Decimal(0))
        forecast = forecast_amount(
            so_far, progress.forecast - tables.totals.credits, progress.through, period, prices
        )
    return ReportMoney(
        prices.currency, total, by_table, prices.in_force(period.start, period.end), forecast
    )


def forecast_amount(
    so_far: Decimal, credits_left: float, through: dt.date, period: Period, prices: Prices
) -> Decimal:
    """A forecast in money: the amount so far, and the credits still to come spread evenly
    over the days after ``through`` to the period's end, each at its day's price."""
    remaining = _days(through + dt.timedelta(days=1), period.end)
    per_day = credits_decimal(max(credits_left, 0.0)) / len(remaining) if remaining else Decimal(0)
    return prices.round(so_far + sum((per_day * _on(prices, d) for d in remaining), Decimal(0)))


@dataclass(frozen=True, slots=True)
class MonthMoney:
    """A month (or billing cycle) so far in money, for ``watch``'s alerts: each figure
    rounded once, as the report's are."""

    prices: Prices
    used: Decimal
    budget: Decimal | None  # as finance set it in money, else the budget's credits priced
    forecast: Decimal | None
    drivers: Mapping[tuple[str, str | None], Decimal]  # ("tool" or "user", name) so far

    @property
    def currency(self) -> str:
        return self.prices.currency

    def on(self, day: dt.date, credits: float) -> Decimal:
        """``credits`` used on ``day``, at that day's price."""
        return self.prices.round(credits_decimal(credits) * _on(self.prices, day))


def month_money(
    rows: pd.DataFrame,
    period: Period,
    through: dt.date,
    budget: float | None,
    forecast: float | None,
    prices: Prices,
    budget_amount: Decimal | None = None,
) -> MonthMoney | None:
    """``rows`` (the tidy usage of ``period`` through ``through``) in money; None when a day
    of the period has no price, as a report then shows no amount rather than part of one."""
    if not prices.covers(period.start):
        return None
    tools = exact_amounts(rows, "tool", prices)
    users = exact_amounts(rows, "user", prices)
    so_far = sum(tools.values(), Decimal(0))
    drivers = {("tool", k): prices.round(v) for k, v in tools.items()}
    drivers |= {("user", k): prices.round(v) for k, v in users.items()}
    if budget_amount is not None:
        limit: Decimal | None = prices.round(budget_amount)
    elif budget:
        limit = prices.amount_for(budget, period.start, period.end)
    else:
        limit = None
    used = float(rows["credits"].sum()) if not rows.empty else 0.0
    ahead = (
        forecast_amount(so_far, forecast - used, through, period, prices)
        if forecast is not None
        else None
    )
    return MonthMoney(prices, prices.round(so_far), limit, ahead, drivers)


def line_amounts(rows: pd.DataFrame, prices: Prices) -> np.ndarray:
    """Each usage line's credits at its day's price, for the CSV (unrounded: a sheet that
    adds the column gets the report's exact total)."""
    starts = np.array(prices.starts, dtype="datetime64[ns]")
    segment = np.searchsorted(starts, rows["date"].to_numpy(dtype="datetime64[ns]"), "right") - 1
    table = np.array([float(p) for p in prices.prices] + [np.nan])
    amounts: np.ndarray = np.round(rows["credits"].to_numpy() * table[segment], 6)
    return amounts


def _days(first: dt.date, last: dt.date) -> list[dt.date]:
    return [first + dt.timedelta(days=n) for n in range((last - first).days + 1)]


def _on(prices: Prices, day: dt.date) -> Decimal:
    price = prices.on(day)
    assert price is not None  # covers(period.start) held
    return price
