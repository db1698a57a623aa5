"""Report periods: "2026-10", "2026-W43", "2026-Q3", "2026" -> date ranges.

Calendar arithmetic is pandas' ``Period`` (already a dependency), so months,
ISO weeks, quarters and years all get the same, well-tested rules; this module
only parses the user's spelling and says which API granularity fits each kind.
Parsing (and refusing) a spelling needs no pandas, and does not import it: the
command line checks ``--period`` before anything heavy is loaded.

A month can also be a billing cycle (``billing_day`` 15: Nov 15 - Dec 14), the calendar
a plan renews on. pandas has no such frequency, so a cycle's arithmetic is here: a cycle
is named by the month it starts in, and in a month too short for the billing day it
starts on that month's last day (billing day 31: Feb 28 - Mar 30, Mar 31 - Apr 29).
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Literal

from reporter.errors import UsageError

if TYPE_CHECKING:
    import pandas as pd


class PeriodKind(StrEnum):
    WEEK = "week"
    MONTH = "month"
    QUARTER = "quarter"
    YEAR = "year"


# pandas frequency for each kind; "W-SUN" is a Monday-to-Sunday (ISO) week.
_FREQ = {
    PeriodKind.WEEK: "W-SUN",
    PeriodKind.MONTH: "M",
    PeriodKind.QUARTER: "Q",
    PeriodKind.YEAR: "Y",
}

Granularity = Literal["day", "week", "month", "year"]
"""The API's bucket sizes."""

# Granularity of the "detail" series (the chart of the period itself).
_DETAIL_GRANULARITY: dict[PeriodKind, Granularity] = {
    PeriodKind.WEEK: "day",
    PeriodKind.MONTH: "day",
    PeriodKind.QUARTER: "day",
    PeriodKind.YEAR: "month",
}

# Granularity used to fetch the history. The API has no quarter bucket, and
# its week start is undocumented, so weeks are fetched by day and quarters by
# month, then grouped into periods here with pandas.
_HISTORY_GRANULARITY: dict[PeriodKind, Granularity] = {
    PeriodKind.WEEK: "day",
    PeriodKind.MONTH: "month",
    PeriodKind.QUARTER: "month",
    PeriodKind.YEAR: "year",
}

_MONTH = re.compile(r"^(\d{4})-(\d{2})$")
_PATTERNS: list[tuple[re.Pattern[str], PeriodKind]] = [
    (_MONTH, PeriodKind.MONTH),
    (re.compile(r"^(\d{4})-W(\d{2})$"), PeriodKind.WEEK),
    (re.compile(r"^(\d{4})-Q([1-4])$"), PeriodKind.QUARTER),
    (re.compile(r"^(\d{4})$"), PeriodKind.YEAR),
]

HISTORY_LENGTH = 6
"""The history shows the period and the five before it."""

FIRST_YEAR = 1970
"""The earliest year a period may be in.

No API usage predates it, and the calendar arithmetic (pandas) ends in 1677 and
year 1 cannot even have a history before it, so an earlier period is a typo to
refuse with a message, not a date to fail on deep inside a run."""


@dataclass(frozen=True, slots=True)
class Period:
    """A period a report covers; ``end`` is inclusive. A month with a ``billing_day``
    other than 1 is a billing cycle that starts in that month."""

    kind: PeriodKind
    start: dt.date
    end: dt.date
    billing_day: int = 1

    @property
    def is_cycle(self) -> bool:
        return self.kind is PeriodKind.MONTH and self.billing_day != 1

    @classmethod
    def from_pandas(cls, period: pd.Period, kind: PeriodKind) -> Period:
        return cls(kind, period.start_time.date(), period.end_time.date())

    def to_pandas(self) -> pd.Period:
        import pandas as pd

        return pd.Period(self.start, freq=_FREQ[self.kind])

    @property
    def freq(self) -> str:
        """The pandas frequency that groups dates into periods of this kind."""
        return _FREQ[self.kind]

    @property
    def key(self) -> str:
        """The canonical spelling, as typed on the command line and used in paths; a
        cycle's is its dates (``2026-11-15_2026-12-14``), so its files and ledger rows say
        which days they cover and never meet a calendar month's."""
        if self.is_cycle:
            return f"{self.start.isoformat()}_{self.end.isoformat()}"
        if self.kind is PeriodKind.WEEK:
            year, week, _ = self.start.isocalendar()
            return f"{year}-W{week:02d}"
        if self.kind is PeriodKind.QUARTER:
            return f"{self.start.year}-Q{(self.start.month - 1) // 3 + 1}"
        if self.kind is PeriodKind.YEAR:
            return f"{self.start.year}"
        return f"{self.start.year}-{self.start.month:02d}"

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    @property
    def months(self) -> float:
        """The period's length in months, to prorate a monthly budget (a week is 7/30.44)."""
        return {
            PeriodKind.WEEK: 7 * 12 / 365.25,
            PeriodKind.MONTH: 1.0,
            PeriodKind.QUARTER: 3.0,
            PeriodKind.YEAR: 12.0,
        }[self.kind]

    @property
    def detail_granularity(self) -> Granularity:
        return _DETAIL_GRANULARITY[self.kind]

    @property
    def month_key(self) -> str:
        """``YYYY-MM`` of the month the period starts in: a cycle's name in budgets and
        on the command line."""
        return f"{self.start.year}-{self.start.month:02d}"

    @property
    def history_granularity(self) -> Granularity:
        """A cycle's history is fetched by day: the API's month buckets are calendar months."""
        return "day" if self.is_cycle else _HISTORY_GRANULARITY[self.kind]

    def shifted(self, count: int) -> Period:
        """The period ``count`` steps later (negative: earlier)."""
        if self.kind is PeriodKind.MONTH:  # a calendar month is the cycle of day 1
            index = self.start.year * 12 + self.start.month - 1 + count
            return cycle(index // 12, index % 12 + 1, self.billing_day)
        return Period.from_pandas(self.to_pandas() + count, self.kind)

    def containing(self, day: dt.date) -> Period:
        """The period of this kind (and billing day) that ``day`` falls in."""
        if self.kind is PeriodKind.MONTH:
            found = cycle(day.year, day.month, self.billing_day)
            return found if found.start <= day else found.shifted(-1)
        import pandas as pd

        return Period.from_pandas(pd.Period(day, freq=self.freq), self.kind)

    def previous(self) -> Period:
        return self.shifted(-1)

    def history(self, length: int = HISTORY_LENGTH) -> list[Period]:
        """This period and the ``length - 1`` before it, oldest first."""
        return [self.shifted(offset) for offset in range(1 - length, 1)]

    def elapsed_days(self, today: dt.date) -> int:
        """Days of the period that have fully passed by ``today`` (0 to ``days``)."""
        return max(0, min(self.days, (today - self.start).days))

    def is_complete(self, today: dt.date) -> bool:
        return self.end < today

    def __str__(self) -> str:
        return self.key


def parse_period(text: str, *, today: dt.date) -> Period:
    """Parse a period as typed by a user; refuse malformed and future ones."""
    value = text.strip()
    for pattern, kind in _PATTERNS:
        match = pattern.match(value)
        if match:
            period = _build(kind, match.groups(), text)
            break
    else:
        raise UsageError(
            f"unknown period {text!r}",
            hint="use a month (2026-10), an ISO week (2026-W43), a quarter (2026-Q3)"
            " or a year (2026)",
        )
    if period.start > today:
        raise UsageError(
            f"period {period.key} has not started yet (today is {today.isoformat()})",
            hint="choose a period that has started; the default is the last complete month",
        )
    return period


def _build(kind: PeriodKind, groups: tuple[str | Any, ...], text: str) -> Period:
    year = int(groups[0])
    if year < FIRST_YEAR:
        raise UsageError(
            f"period {text!r} is too early: periods start in {FIRST_YEAR}",
            hint=f"choose a period from {FIRST_YEAR} on; the default is the last complete month",
        )
    try:
        if kind is PeriodKind.MONTH:
            start = dt.date(year, int(groups[1]), 1)
        elif kind is PeriodKind.WEEK:
            start = dt.date.fromisocalendar(year, int(groups[1]), 1)
        elif kind is PeriodKind.QUARTER:
            start = dt.date(year, (int(groups[1]) - 1) * 3 + 1, 1)
        else:
            start = dt.date(year, 1, 1)
    except ValueError as exc:
        raise UsageError(
            f"unknown period {text!r}: {exc}",
            hint="months run 01-12 and ISO weeks 01-52 (53 in some years)",
        ) from exc
    return _starting(kind, start)


def _starting(kind: PeriodKind, start: dt.date) -> Period:
    """The period of ``kind`` that begins on ``start`` (a Monday, or a month's first day).

    The same ends pandas gives (a test holds them to it), without importing pandas."""
    try:
        if kind is PeriodKind.WEEK:
            return Period(kind, start, start + dt.timedelta(days=6))
        months = {PeriodKind.MONTH: 1, PeriodKind.QUARTER: 3, PeriodKind.YEAR: 12}[kind]
        after = start.month - 1 + months
        next_start = dt.date(start.year + after // 12, after % 12 + 1, 1)
    except (OverflowError, ValueError):
        # Ends past 9999-12-31: no today reaches it, so it is refused as not started yet.
        return Period(kind, start, dt.date.max)
    return Period(kind, start, next_start - dt.timedelta(days=1))


def last_complete_month(today: dt.date) -> Period:
    """The default period: the calendar month before the one ``today`` is in."""
    last_day = today.replace(day=1) - dt.timedelta(days=1)
    return _starting(PeriodKind.MONTH, last_day.replace(day=1))


def cycle(year: int, month: int, billing_day: int) -> Period:
    """The billing cycle that starts in ``month``: on ``billing_day``, or on the month's
    last day when it is shorter; it ends the day before the next one starts."""
    start = _cycle_start(year, month, billing_day)
    after = year * 12 + month
    following = _cycle_start(after // 12, after % 12 + 1, billing_day)
    return Period(PeriodKind.MONTH, start, following - dt.timedelta(days=1), billing_day)


def _cycle_start(year: int, month: int, billing_day: int) -> dt.date:
    after = year * 12 + month
    last = dt.date(after // 12, after % 12 + 1, 1) - dt.timedelta(days=1)
    return last.replace(day=min(billing_day, last.day))


def in_cycles(period: Period, billing_day: int) -> Period:
    """``period`` on a report's calendar: a month becomes the cycle that starts in it;
    weeks, quarters and years stay calendar periods."""
    if period.kind is not PeriodKind.MONTH or billing_day == period.billing_day:
        return period
    if billing_day == 1:
        return _starting(PeriodKind.MONTH, period.start.replace(day=1))
    return cycle(period.start.year, period.start.month, billing_day)


def last_complete_cycle(today: dt.date, billing_day: int) -> Period:
    """The default period of a report billed on ``billing_day``: the last cycle that
    ended before ``today`` (the last complete month when it is 1)."""
    return cycle_containing(today, billing_day).shifted(-1)


def cycle_containing(day: dt.date, billing_day: int) -> Period:
    """The billing cycle (the calendar month, when ``billing_day`` is 1) ``day`` is in."""
    return cycle(day.year, day.month, billing_day).containing(day)


def last_complete_day(period: Period, today: dt.date) -> dt.date:
    """The last day of ``period`` whose usage is final by ``today`` (yesterday, at most the
    period's end); before ``period.start`` when not one day of it is over yet."""
    return min(period.end, today - dt.timedelta(days=1))


def matching_span(current: Period, earlier: Period, through: dt.date) -> tuple[dt.date, dt.date]:
    """The first days of ``earlier`` that match ``current.start .. through``, so a period in
    progress is compared like with like: Nov 1-24 -> Oct 1-24, a week's Mon-Wed -> the
    earlier week's Mon-Wed, a quarter's first 55 days -> the earlier quarter's first 55.

    The same number of days from the start, clamped to the earlier period's end
    (Mar 1-31 -> Feb 1-28): a month's day 31 has no match in a 30-day month."""
    return earlier.start, min(earlier.start + (through - current.start), earlier.end)


def answers_to(key: str, typed: str) -> bool:
    """Whether a period key (a ledger's, a folder's) is what ``--period typed`` names: the
    same period, or for a month, the billing cycle that starts in it."""
    if key == typed:
        return True
    return bool(_MONTH.match(typed)) and key.startswith(f"{typed}-") and "_" in key
