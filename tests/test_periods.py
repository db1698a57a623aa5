"""Periods parse to the same ranges pandas' calendar gives, without pandas, and a
period too far ahead to compute is refused like any period that has not started."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from reporter.errors import UsageError
from reporter.periods import FIRST_YEAR, Period, PeriodKind, last_complete_month, parse_period

TODAY = dt.date(2200, 1, 1)  # every period checked below has started by then

FREQ = {"month": "M", "week": "W-SUN", "quarter": "Q", "year": "Y"}


def spellings() -> list[tuple[str, str]]:
    """Every month, ISO week, quarter and year from 1970 through 2199, as typed."""
    typed = []
    for year in range(FIRST_YEAR, TODAY.year):
        typed.append((f"{year}", "year"))
        typed += [(f"{year}-Q{q}", "quarter") for q in range(1, 5)]
        typed += [(f"{year}-{m:02d}", "month") for m in range(1, 13)]
        weeks = dt.date(year, 12, 28).isocalendar().week  # 52 or 53
        typed += [(f"{year}-W{w:02d}", "week") for w in range(1, weeks + 1)]
    return typed


def test_every_period_spans_what_pandas_says() -> None:
    mismatched = []
    for text, kind in spellings():
        period = parse_period(text, today=TODAY)
        # pandas reads "2026-W05" differently, so the week's Monday is given to it.
        first = period.start if kind == "week" else text
        expected = pd.Period(first, freq=FREQ[kind])
        got = (period.kind.value, period.start, period.end, period.key)
        want = (kind, expected.start_time.date(), expected.end_time.date(), text)
        if got != want:
            mismatched.append((text, got, want))
    assert mismatched == []


def test_the_default_is_the_month_before_todays() -> None:
    day = dt.date(1970, 2, 1)
    while day < dt.date(2100, 1, 1):
        expected = pd.Period(day, freq="M") - 1
        assert last_complete_month(day) == Period.from_pandas(expected, PeriodKind.MONTH)
        day += dt.timedelta(days=13)


def test_a_period_converts_to_pandas_and_back_unchanged() -> None:
    for text, _ in spellings()[::7]:
        period = parse_period(text, today=TODAY)
        assert Period.from_pandas(period.to_pandas(), period.kind) == period
        assert period.shifted(1).previous() == period


@pytest.mark.parametrize("text", ["9999", "9999-Q4", "9999-12", "9999-W52", "2262-04", "2263"])
def test_a_far_future_period_is_refused_as_not_started(text: str) -> None:
    # 9999-W52 ends in year 10000, past what dates (and pandas) can hold: this used to
    # crash with a traceback instead of saying the period has not started.
    with pytest.raises(UsageError) as refused:
        parse_period(text, today=dt.date(2026, 11, 25))
    assert refused.value.message == f"period {text} has not started yet (today is 2026-11-25)"
