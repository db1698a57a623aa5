"""The report's view model: tables, insights and charts as values a template shows. Pure.

Templates get raw numbers plus ``fmt`` (a Babel formatter) so a restyled
template can format differently; labels that need a translation (others,
unattributed, periods) are made here once.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from reporter.budgets import Basis, BudgetChoice
from reporter.charts import UNATTRIBUTED_COLOUR, ChartLabels, tool_colour
from reporter.config import ReportConfig
from reporter.insights import Insight
from reporter.money import ReportMoney, report_money
from reporter.periods import Period, in_cycles, last_complete_day, parse_period
from reporter.prices import Prices
from reporter.render import Formatter, sentence
from reporter.usage import OTHERS, Breakdown, ReportTables


@dataclass(frozen=True, slots=True)
class Source:
    """Where the figures came from, stated at the end of the report."""

    api_url: str
    filters: Mapping[str, list[str] | list[int]]
    fetched_at: dt.datetime


@dataclass(frozen=True, slots=True)
class Figure:
    """A chart as the page shows it: an image and the words that stand in for it."""

    src: str  # a data: URL
    alt: str


def chart_labels(gettext: Callable[[str], str], tables: ReportTables) -> ChartLabels:
    detail = tables.period.detail_granularity
    return ChartLabels(
        daily_title=gettext("Credits per day, by tool")
        if detail == "day"
        else gettext("Credits per month, by tool"),
        history_title=gettext("Credits per period, last six periods"),
        credits=gettext("Credits"),
        tool=gettext("Tool"),
        day=gettext("Day") if detail == "day" else gettext("Month"),
        period=gettext("Period"),
        user=gettext("User"),
        in_progress=gettext(
            "In progress: the last period so far (lighter) and its forecast (dashed)"
        ),
    )


def build_context(
    report: ReportConfig,
    tables: ReportTables,
    insights: list[Insight],
    charts: Mapping[str, Figure | None],
    *,
    locale: str,
    gettext: Callable[[str], str],
    ngettext: Callable[[str, str, int], str],
    source: Source,
    generated_at: dt.datetime,
    prices: Prices | None = None,
    budget_choice: BudgetChoice | None = None,
) -> dict[str, Any]:
    """Everything ``report.html.j2`` and the email templates render; with ``prices``,
    each credit figure's amount too (``money``), and what it was priced at;
    ``budget_choice`` says where the budget came from (``Config.budget_for``)."""
    fmt = Formatter(locale)
    period = tables.period
    totals = tables.totals
    money = report_money(tables, prices) if prices is not None else None
    amounts = money.tables if money is not None else {}
    return {
        "title": report.display_title,
        "name": report.name,
        "period_key": period.key,
        "period_label": fmt.period(period, gettext),
        # "Octubre de 2026" where it starts a heading, "octubre de 2026" within a sentence.
        "period_title": _capitalised(_period_title(period, fmt, gettext)),
        "cycle_line": _cycle_line(period, fmt, gettext),
        "period_name": fmt.period(period, gettext),
        "period_range": fmt.date_range(period.start, period.end),
        "previous_label": fmt.period(period.previous(), gettext),
        **_comparison_labels(tables, fmt, gettext, ngettext),
        "empty": tables.empty,
        "totals": totals,
        "totals_per_use": totals.per_use,
        "totals_per_use_change": totals.per_use_change_pct,
        "budget": tables.budget,
        "budget_basis": _budget_basis(tables, budget_choice, prices, fmt, gettext, ngettext),
        "insights": [
            {"text": sentence(i, fmt, gettext, ngettext, _amount_of(i, money, fmt)), "tone": i.tone}
            for i in insights
        ],
        "charts": charts,
        "money": money,
        "budget_money": _budget_money(tables, budget_choice, money, prices),
        "price_lines": _price_lines(prices, money, period, fmt, gettext),
        "tools": _rows(tables.tools, gettext, ngettext, colour=True, amounts=amounts.get("tools")),
        "users": _rows(
            tables.users,
            gettext,
            ngettext,
            others_count=tables.others_count,
            fmt=fmt,
            amounts=amounts.get("users"),
        ),
        "projects": _rows(tables.projects, gettext, ngettext, amounts=amounts.get("projects"))
        if tables.projects
        else [],
        "groups": _rows(tables.groups, gettext, ngettext, amounts=amounts.get("groups"))
        if tables.groups
        else [],
        "user_count": tables.user_count,
        "top_users": len(tables.users.rows) - (1 if tables.others_count else 0),
        "in_progress": not period.is_complete(generated_at.date()),
        "data_through": last_complete_day(period, generated_at.date()),
        "source": source,
        "filters": _filter_lines(source.filters, gettext),
        # Under half a credit is float rounding in the API's own sums, not worth a note.
        "breakdown_excess": tables.breakdown_excess if tables.breakdown_excess >= 0.5 else None,
        "generated_at": generated_at,
    }


def _comparison_labels(
    tables: ReportTables,
    fmt: Formatter,
    gettext: Callable[[str], str],
    ngettext: Callable[[str, str, int], str],
) -> dict[str, str | None]:
    """What each change is against, in words: the whole previous period, or for a period
    in progress the same days of it (``vs Oct 1 – 24``), with the forecast beside."""
    period, totals = tables.period, tables.totals
    before = period.previous()
    # A cycle's previous one by its days, without the year when it is this one's.
    previous = (
        fmt.span(before.start, before.end, within=period)
        if period.is_cycle
        else fmt.period(before, gettext)
    )
    progress = totals.in_progress
    if progress is None:
        return {
            "compare_label": gettext("vs %(period)s") % {"period": previous},
            "no_compare_label": gettext("No usage in %(period)s to compare with")
            % {"period": previous},
            "usual_label": gettext("average %(n)s credits per period")
            % {"n": fmt.number(totals.history_average)},
            "forecast_label": None,
        }
    if progress.previous_span is None:
        compare = no_compare = gettext("No complete day yet to compare with")
    else:
        days = fmt.span(*progress.previous_span, within=period)
        compare = gettext("vs %(days)s") % {"days": days}
        no_compare = gettext("No usage in %(period)s to compare with") % {"period": days}
    if progress.forecast is None:
        forecast = None
    elif progress.forecast_change_pct is None:
        forecast = gettext("forecast %(n)s") % {"n": fmt.number(progress.forecast)}
    else:
        forecast = gettext("forecast %(n)s, %(change)s vs %(period)s") % {
            "n": fmt.number(progress.forecast),
            "change": fmt.change(progress.forecast_change_pct),
            "period": previous,
        }
    usual = ngettext(
        "average %(n)s credits in the first %(days)s day of earlier periods",
        "average %(n)s credits in the first %(days)s days of earlier periods",
        progress.days,
    ) % {"n": fmt.number(totals.history_average), "days": fmt.number(progress.days)}
    return {
        "compare_label": compare,
        "no_compare_label": no_compare,
        "usual_label": usual,
        "forecast_label": forecast,
    }


def _period_title(period: Period, fmt: Formatter, gettext: Callable[[str], str]) -> str:
    """The cover's name for the period; a billing cycle is named by the month it starts
    in, as ``--period`` names it, and its dates follow."""
    if not period.is_cycle:
        return fmt.period(period, gettext)
    return gettext("Billing cycle of %(month)s") % {
        "month": fmt.period(in_cycles(period, 1), gettext)
    }


def _cycle_line(period: Period, fmt: Formatter, gettext: Callable[[str], str]) -> str | None:
    """For "About these figures": the periods are billing cycles, and which days."""
    if not period.is_cycle:
        return None
    previous = period.previous()
    return gettext(
        "Periods are billing cycles that start on day %(day)s of each month (the last day"
        " of a shorter month): this one is %(range)s, compared with %(previous)s."
    ) % {
        "day": period.billing_day,
        "range": fmt.date_range(period.start, period.end),
        "previous": fmt.date_range(previous.start, previous.end),
    }


def budget_sentence(
    choice: BudgetChoice,
    fmt: Formatter,
    gettext: Callable[[str], str],
    ngettext: Callable[[str, str, int], str],
) -> str:
    """What the budget is and where it came from, for "About these figures", such as
    "Budget: 80,000 credits, set for December 2026."."""
    values: dict[str, str | int] = {
        "credits": fmt.number(choice.credits),
        "months": len(choice.months),
        # A month spelt as CLDR does within a sentence ("diciembre de 2026").
        "month": fmt.period(parse_period(choice.months[0], today=dt.date.max), gettext),
    }
    if choice.basis is Basis.SET:
        return gettext("Budget: %(credits)s credits, set for %(month)s.") % values
    if choice.basis is Basis.MONTHLY:
        return gettext("Budget: %(credits)s credits, the monthly budget_credits.") % values
    if choice.basis is Basis.SUM:
        return gettext("Budget: %(credits)s credits, the sum of its months' budgets.") % values
    if choice.basis is Basis.PRORATED:
        return (
            gettext("Budget: %(credits)s credits, the monthly budget_credits × %(months)s months.")
            % values
        )
    if choice.basis is Basis.WEEK:
        return (
            gettext("Budget: %(credits)s credits, the budget of %(month)s prorated to one week.")
            % values
        )
    without = len(choice.months) - choice.own
    return ngettext(
        "Budget: %(credits)s credits, the sum of its months' budgets (the monthly"
        " budget_credits for the %(count)s month without its own).",
        "Budget: %(credits)s credits, the sum of its months' budgets (the monthly"
        " budget_credits for the %(count)s months without their own).",
        without,
    ) % {**values, "count": without}


def _rows(
    table: Breakdown,
    gettext: Callable[[str], str],
    ngettext: Callable[[str, str, int], str],
    *,
    colour: bool = False,
    others_count: int = 0,
    fmt: Formatter | None = None,
    amounts: Mapping[str | None, Decimal] | None = None,
) -> list[dict[str, Any]]:
    records = list(table.records())
    # Bars compare named rows (tools, users, projects) with each other, as the bar charts
    # these tables replaced did; "everyone else" and unattributed usage get none.
    named = [r.share for r in records if r.key not in (None, OTHERS) and math.isfinite(r.share)]
    largest = max(named, default=0.0)
    rows = []
    for record in records:
        if record.key is None:
            label, kind = gettext("Not attributed to a user"), "unattributed"
        elif record.key == OTHERS:
            label = ngettext(
                "Everyone else (%(n)s user)", "Everyone else (%(n)s users)", others_count
            ) % {"n": fmt.number(others_count) if fmt else others_count}
            kind = "others"
        else:
            label, kind = record.key, "named"
        rows.append(
            {
                "label": label,
                "kind": kind,
                "uses": record.uses,
                "credits": record.credits,
                "share": record.share,
                # The in-table bar's length, as a percentage of its track, which the largest
                # named row fills: the bar chart this table once sat beside, drawn by CSS.
                "bar": round(100 * record.share / largest, 1)
                if kind == "named" and largest > 0 and math.isfinite(record.share)
                else None,
                "previous": record.previous_credits,
                "change": record.change_pct,
                "per_use": record.per_use,
                "per_use_change": record.per_use_change_pct,
                "amount": amounts.get(record.key) if amounts is not None else None,
                "colour": (tool_colour(label) if kind == "named" else UNATTRIBUTED_COLOUR)
                if colour
                else None,
            }
        )
    return rows


def _budget_basis(
    tables: ReportTables,
    choice: BudgetChoice | None,
    prices: Prices | None,
    fmt: Formatter,
    gettext: Callable[[str], str],
    ngettext: Callable[[str, str, int], str],
) -> str | None:
    """Where the budget came from; a budget given in money says so, and what it buys."""
    if not tables.budget or choice is None:
        return None
    if choice.amount is None or prices is None:
        return budget_sentence(choice, fmt, gettext, ngettext)
    return gettext(
        "Budget: %(amount)s, set in money: %(credits)s credits at each day's price per credit."
    ) % {
        "amount": fmt.money(prices.round(choice.amount), prices.currency),
        "credits": fmt.number(choice.credits),
    }


def _budget_money(
    tables: ReportTables,
    choice: BudgetChoice | None,
    money: ReportMoney | None,
    prices: Prices | None,
) -> tuple[Decimal, Decimal] | None:
    """(used, budget) in money, for the budget card: the budget as finance set it when it
    was given in money, else its credits at each day's price (spread evenly)."""
    if money is None or prices is None or tables.budget is None:
        return None
    period = tables.period
    if choice is not None and choice.amount is not None:
        limit: Decimal | None = prices.round(choice.amount)
    else:
        limit = prices.amount_for(tables.budget.limit, period.start, period.end)
    return (money.total, limit) if limit is not None else None


def _amount_of(insight: Insight, money: ReportMoney | None, fmt: Formatter) -> str | None:
    """The amount of the credits an insight states, where it states a change (the total,
    a tool's, a project's, a new tool's); None without a price, or for any other line."""
    if money is None:
        return None
    v = insight.values
    if insight.kind == "total_changed":
        amount: Decimal | None = money.total
    elif insight.kind in ("tool_grew", "tool_fell", "tool_new"):
        amount = money.tables.get("tools", {}).get(v["tool"])
    elif insight.kind in ("project_grew", "project_fell"):
        amount = money.tables.get("projects", {}).get(v["project"])
    else:
        return None
    return fmt.money(amount, money.currency) if amount is not None else None


def _price_lines(
    prices: Prices | None,
    money: ReportMoney | None,
    period: Period,
    fmt: Formatter,
    gettext: Callable[[str], str],
) -> list[str]:
    """What the amounts were priced at, for "About these figures"; or why there are none."""
    if prices is None:
        return []
    if money is None:
        return [
            gettext(
                "No amounts: the credit prices in the config start on %(date)s, after this"
                " period began."
            )
            % {"date": fmt.date(prices.starts[0])}
        ]
    currency = money.currency
    if len(money.prices) == 1:
        price = fmt.price(money.prices[0][1], currency)
        since = max(day for day in prices.starts if day <= period.start)
        if since == dt.date.min:  # one credit_price, with no date
            return [gettext("Amounts: credits at %(price)s per credit.") % {"price": price}]
        return [
            gettext("Amounts: credits at %(price)s per credit, the price since %(date)s.")
            % {"price": price, "date": fmt.date(since)}
        ]
    steps = "; ".join(
        gettext("%(price)s from %(date)s")
        % {"price": fmt.price(price, currency), "date": fmt.date(day)}
        for day, price in money.prices
    )
    return [
        gettext("Amounts: each day's credits at the price per credit in force that day: %(steps)s.")
        % {"steps": steps}
    ]


def _filter_lines(
    filters: Mapping[str, list[str] | list[int]], gettext: Callable[[str], str]
) -> list[str]:
    names = {
        "project_references": gettext("Projects"),
        "group_ids": gettext("Groups"),
        "api_key_ids": gettext("API keys"),
    }
    return [f"{names[k]}: {', '.join(str(v) for v in values)}" for k, values in filters.items()]


def _capitalised(text: str) -> str:
    """Headings start with a capital; CLDR month names are lower case in many languages."""
    return text[:1].upper() + text[1:]
