"""Which spend alerts a month in progress has earned so far. Pure: data in, alerts out.

Every alert is a fact about the data through one day, so the same data always
gives the same alerts; whether one was already sent is the ledger's business,
not this module's. Running ``watch`` each day therefore sends each alert on the
first day it holds, and never again.

- threshold: month-to-date credits reached a percentage of the budget;
- forecast: the month-end forecast (the PDF's, ``usage.budget_status``) is above
  the budget while the month is not yet over it;
- spike: one day's credits are ``spike_factor`` times the median of the 28
  days before it; a day whose 28 days have a median of 0 (too little history)
  raises nothing.

An alert carries what explains it, so its reader can tell from the message alone
whether to act: a spike the tools and users that made the difference against
their own typical day (not merely the day's largest); a threshold or a forecast
the month's pace (``MonthToDate``: days gone, days left, the forecast's basis).
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Literal

import pandas as pd

from reporter.money import MonthMoney, month_money
from reporter.periods import Period
from reporter.prices import Prices
from reporter.usage import budget_status

SPIKE_WINDOW_DAYS = 28
TOP_DRIVERS = 3

AlertKind = Literal["threshold", "forecast", "spike"]


@dataclass(frozen=True, slots=True)
class Driver:
    """A tool or user behind the credits an alert is about; ``name`` None: usage not
    attributed to a user. ``typical``: for a spike, its own median day of the 28 before."""

    name: str | None
    credits: float
    typical: float | None = None
    uses: int = 0  # for a spike: its uses that day
    typical_uses: float = 0.0  # and its median day's uses


@dataclass(frozen=True, slots=True)
class Alert:
    kind: AlertKind
    threshold: int | None = None  # percent, for "threshold"
    day: dt.date | None = None  # the spike's day, for "spike"
    day_credits: float | None = None  # that day's credits
    typical: float | None = None  # the median day of the 28 before it
    tools: list[Driver] = field(default_factory=list)
    users: list[Driver] = field(default_factory=list)

    @property
    def key(self) -> str:
        """The ledger's ``message`` for this alert: what makes it "the same alert"."""
        if self.kind == "threshold":
            return f"alert:threshold:{self.threshold}"
        if self.kind == "spike":
            assert self.day is not None
            return f"alert:spike:{self.day.isoformat()}"
        return "alert:forecast"


@dataclass(frozen=True, slots=True)
class MonthToDate:
    """The month so far, as every alert of one run sees it."""

    period: Period
    through: dt.date  # the data is as of the end of this day
    used: float
    budget: float | None
    forecast: float | None  # month-end at the run rate so far; None once the month is over
    crossing: dt.date | None  # the day the budget was passed, or the run rate reaches it
    cumulative: pd.DataFrame  # date, credits (cumulative), for the chart
    alerts: list[Alert]
    money: MonthMoney | None = None  # the same figures in money, when the report has a price

    @property
    def elapsed_days(self) -> int:
        """Complete days of the month the figures cover (the forecast divides by them)."""
        return (self.through - self.period.start).days + 1

    @property
    def days_left(self) -> int:
        """Days of the month after ``through``: 0 once the month is over."""
        return max(0, (self.period.end - self.through).days)

    @property
    def used_pct(self) -> float | None:
        return self.used / self.budget * 100 if self.budget else None

    @property
    def pace_pct(self) -> float | None:
        """Where the month ends, as a share of the budget, at the pace so far."""
        if not self.budget or self.forecast is None:
            return None
        return self.forecast / self.budget * 100


@dataclass(frozen=True, slots=True)
class AlertSettings:
    thresholds: list[int]
    forecast: bool
    spike_factor: float


def month_to_date(
    tidy: pd.DataFrame,
    period: Period,
    through: dt.date,
    budget: float | None,
    settings: AlertSettings,
    prices: Prices | None = None,
    budget_amount: Decimal | None = None,
) -> MonthToDate:
    """The month's figures through ``through`` and the alerts due on them; with ``prices``,
    in money too (``budget_amount``: the budget as it was set in money, if it was).

    ``tidy`` is a tidy usage frame (``usage.tidy_frame``) by day, covering at least
    the 28 days before the month (for the spike baseline) through ``through``."""
    per_day = _per_day(tidy, period.start - dt.timedelta(days=SPIKE_WINDOW_DAYS), through)
    month = per_day[per_day.index >= pd.Timestamp(period.start)]
    in_month = tidy[
        (tidy["date"] >= pd.Timestamp(period.start)) & (tidy["date"] <= pd.Timestamp(through))
    ]
    used = float(month.sum())
    forecast = crossing = None
    alerts: list[Alert] = []
    if budget:
        status = budget_status(used, budget, period, through + dt.timedelta(days=1))
        forecast = status.forecast
        crossing = _crossing(month, used, budget, period, through)
        tools, users = _drivers(in_month)
        for threshold in sorted(set(settings.thresholds)):
            if used >= budget * threshold / 100:
                alerts.append(Alert("threshold", threshold=threshold, tools=tools, users=users))
        if settings.forecast and forecast is not None and forecast > budget and used < budget:
            alerts.append(Alert("forecast", tools=tools, users=users))
    if settings.spike_factor > 0:
        alerts.extend(_spikes(per_day, tidy, period.start, settings.spike_factor))
    cumulative = month.cumsum().rename("credits").rename_axis("date").reset_index()
    money = (
        month_money(in_month, period, through, budget, forecast, prices, budget_amount)
        if prices is not None
        else None
    )
    return MonthToDate(period, through, used, budget, forecast, crossing, cumulative, alerts, money)


def _per_day(tidy: pd.DataFrame, start: dt.date, end: dt.date) -> pd.Series:
    """Credits per calendar day from ``start`` to ``end``; days without usage are 0."""
    days = pd.date_range(start, end, freq="D")
    return tidy.groupby("date")["credits"].sum().reindex(days, fill_value=0.0).astype(float)


def _crossing(
    month: pd.Series, used: float, budget: float, period: Period, through: dt.date
) -> dt.date | None:
    """The day the budget was passed, once it has been; until then, the day the run rate so
    far reaches it, or None if it does not within the month."""
    if used >= budget:
        running = month.cumsum()
        first: pd.Timestamp = running[running >= budget].index[0]
        return first.date()
    elapsed = (through - period.start).days + 1
    if used <= 0 or elapsed <= 0:
        return None
    days = math.ceil(budget / (used / elapsed))
    return period.start + dt.timedelta(days=days - 1) if days <= period.days else None


def _spikes(per_day: pd.Series, tidy: pd.DataFrame, start: dt.date, factor: float) -> list[Alert]:
    typical = per_day.shift(1).rolling(SPIKE_WINDOW_DAYS, min_periods=SPIKE_WINDOW_DAYS).median()
    found = []
    for day, credits in per_day[per_day.index >= pd.Timestamp(start)].items():
        base = typical.get(day)
        if base is None or pd.isna(base) or base <= 0 or credits < factor * base:
            continue
        assert isinstance(day, pd.Timestamp)
        window = tidy[
            (tidy["date"] >= day - pd.Timedelta(days=SPIKE_WINDOW_DAYS)) & (tidy["date"] <= day)
        ]
        tools, users = _above_typical(window, day, "tool"), _above_typical(window, day, "user")
        found.append(
            Alert(
                "spike",
                day=day.date(),
                day_credits=float(credits),
                typical=float(base),
                tools=tools,
                users=users,
            )
        )
    return found


def _drivers(rows: pd.DataFrame) -> tuple[list[Driver], list[Driver]]:
    """The top tools and users behind ``rows``' credits."""

    def top(column: str) -> list[Driver]:
        sums = rows.groupby(column, dropna=False)["credits"].sum()
        sums = sums[sums > 0].sort_values(ascending=False, kind="stable").head(TOP_DRIVERS)
        return [
            Driver(str(name) if isinstance(name, str) else None, float(value))
            for name, value in sums.items()
        ]

    return top("tool"), top("user")


def _above_typical(window: pd.DataFrame, day: pd.Timestamp, column: str) -> list[Driver]:
    """The tools (or users) whose credits on ``day`` were furthest above their own median
    day of the 28 before it: what made the spike, which is not always the day's largest
    (a tool that is big every day did not cause it)."""
    named = window.assign(
        **{column: window[column].astype(object).where(window[column].notna(), _NONE)}
    )
    days = pd.date_range(day - pd.Timedelta(days=SPIKE_WINDOW_DAYS), day, freq="D")
    grouped = named.groupby([column, "date"])

    def by_day(figure: str) -> pd.DataFrame:
        sums = grouped[figure].sum().unstack("date", fill_value=0)
        return sums.reindex(columns=days, fill_value=0)

    credits, uses = by_day("credits"), by_day("uses")
    today, typical = credits[day], credits[days[:-1]].median(axis=1)
    uses_today, typical_uses = uses[day], uses[days[:-1]].median(axis=1)
    excess = (today - typical)[today > typical].sort_values(ascending=False, kind="stable")
    return [
        Driver(
            None if name == _NONE else str(name),
            float(today[name]),
            float(typical[name]),
            int(uses_today[name]),
            float(typical_uses[name]),
        )
        for name in excess.head(TOP_DRIVERS).index
    ]


_NONE = "\x00none"  # usage with no user, as a key pandas will group (NaN it drops)
