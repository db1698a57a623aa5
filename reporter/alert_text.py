"""What an alert says, in words. Pure.

One text serves the email (HTML and plain), Slack and Teams, so a manager reads the
same explanation wherever it reaches them, in the report's locale. Each alert says
why it is due in figures a reader can check: a threshold the share used, the days
left and the pace; a forecast its arithmetic and the day the budget is reached; a
spike the day against a typical day, and the tools and users that made the
difference against their own typical day.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal

from babel import dates as babel_dates
from babel import units

from reporter.alerts import Alert, Driver, MonthToDate
from reporter.insights import split_between
from reporter.periods import Period
from reporter.render import Formatter, split_clause, with_lead

Gettext = Callable[[str], str]


@dataclass(frozen=True, slots=True)
class AlertText:
    """One alert in words: ``headline`` as a subject names it (lower-case start),
    ``lines`` the sentences that explain it."""

    kind: str
    headline: str
    lines: tuple[str, ...]

    @property
    def title(self) -> str:
        return self.headline[:1].upper() + self.headline[1:]

    def as_item(self) -> str:
        """The alert as one chat list item: its title, then its explanation."""
        return " ".join([f"{self.title}.", *self.lines])


def order(alert: Alert) -> tuple[int, int]:
    """The most pressing first: the highest threshold, then the forecast, then spikes."""
    if alert.kind == "threshold":
        return (0, -(alert.threshold or 0))
    return (1, 0) if alert.kind == "forecast" else (2, 0)


def headline(alert: Alert, month: Period, locale: str, gettext: Gettext) -> str:
    """What an alert says in a subject line."""
    name = babel_dates.format_date(month.start, "LLLL", locale=locale)  # "November"
    if month.is_cycle:  # a billing cycle by its days: "Nov 15 – Dec 14"
        name = Formatter(locale).span(month.start, month.end, within=month)
    if alert.kind == "threshold":
        return str(
            gettext("%(pct)s%% of the %(month)s budget used")
            % {"pct": alert.threshold, "month": name}
        )
    if alert.kind == "forecast":
        return str(gettext("forecast to exceed the %(month)s budget") % {"month": name})
    assert alert.day is not None
    return str(gettext("usage spike on %(day)s") % {"day": Formatter(locale).day_month(alert.day)})


def subject_lines(alerts: Sequence[Alert], lines: Sequence[str]) -> list[str]:
    """The subject names the highest threshold passed; the body lists the lower ones too
    ("100% of the budget used" says that 50% and 80% were)."""
    first_threshold = next((a for a in alerts if a.kind == "threshold"), None)
    return [
        line
        for alert, line in zip(alerts, lines, strict=True)
        if alert.kind != "threshold" or alert is first_threshold
    ]


def explain(
    alerts: Sequence[Alert], month: MonthToDate, locale: str, gettext: Gettext
) -> list[AlertText]:
    """``alerts``, most pressing first, each with what explains it. The month's top tools
    and users are told once, under the first alert about the month."""
    fmt = Formatter(locale)
    texts = []
    month_drivers_told = pace_told = False
    cycle = month.period.is_cycle  # a billing cycle is called one, never "the month"
    for alert in sorted(alerts, key=order):
        lines: list[str] = []
        if alert.kind == "threshold":
            if not pace_told:  # under the highest threshold; the lower ones are its past
                lines.append(_pace(month, fmt, locale, gettext))
                pace_told = True
        elif alert.kind == "forecast":
            lines += _forecast_basis(month, fmt, locale, gettext)
        else:
            lines.append(_spike_day(alert, month, fmt, gettext))
        if alert.kind == "spike":
            priced = _by_credits(_on_day(month, alert, fmt))
            lines += _drivers_line(
                gettext("Tools above their typical day"), alert.tools, fmt, gettext, priced
            )
            lines += _unit_cost(alert.tools, fmt, gettext)
            lines += _drivers_line(
                gettext("Users above their typical day"), alert.users, fmt, gettext, priced
            )
        elif not month_drivers_told:
            month_drivers_told = True
            tools, users = _so_far(month, "tool", fmt), _so_far(month, "user", fmt)
            lines += _drivers_line(
                gettext("Top tools this cycle") if cycle else gettext("Top tools this month"),
                alert.tools,
                fmt,
                gettext,
                tools,
            )
            lines += _drivers_line(
                gettext("Top users this cycle") if cycle else gettext("Top users this month"),
                alert.users,
                fmt,
                gettext,
                users,
            )
        texts.append(
            AlertText(alert.kind, headline(alert, month.period, locale, gettext), tuple(lines))
        )
    return texts


@dataclass(frozen=True, slots=True)
class AlertMoney:
    """The month so far in money, as an alert's figures show it beside credits."""

    used: str  # "€574.07"
    used_text: str  # "€574.07 of €450.00" with a budget, else "€574.07"
    forecast: str | None


def alert_money(month: MonthToDate, fmt: Formatter, gettext: Gettext) -> AlertMoney | None:
    """None without a price: an alert then shows credits only, as before."""
    money = month.money
    if money is None:
        return None
    used = fmt.money(money.used, money.currency)
    used_text = used
    if month.budget and money.budget is not None:
        used_text = gettext("%(used)s of %(limit)s") % {
            "used": used,
            "limit": fmt.money(money.budget, money.currency),
        }
    forecast = fmt.money(money.forecast, money.currency) if money.forecast is not None else None
    return AlertMoney(used, used_text, forecast)


def data_through(month: MonthToDate, locale: str, gettext: Gettext) -> str:
    """What every alert says of its data: complete days, through the day it ran for."""
    return gettext("Data through %(day)s (complete days, UTC).") % {
        "day": Formatter(locale).date(month.through)
    }


def _days(count: int, locale: str) -> str:
    return str(units.format_unit(count, "duration-day", locale=locale))  # "9 days", "1 día"


def _pace(month: MonthToDate, fmt: Formatter, locale: str, gettext: Gettext) -> str:
    used = fmt.share(month.used_pct, digits=0)
    cycle = month.period.is_cycle
    if month.days_left == 0:
        if cycle:
            return gettext("%(used)s of the budget used by the end of the cycle.") % {"used": used}
        return gettext("%(used)s of the budget used by the end of the month.") % {"used": used}
    if month.pace_pct is None:
        return gettext("%(used)s of the budget used with %(left)s left.") % {
            "used": used,
            "left": _days(month.days_left, locale),
        }
    pace = (
        gettext(
            "%(used)s of the budget used with %(left)s left; at this pace the cycle ends at"
            " %(pace)s."
        )
        if cycle
        else gettext(
            "%(used)s of the budget used with %(left)s left; at this pace the month ends at"
            " %(pace)s."
        )
    )
    return pace % {
        "used": used,
        "left": _days(month.days_left, locale),
        "pace": fmt.share(month.pace_pct, digits=0),
    }


def _forecast_basis(month: MonthToDate, fmt: Formatter, locale: str, gettext: Gettext) -> list[str]:
    if month.forecast is None:
        return []
    values = {
        "forecast": fmt.number(month.forecast),
        "used": fmt.number(month.used),
        "elapsed": _days(month.elapsed_days, locale),
        "days": _days(month.period.days, locale),
    }
    money = month.money
    if money is not None and money.forecast is not None:
        values["forecast_amount"] = fmt.money(money.forecast, money.currency)
        values["used_amount"] = fmt.money(money.used, money.currency)
        basis = (
            gettext(
                "Forecast for the cycle: %(forecast)s credits (%(forecast_amount)s), from"
                " %(used)s credits so far (%(used_amount)s) ÷ %(elapsed)s × %(days)s in the"
                " cycle."
            )
            if month.period.is_cycle
            else gettext(
                "Forecast for the month: %(forecast)s credits (%(forecast_amount)s), from"
                " %(used)s credits so far (%(used_amount)s) ÷ %(elapsed)s × %(days)s in the"
                " month."
            )
        )
    elif month.period.is_cycle:
        basis = gettext(
            "Forecast for the cycle: %(forecast)s credits, from %(used)s credits so far"
            " ÷ %(elapsed)s × %(days)s in the cycle."
        )
    else:
        basis = gettext(
            "Forecast for the month: %(forecast)s credits, from %(used)s credits so far"
            " ÷ %(elapsed)s × %(days)s in the month."
        )
    lines = [basis % values]
    if month.crossing is not None:
        lines.append(
            gettext("At this pace the budget is reached on %(day)s.")
            % {"day": fmt.date(month.crossing)}
        )
    return lines


def _spike_day(alert: Alert, month: MonthToDate, fmt: Formatter, gettext: Gettext) -> str:
    assert alert.day is not None
    assert alert.typical
    values = {
        "day": fmt.date(alert.day),
        "credits": fmt.number(alert.day_credits),
        "ratio": fmt.decimal((alert.day_credits or 0) / alert.typical),
        "typical": fmt.number(alert.typical),
    }
    spent = _on_day(month, alert, fmt)
    if spent is None:
        return (
            gettext(
                "%(day)s: %(credits)s credits, %(ratio)s times a typical day (%(typical)s credits,"
                " the median of the 28 days before)."
            )
            % values
        )
    values["amount"] = spent(alert.day_credits or 0.0)
    values["typical_amount"] = spent(alert.typical)
    return (
        gettext(
            "%(day)s: %(credits)s credits (%(amount)s), %(ratio)s times a typical day"
            " (%(typical)s credits, %(typical_amount)s, the median of the 28 days before)."
        )
        % values
    )


Priced = Callable[[Driver, float], str]
"""A driver's credits figure (its credits, or its typical day's) in money."""


def _on_day(month: MonthToDate, alert: Alert, fmt: Formatter) -> Callable[[float], str] | None:
    """Credits of a spike's day in money, at that day's price; None without a price."""
    money, day = month.money, alert.day
    if money is None or day is None:
        return None
    return lambda credits: fmt.money(money.on(day, credits), money.currency)


def _by_credits(spent: Callable[[float], str] | None) -> Priced | None:
    """A spike driver's figures priced by their credits alone (all are of one day)."""
    if spent is None:
        return None
    return lambda _driver, credits: spent(credits)


def _so_far(month: MonthToDate, kind: str, fmt: Formatter) -> Priced | None:
    """A tool's or user's credits so far in money, each day at its price; None without one."""
    money = month.money
    if money is None:
        return None
    return lambda driver, _credits: fmt.money(
        money.drivers.get((kind, driver.name), Decimal(0)), money.currency
    )
    fmt_money = Formatter.money

    def spent(credits: float) -> str:
        return str(credits)  # replaced below

    del spent, fmt_money
    return None


def _unit_cost(tools: Sequence[Driver], fmt: Formatter, gettext: Gettext) -> list[str]:
    """The spike's main tool taken apart against its typical day, as a report's "what
    changed" takes a tool apart against the previous period: more uses, or dearer ones."""
    top = tools[0] if tools else None
    if top is None or top.typical is None:
        return []
    split = split_between(top.typical_uses, top.typical, top.uses, top.credits)
    if split is None:
        return []
    text = gettext("%(tool)s against its typical day: %(split)s.") % {
        "tool": top.name,
        "split": split_clause(split, fmt, gettext),
    }
    return [with_lead(text, split, fmt, gettext)]


def _drivers_line(
    label: str,
    drivers: Sequence[Driver],
    fmt: Formatter,
    gettext: Gettext,
    priced: Priced | None = None,
) -> list[str]:
    """``label: A 1,200, B 300``, or against their typical day for a spike's drivers, each
    figure with its amount when ``priced``; a user ``None`` is usage not attributed to a
    user, never a user of that name."""
    if not drivers:
        return []
    parts = []
    for driver in drivers:
        name = driver.name if driver.name is not None else gettext("not attributed to a user")
        values = {"name": name, "credits": fmt.number(driver.credits)}
        if driver.typical is None:
            amount = f" ({priced(driver, driver.credits)})" if priced else ""
            parts.append(f"{name} {fmt.number(driver.credits)}{amount}")
        elif priced is None:
            values["typical"] = fmt.number(driver.typical)
            parts.append(
                gettext("%(name)s %(credits)s credits against a typical %(typical)s") % values
            )
        else:
            values["typical"] = fmt.number(driver.typical)
            values["amount"] = priced(driver, driver.credits)
            values["typical_amount"] = priced(driver, driver.typical)
            parts.append(
                gettext(
                    "%(name)s %(credits)s credits (%(amount)s) against a typical %(typical)s"
                    " (%(typical_amount)s)"
                )
                % values
            )
    separator = "; " if drivers[0].typical is not None else ", "
    return [f"{label}: {separator.join(parts)}."]
