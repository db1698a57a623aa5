"""Budgets by period: finance's CSV of monthly budgets, and the budget a period gets. Pure.

A report's ``budget_credits`` is a monthly budget; ``budgets`` (in the TOML, or rows of
the CSV named by ``[defaults] budgets_csv``) overrides it for given months. A quarter or
a year is budgeted month by month: each month's override, else ``budget_credits``; when
a month has neither, the period has no budget. Reading the CSV file is ``load_config``'s
(I/O at the edge); turning its text into rows is here.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Literal

from reporter.periods import FIRST_YEAR, Period, PeriodKind

BudgetColumn = Literal["budget_credits", "budget_amount"]
"""The column a CSV's budgets are in: credits, or money (which needs ``credit_price``)."""

_MONTH = re.compile(r"^(\d{4})-(\d{2})$")
_KEY_COLUMNS = ("report", "period")
_BUDGET_COLUMNS: tuple[BudgetColumn, ...] = ("budget_credits", "budget_amount")


class BudgetFileError(ValueError):
    """A CSV problem at a line and, where there is one, a column."""

    def __init__(self, line: int, column: str | None, message: str) -> None:
        where = f"line {line}" + (f", column {column!r}" if column else "")
        super().__init__(f"{where}: {message}")
        self.line = line
        self.column = column


@dataclass(frozen=True, slots=True)
class BudgetRow:
    """One line of the CSV: a report's budget for one month (``YYYY-MM``)."""

    line: int
    report: str
    month: str
    value: float  # in the sheet's column: credits, or money for ``budget_amount``


@dataclass(frozen=True, slots=True)
class BudgetSheet:
    column: BudgetColumn  # which column the values came from
    rows: tuple[BudgetRow, ...]


class Basis(StrEnum):
    """How a period's budget was arrived at, for the sentence the PDF states."""

    SET = "set"  # a month with its own budget
    MONTHLY = "monthly"  # a month with budget_credits
    SUM = "sum"  # a quarter or year whose every month has its own budget
    PRORATED = "prorated"  # a quarter or year with budget_credits for every month
    MIXED = "mixed"  # a quarter or year: some months their own, the others budget_credits
    WEEK = "week"  # a week: its month's budget prorated to seven days


@dataclass(frozen=True, slots=True)
class BudgetChoice:
    """A period's budget in credits, and how it was chosen."""

    credits: float
    basis: Basis
    months: tuple[str, ...]  # the months it is made of (a week: the month it is in)
    own: int  # how many of them have their own budget
    # The budget in money, when every month's was given in money (budget_amount[s]): the
    # figure finance set, shown as it is rather than turned into credits and back.
    amount: Decimal | None = None


def month_problem(text: str) -> str | None:
    """Why ``text`` is not a month spelt ``YYYY-MM`` (from 1970), or None when it is."""
    match = _MONTH.match(text)
    if not match:
        return f"not a month: use YYYY-MM, e.g. 2026-12 (got {text!r})"
    year, month = int(match[1]), int(match[2])
    if not 1 <= month <= 12:
        return f"not a month: months run 01-12 (got {text!r})"
    if year < FIRST_YEAR:
        return f"too early: periods start in {FIRST_YEAR} (got {text!r})"
    return None


def budget_problem(value: float) -> str | None:
    if not math.isfinite(value):
        return "not a number"
    if value < 0:
        return "must not be negative"
    return None


def parse_budgets_csv(text: str) -> BudgetSheet:
    """Rows of ``report,period,budget_credits`` (or ``budget_amount``), with their line
    numbers; raises ``BudgetFileError`` at the first bad line. Blank lines are skipped;
    a report's month may appear once."""
    reader = csv.reader(io.StringIO(text.removeprefix("\ufeff"), newline=""))
    header = [name.strip() for name in next(reader, [])]
    column = _budget_column(header)
    index = {name: header.index(name) for name in (*_KEY_COLUMNS, column)}
    rows: list[BudgetRow] = []
    seen: dict[tuple[str, str], int] = {}
    for fields in reader:
        line = reader.line_num
        if not any(f.strip() for f in fields):
            continue
        if len(fields) != len(header):
            raise BudgetFileError(
                line, None, f"expected {len(header)} fields, got {len(fields)} ({fields!r})"
            )
        report, month, raw = (fields[index[name]].strip() for name in (*_KEY_COLUMNS, column))
        if not report:
            raise BudgetFileError(line, "report", "empty: name the report")
        problem = month_problem(month)
        if problem:
            raise BudgetFileError(line, "period", problem)
        try:
            value = float(raw)
        except ValueError:
            raise BudgetFileError(line, column, f"not a number (got {raw!r})") from None
        problem = budget_problem(value)
        if problem:
            raise BudgetFileError(line, column, f"{problem} (got {raw!r})")
        if (report, month) in seen:
            raise BudgetFileError(
                line, "period", f"{report} {month} is already on line {seen[report, month]}"
            )
        seen[report, month] = line
        rows.append(BudgetRow(line, report, month, value))
    return BudgetSheet(column, tuple(rows))


def _budget_column(header: Sequence[str]) -> BudgetColumn:
    expected = "report,period,budget_credits"
    if not header:
        raise BudgetFileError(1, None, f"empty file: the first line must be {expected}")
    budget = [name for name in _BUDGET_COLUMNS if name in header]
    missing = [name for name in _KEY_COLUMNS if name not in header]
    unknown = [name for name in header if name not in (*_KEY_COLUMNS, *_BUDGET_COLUMNS)]
    twice = sorted({name for name in header if header.count(name) > 1})
    if missing or unknown or twice or len(budget) != 1:
        raise BudgetFileError(1, None, f"the columns must be {expected} (got {','.join(header)!r})")
    return budget[0]


def months_of(period: Period) -> tuple[str, ...]:
    """The ``YYYY-MM`` months a period's budget is made of; a week's is the month its
    Thursday is in (as an ISO week belongs to the year its Thursday is in)."""
    if period.kind is PeriodKind.WEEK:
        day = period.start + dt.timedelta(days=3)
        return (f"{day.year}-{day.month:02d}",)
    count = {PeriodKind.MONTH: 1, PeriodKind.QUARTER: 3, PeriodKind.YEAR: 12}[period.kind]
    first = period.start.year * 12 + period.start.month - 1
    return tuple(f"{m // 12}-{m % 12 + 1:02d}" for m in range(first, first + count))


def choose_budget(
    period: Period,
    budgets: Mapping[str, float],
    monthly: float | Callable[[str], float | None] | None,
    amounts: Mapping[str, Decimal] | None = None,
) -> BudgetChoice | None:
    """The period's budget: each of its months' own (``budgets``), else ``monthly``
    (``budget_credits``, or a month's share of ``budget_amount`` in credits); None when a
    month has neither. ``amounts``: each month's budget in money, where it was given so;
    the choice carries their sum when every month has one."""
    months = months_of(period)
    default = monthly if callable(monthly) else (lambda _month: monthly)
    each = [budgets[month] if month in budgets else default(month) for month in months]
    if any(credits is None for credits in each):
        return None
    own = sum(month in budgets for month in months)
    total = math.fsum(credits for credits in each if credits is not None)
    money = None
    if amounts is not None and all(month in amounts for month in months):
        money = sum((amounts[month] for month in months), Decimal(0))
    if period.kind is PeriodKind.WEEK:
        week_money = money * Decimal(repr(period.months)) if money is not None else None
        return BudgetChoice(total * period.months, Basis.WEEK, months, own, week_money)
    if period.kind is PeriodKind.MONTH:
        return BudgetChoice(total, Basis.SET if own else Basis.MONTHLY, months, own, money)
    basis = Basis.SUM if own == len(months) else Basis.PRORATED if own == 0 else Basis.MIXED
    return BudgetChoice(total, basis, months, own, money)
