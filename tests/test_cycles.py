"""Billing cycles (issue 26): ``billing_day = 15`` makes a report's month Nov 15 - Dec 14.

Expected figures come from the stand-in's raw JSON, fetched day by day and summed here:
a cycle's total is the sum of its days, its change is against the sum of the cycle
before, its usual is the mean of the five before that, its amount each day's credits at
that day's price. The cycle arithmetic is checked against ``calendar``, not against the
code tested.
"""

from __future__ import annotations

import calendar
import datetime as dt
import json
from decimal import ROUND_HALF_UP, Decimal
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
import time_machine
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from reporter.cli import cli
from reporter.periods import (
    Period,
    PeriodKind,
    answers_to,
    cycle,
    cycle_containing,
    in_cycles,
    last_complete_cycle,
    parse_period,
)
from reporter.sandbox import SandboxData, SandboxServer, synthetic_team
from tests.conftest import (
    API_KEY,
    SmtpServer,
    pdf_rows,
    pdf_text,
    raw_usage,
    reporter,
    write_config,
)

DAY = dt.timedelta(days=1)


# --- the arithmetic ---------------------------------------------------------------------


def test_a_cycle_starts_on_the_billing_day_and_ends_the_day_before_the_next() -> None:
    november = cycle(2026, 11, 15)
    assert (november.start, november.end) == (dt.date(2026, 11, 15), dt.date(2026, 12, 14))
    assert november.key == "2026-11-15_2026-12-14"
    assert november.month_key == "2026-11"
    assert november.previous() == cycle(2026, 10, 15)
    assert november.shifted(2) == cycle(2027, 1, 15)


@pytest.mark.parametrize(
    ("year", "month", "day", "start", "end"),
    [
        (2027, 1, 31, "2027-01-31", "2027-02-27"),  # February has no 31st...
        (2027, 2, 31, "2027-02-28", "2027-03-30"),  # ...so its cycle starts on the 28th
        (2028, 2, 30, "2028-02-29", "2028-03-29"),  # a leap year's last day
        (2026, 4, 31, "2026-04-30", "2026-05-30"),  # a 30-day month
        (2026, 12, 29, "2026-12-29", "2027-01-28"),  # over the year's end
    ],
)
def test_late_billing_days_start_a_short_months_cycle_on_its_last_day(
    year: int, month: int, day: int, start: str, end: str
) -> None:
    found = cycle(year, month, day)
    assert (found.start.isoformat(), found.end.isoformat()) == (start, end)


@given(
    billing_day=st.integers(1, 31),
    year=st.integers(1971, 2200),
    month=st.integers(1, 12),
    steps=st.integers(-40, 40),
    offset=st.integers(0, 30),
)
def test_cycles_tile_the_calendar(
    billing_day: int, year: int, month: int, steps: int, offset: int
) -> None:
    """Every day is in exactly one cycle; each cycle starts in its month, on the billing
    day or that month's last; stepping there and back is the identity."""
    this = cycle(year, month, billing_day)
    length = calendar.monthrange(year, month)[1]
    assert this.start == dt.date(year, month, min(billing_day, length))
    assert this.shifted(1).start == this.end + DAY
    assert this.shifted(-1).end == this.start - DAY
    assert this.shifted(steps).shifted(-steps) == this
    assert 28 <= this.days <= 31
    day = min(this.start + dt.timedelta(days=offset), this.end)
    assert cycle_containing(day, billing_day) == this
    assert this.history()[-1] == this
    assert len(this.history()) == 6
    if billing_day == 1:  # the calendar month, under its usual name
        assert this.key == f"{year}-{month:02d}" == parse_period(this.key, today=dt.date.max).key
        assert not this.is_cycle


@pytest.mark.parametrize(
    ("today", "start"),
    [("2026-12-03", "2026-10-15"), ("2026-12-14", "2026-10-15"), ("2026-12-15", "2026-11-15")],
)
def test_the_default_is_the_last_complete_cycle(today: str, start: str) -> None:
    found = last_complete_cycle(dt.date.fromisoformat(today), 15)
    assert found.start == dt.date.fromisoformat(start)
    assert found.end < dt.date.fromisoformat(today) <= found.shifted(1).end


def test_quarters_years_and_weeks_stay_calendar_periods() -> None:
    for text in ("2026-Q3", "2026", "2026-W43"):
        period = parse_period(text, today=dt.date(2027, 1, 1))
        assert in_cycles(period, 15) == period
    assert in_cycles(parse_period("2026-10", today=dt.date(2027, 1, 1)), 15) == cycle(2026, 10, 15)
    assert in_cycles(cycle(2026, 10, 15), 1) == Period(
        PeriodKind.MONTH, dt.date(2026, 10, 1), dt.date(2026, 10, 31)
    )


def test_a_month_typed_answers_to_its_cycle_and_nothing_else() -> None:
    assert answers_to("2026-10-15_2026-11-14", "2026-10")
    assert answers_to("2026-10", "2026-10")
    assert not answers_to("2026-11-15_2026-12-14", "2026-10")
    assert not answers_to("2026-10", "2026")
    assert not answers_to("2026-10-15_2026-11-14", "2026")


# --- a cycle report, end to end ---------------------------------------------------------

BEFORE, AFTER = Decimal("0.0045"), Decimal("0.0040")
CHANGE = dt.date(2026, 11, 1)  # the price changes inside the cycle
REPORTS = """
[[reports]]
name = "cycle"
title = "Cycle"
owners = ["cfo@company.com"]
currency = "EUR"
credit_prices = { "2026-01-01" = 0.0045, "2026-11-01" = 0.0040 }
budgets = { "2026-10" = 400000 }

[[reports]]
name = "ciclo"
title = "Ciclo"
locale = "es"
owners = ["cfo@company.com"]

[[reports]]
name = "calendar"
title = "Calendar"
billing_day = 1
owners = ["lead@company.com"]
"""


def day_totals(api: SandboxServer, first: dt.date, last: dt.date) -> dict[dt.date, Decimal]:
    """Each day's tool-level credits, from the API's own answer."""
    answer = raw_usage(
        api,
        {"granularity": "day", "start_date": first.isoformat(), "end_date": last.isoformat()},
    )
    days: dict[dt.date, Decimal] = {}
    for bucket in answer["data"]:
        day = dt.date.fromisoformat(bucket["date"][:10])
        if first <= day <= last:
            for c in bucket["consumptions"]:
                days[day] = days.get(day, Decimal(0)) + Decimal(repr(c["user_credits"]))
    return days


def between(first: str, last: str) -> tuple[dt.date, dt.date]:
    return dt.date.fromisoformat(first), dt.date.fromisoformat(last)


def credits(number: Decimal) -> str:
    return f"{number:,.0f}"


def body(message: EmailMessage, kind: str) -> str:
    part = message.get_body((kind,))
    assert part is not None
    text = part.get_content()
    assert isinstance(text, str)
    return text.replace("\u2009", " ")  # CLDR's thin spaces around a range's dash


@pytest.fixture
def sent(api: SandboxServer, smtp: SmtpServer, tmp_path: Path) -> dict[str, Any]:
    config = write_config(tmp_path / "c.toml", REPORTS, defaults="billing_day = 15")
    env = {"MAGNIFIC_API_KEY": API_KEY, "MAGNIFIC_API_BASE_URL": api.url, **smtp.env()}
    args = ["run", "--config", str(config), "--period", "2026-10", "-q"]
    args += ["--out", str(tmp_path / "out"), "--state", str(tmp_path / "state.sqlite3")]
    first = reporter(*args, env=env)
    assert first.returncode == 0, first.stderr
    return {"config": config, "env": env, "args": args, "out": tmp_path / "out", "run": first}


def test_a_cycle_report_is_the_sum_of_its_days_over_the_month_boundary(
    api: SandboxServer, smtp: SmtpServer, sent: dict[str, Any]
) -> None:
    folder = sent["out"] / "2026-10-15_2026-11-14"
    assert sorted(p.name for p in folder.iterdir() if p.suffix == ".pdf") == [
        "ciclo.pdf",
        "cycle.pdf",
    ]
    # Two requests, one each side of the month's end: the cycle is their sum.
    october = day_totals(api, *between("2026-10-15", "2026-10-31"))
    november = day_totals(api, *between("2026-11-01", "2026-11-14"))
    assert max(october) == dt.date(2026, 10, 31)
    assert min(november) == dt.date(2026, 11, 1)
    total = sum(october.values(), Decimal(0)) + sum(november.values(), Decimal(0))
    before = sum(day_totals(api, *between("2026-09-15", "2026-10-14")).values(), Decimal(0))
    earlier = [
        sum(day_totals(api, cycle(2026, m, 15).start, cycle(2026, m, 15).end).values(), Decimal(0))
        for m in range(5, 10)
    ]
    usual = sum(earlier, Decimal(0)) / len(earlier)
    amount = sum(
        (c * (AFTER if d >= CHANGE else BEFORE) for d, c in (october | november).items()),
        Decimal(0),
    ).quantize(Decimal("0.01"), ROUND_HALF_UP)

    text = pdf_text(folder / "cycle.pdf")
    assert "Billing cycle of October 2026 · Oct 15 – Nov 14, 2026" in text
    assert f"{credits(total)} " in text
    change = (total - before) / before * 100
    assert f"{change:+.1f}% vs Sep 15 – Oct 14".replace("-", "−") in text
    assert f"average {credits(usual)} credits per period" in text
    assert f"€{amount:,}" in text
    assert f"{credits(total)} of 400,000" in text
    assert "Budget: 400,000 credits, set for October 2026." in text
    assert (
        "Periods are billing cycles that start on day 15 of each month (the last day of a"
        " shorter month): this one is Oct 15 – Nov 14, 2026, compared with Sep 15 – Oct 14, 2026."
    ) in text
    # The history's six cycles, by their first days.
    rows = pdf_rows(folder / "cycle.pdf")
    assert "May 15 Jun 15 Jul 15 Aug 15 Sep 15 Oct 15" in rows

    # The calendar report of the same run is October, whole.
    calendar_total = sum(day_totals(api, *between("2026-10-01", "2026-10-31")).values())
    assert f"{credits(Decimal(calendar_total))} " in pdf_text(sent["out"] / "2026-10/calendar.pdf")

    # The email: its subject and both parts name the cycle's days and carry its figures.
    mail = smtp.recorder.by_recipient()
    assert len(mail["cfo@company.com"]) == 2  # one for each report
    (english,) = [m for m in mail["cfo@company.com"] if "Cycle" in str(m["Subject"])]
    assert (
        str(english["Subject"]).replace("\u2009", " ")
        == "Cycle — credit usage, Oct 15 – Nov 14, 2026"
    )
    for kind in ("plain", "html"):
        part = body(english, kind)
        assert "Oct 15 – Nov 14, 2026" in part
        assert credits(total) in part
        assert f"€{amount:,}" in part
    (lead,) = mail["lead@company.com"]
    assert str(lead["Subject"]) == "Calendar — credit usage, October 2026"


def test_a_cycle_speaks_the_reports_locale(
    api: SandboxServer, smtp: SmtpServer, sent: dict[str, Any]
) -> None:
    text = pdf_text(sent["out"] / "2026-10-15_2026-11-14" / "ciclo.pdf")
    assert "Ciclo de facturación de octubre de 2026 · 15 oct – 14 nov 2026" in text
    assert "frente a 15 sept – 14 oct" in text  # CLDR's Spanish September is "sept"
    spanish = next(
        m for m in smtp.recorder.by_recipient()["cfo@company.com"] if "Ciclo" in str(m["Subject"])
    )
    assert "15 oct – 14 nov 2026" in str(spanish["Subject"]).replace("\u2009", " ")
    assert "15 oct – 14 nov 2026" in body(spanish, "plain")


def test_the_ledger_keys_a_cycle_by_its_days_and_a_rerun_sends_nothing(
    smtp: SmtpServer, sent: dict[str, Any]
) -> None:
    assert "Period 2026-10-15_2026-11-14, 2026-10:" in sent["run"].stdout
    count = len(smtp.recorder.messages)
    assert count == 3
    again = reporter(*sent["args"], env=sent["env"])
    assert again.returncode == 0, again.stderr
    assert len(smtp.recorder.messages) == count
    state = sent["args"][sent["args"].index("--state") + 1]
    history = reporter("history", "--state", state, "--period", "2026-10", env=sent["env"])
    assert history.returncode == 0, history.stderr
    rows = [line.split() for line in history.stdout.splitlines()[1:] if line.strip()]
    assert sorted((r[0], r[1]) for r in rows) == [
        ("2026-10", "calendar"),
        ("2026-10-15_2026-11-14", "ciclo"),
        ("2026-10-15_2026-11-14", "cycle"),
    ]
    assert all(r[4] == "sent" for r in rows)
    later = reporter("history", "--state", state, "--period", "2026-11", env=sent["env"])
    assert "No deliveries recorded for 2026-11." in later.stdout


# --- choosing the period -----------------------------------------------------------------


def invoke(args: list[str], env: dict[str, str], at: dt.datetime) -> Any:
    with time_machine.travel(at, tick=False):
        return CliRunner().invoke(cli, args, env=env)


def test_a_cycle_that_has_not_started_is_refused_before_any_request(
    tmp_path: Path, api: SandboxServer
) -> None:
    config = write_config(tmp_path / "c.toml", REPORTS, defaults="billing_day = 15")
    env = {"MAGNIFIC_API_KEY": API_KEY, "MAGNIFIC_API_BASE_URL": api.url}
    args = ["run", "--config", str(config), "--period", "2026-12", "--dry-run"]
    args += ["--out", str(tmp_path / "out")]
    result = invoke(args, env, dt.datetime(2026, 12, 3, 7, tzinfo=dt.UTC))
    assert result.exit_code == 2
    assert (
        "period 2026-12 of report 'cycle' is the billing cycle 2026-12-15 to 2027-01-14,"
        " which has not started yet (today is 2026-12-03)"
    ) in result.output
    assert "Traceback" not in result.output
    assert api.requests == []


def test_without_period_each_report_gets_its_last_complete_period(
    tmp_path: Path, api: SandboxServer
) -> None:
    config = write_config(tmp_path / "c.toml", REPORTS, defaults="billing_day = 15")
    env = {"MAGNIFIC_API_KEY": API_KEY, "MAGNIFIC_API_BASE_URL": api.url}
    args = ["run", "--config", str(config), "--dry-run", "-q", "--out", str(tmp_path / "out")]
    result = invoke(args, env, dt.datetime(2026, 11, 20, 7, tzinfo=dt.UTC))
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out/2026-10-15_2026-11-14/cycle.pdf").exists()
    assert (tmp_path / "out/2026-10/calendar.pdf").exists()


@pytest.mark.parametrize("value", ["0", "32", "1.5", '"the 15th"'])
def test_a_billing_day_outside_1_to_31_is_a_config_error(tmp_path: Path, value: str) -> None:
    config = write_config(
        tmp_path / "c.toml",
        f'[[reports]]\nname = "cycle"\nowners = ["a@company.com"]\nbilling_day = {value}\n',
    )
    result = reporter(
        "run",
        "--config",
        str(config),
        "--dry-run",
        "--out",
        str(tmp_path),
        env={"MAGNIFIC_API_KEY": API_KEY},
    )
    assert result.returncode == 2
    assert "billing_day" in result.stderr
    assert "cycle" in result.stderr
    assert "Traceback" not in result.stderr


def test_check_names_each_cycle_report_s_cycle_and_its_budget(
    tmp_path: Path, api: SandboxServer
) -> None:
    config = write_config(tmp_path / "c.toml", REPORTS, defaults="billing_day = 15")
    env = {"MAGNIFIC_API_KEY": API_KEY, "MAGNIFIC_API_BASE_URL": api.url}
    args = ["check", "--config", str(config), "--out", str(tmp_path / "out")]
    result = invoke(args, env, dt.datetime(2026, 10, 20, 7, tzinfo=dt.UTC))
    lines = result.output.splitlines()
    assert (
        "ok    period cycle: billing cycles from day 15: this cycle 2026-10-15 to 2026-11-14"
        " (--period 2026-10); by default 2026-09-15 to 2026-10-14 (--period 2026-09)" in lines
    )
    assert "ok    budget cycle: 400,000 credits for 2026-10 (set for the month)" in lines
    assert not [line for line in lines if line.startswith("ok    period calendar")]


# --- watch over a cycle -----------------------------------------------------------------


def test_watch_follows_the_cycle_so_far(
    tmp_path: Path, api: SandboxServer, smtp: SmtpServer
) -> None:
    """On Nov 20 a report billed on the 15th has used Nov 15-20 of its 30-day cycle: the
    threshold, the share and the forecast are over those six days, not over November's."""
    config = write_config(
        tmp_path / "c.toml",
        '[[reports]]\nname = "cycle"\ntitle = "Cycle"\nowners = ["cfo@company.com"]\n'
        "billing_day = 15\nbudget_credits = 50000\nalert_thresholds = [80]\n"
        "spike_factor = 0\nforecast_alert = false\n",
    )
    env = {"MAGNIFIC_API_KEY": API_KEY, "MAGNIFIC_API_BASE_URL": api.url, **smtp.env()}
    args = ["watch", "--config", str(config), "--date", "2026-11-20", "-q"]
    args += ["--out", str(tmp_path / "out"), "--state", str(tmp_path / "state.sqlite3")]
    result = reporter(*args, env=env)
    assert result.returncode == 0, result.stderr
    used = sum(day_totals(api, *between("2026-11-15", "2026-11-20")).values(), Decimal(0))
    assert used >= 40000  # the 80% threshold is due
    (received,) = smtp.recorder.messages
    message = received.message
    assert (
        str(message["Subject"]).replace("\u2009", " ")
        == "Cycle: 80% of the Nov 15 – Dec 14 budget used"
    )
    text = body(message, "plain")
    assert f"Credits used: {credits(used)} of a budget of 50,000 ({used / 500:.1f}%)" in text
    assert "with 24 days left" in text  # Nov 21 - Dec 14
    # Called a cycle, never "the month": its pace, top tools and forecast are the cycle's.
    pace = used / 6 * 30
    assert f"at this pace the cycle ends at {pace / 500:.0f}%" in text
    assert "Top tools this cycle:" in text
    assert f"Forecast for the cycle: {pace:,.0f}" in text
    assert "month" not in text.replace("the monthly report", "")
    assert (tmp_path / "out/2026-11-15_2026-12-14/alerts").is_dir()
    again = reporter(*args, env=env)
    assert again.returncode == 0
    assert len(smtp.recorder.messages) == 1


# --- a scripted team: a correction, a cycle in progress, a budget in money --------------


def days(first: str, last: str) -> list[dt.date]:
    start, end = between(first, last)
    return [start + dt.timedelta(days=n) for n in range((end - start).days + 1)]


# 1,000 a day before the cycle and after it, so a calendar month would show other totals.
OUTSIDE = dict.fromkeys(days("2026-09-01", "2026-10-14") + days("2026-11-15", "2026-11-30"), 1000)
CYCLE = dict.fromkeys(days("2026-10-15", "2026-10-31"), 100) | dict.fromkeys(
    days("2026-11-01", "2026-11-14"), 200
)  # 1,700 + 2,800 = 4,500
SCRIPTED = """
[[reports]]
name = "studio"
title = "Studio"
owners = ["lead@company.com"]
group_ids = [20]
billing_day = 15
currency = "EUR"
credit_prices = { "2026-01-01" = 0.0045, "2026-11-01" = 0.0040 }
"""


def scripted(today: dt.date, daily: dict[dt.date, int]) -> SandboxData:
    data = SandboxData(synthetic_team(users=48, seed=7), today=today)
    data.script(20, daily)
    return data


def test_late_usage_in_a_cycle_sends_one_correction_of_the_cycle(
    tmp_path: Path, smtp: SmtpServer
) -> None:
    data = scripted(dt.date(2026, 11, 20), OUTSIDE | CYCLE)
    config = write_config(tmp_path / "c.toml", SCRIPTED)
    with SandboxServer(data, api_key=API_KEY) as api:
        env = {"MAGNIFIC_API_KEY": API_KEY, "MAGNIFIC_API_BASE_URL": api.url, **smtp.env()}
        args = ["run", "--config", str(config), "--period", "2026-10", "-q"]
        args += ["--out", str(tmp_path / "out"), "--state", str(tmp_path / "state.sqlite3")]
        assert reporter(*args, env=env).returncode == 0
        (first,) = smtp.recorder.messages
        # Oct 15-31 at 100 and €0.0045, Nov 1-14 at 200 and €0.0040: €7.65 + €11.20.
        assert "4,500 credits" in body(first.message, "plain")
        assert "€18.85" in body(first.message, "plain")
        # 300 late credits on the cycle's last day (6.7%): a correction; a late day of
        # November after the cycle changes nothing of it.
        data.script(20, OUTSIDE | CYCLE | {dt.date(2026, 11, 14): 500, dt.date(2026, 11, 16): 9})
        result = reporter(*args, "--recheck", env=env)
        assert result.returncode == 0, result.stderr
    (correction,) = smtp.recorder.messages[1:]
    message = correction.message
    assert str(message["Subject"]).replace("\u2009", " ") == (
        "Corrected: Studio — credit usage, Oct 15 – Nov 14, 2026"
    )
    text = body(message, "plain")
    assert (
        "Corrected report: the last report sent showed 4,500 credits; late usage data brings"
        " the total to 4,800."
    ) in text
    assert "€20.05" in text  # 300 more at €0.0040
    assert "€20.05" in body(message, "html")
    assert (tmp_path / "out" / "corrected" / "2026-10-15_2026-11-14").is_dir()


def test_a_cycle_in_progress_is_compared_like_for_like(tmp_path: Path) -> None:
    """On Nov 20 the cycle Nov 15 - Dec 14 has five complete days (200 a day): against
    Oct 15-19 (100 a day) it is +100%, and at 200 a day its 30 days end at 6,000, against
    the whole previous cycle's 4,500."""
    data = scripted(
        dt.date(2026, 11, 20),
        OUTSIDE | CYCLE | dict.fromkeys(days("2026-11-15", "2026-11-30"), 200),
    )
    config = write_config(tmp_path / "c.toml", SCRIPTED)
    with SandboxServer(data, api_key=API_KEY) as api:
        env = {"MAGNIFIC_API_KEY": API_KEY, "MAGNIFIC_API_BASE_URL": api.url}
        args = ["run", "--config", str(config), "--period", "2026-11", "--dry-run", "-q"]
        args += ["--out", str(tmp_path / "out")]
        result = invoke(args, env, dt.datetime(2026, 11, 20, 7, tzinfo=dt.UTC))
    assert result.exit_code == 0, result.output
    text = pdf_text(tmp_path / "out" / "2026-11-15_2026-12-14" / "studio.pdf")
    assert "Billing cycle of November 2026 · Nov 15 – Dec 14, 2026" in text
    assert "In progress: data through Nov 19, 2026" in text
    assert "1,000 " in text
    assert "+100.0% vs Oct 15 – 19" in text
    assert "forecast 6,000, +33.3% vs Oct 15 – Nov 14" in text


def test_a_budget_in_money_is_the_cycles_days_at_their_prices(tmp_path: Path) -> None:
    """€31 over Oct 15 - Nov 14 is €1 a day: 17 days at €0.0045 and 14 at €0.0040 buy
    3,777.78 + 3,500 credits; November's calendar days would buy another figure."""
    data = scripted(dt.date(2026, 11, 20), OUTSIDE | CYCLE)
    config = write_config(tmp_path / "c.toml", SCRIPTED + "budget_amount = 31\n")
    with SandboxServer(data, api_key=API_KEY) as api:
        env = {"MAGNIFIC_API_KEY": API_KEY, "MAGNIFIC_API_BASE_URL": api.url}
        args = ["run", "--config", str(config), "--period", "2026-10", "--dry-run", "-q"]
        args += ["--out", str(tmp_path / "out")]
        result = reporter(*args, env=env)
    assert result.returncode == 0, result.stderr
    credits_bought = Decimal(17) / Decimal("0.0045") + Decimal(14) / Decimal("0.0040")
    text = pdf_text(tmp_path / "out" / "2026-10-15_2026-11-14" / "studio.pdf")
    assert f"4,500 of {credits_bought:,.0f} credits" in text
    assert "€18.85 of €31.00" in text
    assert f"Budget: €31.00, set in money: {credits_bought:,.0f} credits" in text


def test_the_chat_summaries_name_the_cycle(tmp_path: Path) -> None:
    data = scripted(dt.date(2026, 11, 20), OUTSIDE | CYCLE)
    config = write_config(
        tmp_path / "c.toml",
        SCRIPTED,
        defaults='slack_webhook_env = "SLACK_URL"\nteams_webhook_env = "TEAMS_URL"',
    )
    with SandboxServer(data, api_key=API_KEY) as api:
        env = {
            "MAGNIFIC_API_KEY": API_KEY,
            "MAGNIFIC_API_BASE_URL": api.url,
            "SLACK_URL": "https://hooks.slack.com/services/T0/B0/x",
            "TEAMS_URL": "https://example.webhook.office.com/webhookb2/x",
        }
        args = ["run", "--config", str(config), "--period", "2026-10", "--dry-run", "-q"]
        result = reporter(*args, "--out", str(tmp_path / "out"), env=env)
    assert result.returncode == 0, result.stderr
    folder = tmp_path / "out" / "2026-10-15_2026-11-14"
    for channel in ("slack", "teams"):
        (payload,) = folder.glob(f"studio*.{channel}.json")
        shown = json.dumps(json.loads(payload.read_text()), ensure_ascii=False)
        shown = shown.replace("\u2009", " ")
        assert "Oct 15 – Nov 14, 2026" in shown, channel
        assert "4,500" in shown, channel
        assert "€18.85" in shown, channel


def test_an_owner_of_a_cycle_and_a_calendar_report_gets_one_message_per_period(
    tmp_path: Path, api: SandboxServer, smtp: SmtpServer
) -> None:
    """With one_mail_per_owner, a bundle holds one period's reports: a manager never gets
    October's calendar figures under a cycle's subject, or the other way round."""
    config = write_config(
        tmp_path / "c.toml",
        '[[reports]]\nname = "cycle"\ntitle = "Cycle"\nowners = ["cfo@company.com"]\n'
        "billing_day = 15\n\n"
        '[[reports]]\nname = "calendar"\ntitle = "Calendar"\nowners = ["cfo@company.com"]\n',
        email_extra="one_mail_per_owner = true\n",
    )
    env = {"MAGNIFIC_API_KEY": API_KEY, "MAGNIFIC_API_BASE_URL": api.url, **smtp.env()}
    args = ["run", "--config", str(config), "--period", "2026-10", "-q"]
    args += ["--out", str(tmp_path / "out"), "--state", str(tmp_path / "state.sqlite3")]
    assert reporter(*args, env=env).returncode == 0
    assert reporter(*args, env=env).returncode == 0  # again: nothing more
    by_subject = {
        str(r.message["Subject"]).replace("\u2009", " "): r.message for r in smtp.recorder.messages
    }
    assert sorted(by_subject) == [
        "Calendar — credit usage, October 2026",
        "Cycle — credit usage, Oct 15 – Nov 14, 2026",
    ]
    for subject, message in by_subject.items():
        names = sorted(str(p.get_filename()) for p in message.iter_attachments())
        expected = (
            "calendar-2026-10" if subject.startswith("Calendar") else "cycle-2026-10-15_2026-11-14"
        )
        assert names == [f"{expected}.csv", f"{expected}.pdf"], subject
