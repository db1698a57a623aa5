"""Budgets by period: finance's CSV, a month's own budget, and the budget of a quarter or a
year made of its months'. Expected figures are worked out here, never by the code tested."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from reporter.budgets import Basis, BudgetFileError, choose_budget, parse_budgets_csv
from reporter.cli import cli
from reporter.periods import Period, parse_period
from reporter.sandbox import SandboxData, SandboxServer, synthetic_team
from tests.conftest import (
    API_KEY,
    SmtpServer,
    pdf_text,
    raw_usage,
    reporter,
    total_credits,
    write_config,
)

HEADER = "report,period,budget_credits\n"
MARKETING = '[[reports]]\nname = "marketing"\nowners = ["lead@company.com"]\n'
DESIGN = '[[reports]]\nname = "design"\nowners = ["design@company.com"]\n'


# --- the CSV -------------------------------------------------------------------


def test_the_csv_gives_rows_with_their_lines_and_the_column_used() -> None:
    text = "\ufeffperiod, report ,budget_credits\n2026-12,marketing,80000\n\n2027-01,design,1.5\n"
    sheet = parse_budgets_csv(text)
    assert sheet.column == "budget_credits"
    assert [(r.line, r.report, r.month, r.value) for r in sheet.rows] == [
        (2, "marketing", "2026-12", 80000.0),
        (4, "design", "2027-01", 1.5),
    ]


def test_a_budget_amount_column_is_recognised_for_money() -> None:
    sheet = parse_budgets_csv("report,period,budget_amount\nmarketing,2026-12,1200.50\n")
    assert sheet.column == "budget_amount"
    assert sheet.rows[0].value == 1200.5


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "line 1: empty file: the first line must be report,period,budget_credits"),
        (
            "report,month,budget_credits\n",
            "line 1: the columns must be report,period,budget_credits"
            " (got 'report,month,budget_credits')",
        ),
        (HEADER + "a,2026-12\n", "line 2: expected 3 fields, got 2 (['a', '2026-12'])"),
        (HEADER + "a,2026-12,nan\n", "line 2, column 'budget_credits': not a number (got 'nan')"),
        (HEADER + "a,1969-12,1\n", "line 2, column 'period': too early: periods start in 1970"),
        (HEADER + ",2026-12,1\n", "line 2, column 'report': empty: name the report"),
    ],
)
def test_a_malformed_csv_names_the_line_and_column(text: str, message: str) -> None:
    with pytest.raises(BudgetFileError) as caught:
        parse_budgets_csv(text)
    assert str(caught.value).startswith(message)


# --- choosing a period's budget ----------------------------------------------------


def period(key: str) -> Period:
    return parse_period(key, today=dt.date.max)


@pytest.mark.parametrize(
    ("key", "budgets", "monthly", "credits", "basis"),
    [
        ("2026-12", {"2026-12": 80000.0}, 120000.0, 80000.0, Basis.SET),
        ("2026-11", {"2026-12": 80000.0}, 120000.0, 120000.0, Basis.MONTHLY),
        ("2026-11", {"2026-12": 80000.0}, None, None, None),
        ("2026-Q4", {"2026-10": 1.0, "2026-11": 2.0, "2026-12": 4.0}, None, 7.0, Basis.SUM),
        ("2026-Q4", {}, 30000.0, 90000.0, Basis.PRORATED),
        ("2026-Q4", {"2026-12": 80000.0}, 100.0, 80200.0, Basis.MIXED),
        ("2026-Q4", {"2026-12": 80000.0}, None, None, None),
        ("2026", {}, 10.0, 120.0, Basis.PRORATED),
        ("2026", {"2026-01": 5.0}, 10.0, 115.0, Basis.MIXED),
        # A week is its month's budget over 365.25 / 12 / 7 weeks; W53 of 2026 is in Dec.
        ("2026-W53", {"2026-12": 365.25}, None, 84.0, Basis.WEEK),
        ("2026-W43", {}, 365.25, 84.0, Basis.WEEK),
    ],
)
def test_a_periods_budget(
    key: str,
    budgets: dict[str, float],
    monthly: float | None,
    credits: float | None,
    basis: Basis | None,
) -> None:
    choice = choose_budget(period(key), budgets, monthly)
    if credits is None:
        assert choice is None
    else:
        assert choice is not None
        assert choice.credits == pytest.approx(credits)
        assert choice.basis is basis


@given(
    year=st.integers(1970, 2100),
    quarter=st.integers(1, 4),
    own=st.lists(st.none() | st.floats(0, 1e9), min_size=3, max_size=3),
    monthly=st.none() | st.floats(0, 1e9),
)
def test_a_quarters_budget_is_the_sum_of_its_months(
    year: int, quarter: int, own: list[float | None], monthly: float | None
) -> None:
    months = [f"{year}-{(quarter - 1) * 3 + m:02d}" for m in (1, 2, 3)]
    budgets = {m: v for m, v in zip(months, own, strict=True) if v is not None}
    each = [v if v is not None else monthly for v in own]
    choice = choose_budget(period(f"{year}-Q{quarter}"), budgets, monthly)
    if any(v is None for v in each):
        assert choice is None
        return
    assert choice is not None
    assert choice.credits == pytest.approx(math.fsum(v for v in each if v is not None))
    by_month = [choose_budget(period(m), budgets, monthly) for m in months]
    assert choice.credits == pytest.approx(math.fsum(c.credits for c in by_month if c))
    assert choice.basis is (
        Basis.SUM if len(budgets) == 3 else Basis.PRORATED if not budgets else Basis.MIXED
    )


# --- config errors: file, line and column, exit 2, before any API call -----------------


@pytest.mark.parametrize(
    ("rows", "problem"),
    [
        (
            "marketing,2026-12,80000\nmarketting,2027-01,1\n",
            "line 3, column 'report': no report named 'marketting' in {config};"
            " did you mean 'marketing'?",
        ),
        ("marketing,2026-13,1\n", "line 2, column 'period': not a month: months run 01-12"),
        ("marketing,Dec 2026,1\n", "line 2, column 'period': not a month: use YYYY-MM"),
        ("marketing,2026-12,-5\n", "line 2, column 'budget_credits': must not be negative"),
        ("marketing,2026-12,abc\n", "line 2, column 'budget_credits': not a number (got 'abc')"),
        (
            "marketing,2026-12,1\ndesign,2026-12,2\nmarketing,2026-12,3\n",
            "line 4, column 'period': marketing 2026-12 is already on line 2",
        ),
        (
            "design,2026-11,1\nmarketing,2026-11,2\n",
            "line 3, column 'period': marketing 2026-11 is also set in the budgets table of"
            " reports[0] ('marketing') in {config}",
        ),
    ],
)
def test_a_bad_budgets_csv_is_a_config_error(tmp_path: Path, rows: str, problem: str) -> None:
    csv_path = tmp_path / "budgets.csv"
    csv_path.write_text(HEADER + rows, encoding="utf-8")
    config = write_config(
        tmp_path / "c.toml",
        MARKETING + 'budgets = { "2026-11" = 5 }\n\n' + DESIGN,
        defaults='budgets_csv = "budgets.csv"',
    )
    done = reporter("run", "--config", str(config), "--dry-run")
    assert done.returncode == 2, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, done.stderr
    assert errors[0].startswith(f"Error: {csv_path}: {problem.format(config=config)}")
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("csv_text", "message"),
    [
        (None, "{csv}: budgets file not found (budgets_csv in [defaults] of {config})"),
        (
            "report,period,budget_amount\nmarketing,2026-12,1200\n",
            "{csv}: line 2, column 'budget_amount': a budget in money for 'marketing' needs"
            " a price per credit",
        ),
    ],
    ids=["missing file", "budgets in money"],
)
def test_a_missing_or_money_budgets_file_is_a_config_error(
    tmp_path: Path, csv_text: str | None, message: str
) -> None:
    csv_path = tmp_path / "sheets" / "budgets.csv"
    if csv_text is not None:
        csv_path.parent.mkdir()
        csv_path.write_text(csv_text, encoding="utf-8")
    config = write_config(
        tmp_path / "c.toml", MARKETING, defaults='budgets_csv = "sheets/budgets.csv"'
    )
    for command in ("run", "watch", "check"):
        done = reporter(command, "--config", str(config))
        assert done.returncode == 2, (command, done.stderr)
        (first, *rest) = done.stderr.splitlines()
        assert first.startswith("Error: " + message.format(csv=csv_path, config=config))
        assert not any(line.startswith("Error:") for line in rest)
        assert "Traceback" not in done.stderr


def test_a_malformed_month_in_the_budgets_table_is_a_config_error(tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.toml", MARKETING + 'budgets = { "Dec 2026" = 5 }\n')
    done = reporter("run", "--config", str(config), "--dry-run")
    assert done.returncode == 2
    assert done.stderr.splitlines()[0] == (
        f"Error: {config}: reports[0] ('marketing'): budgets: 'Dec 2026': not a month:"
        " use YYYY-MM, e.g. 2026-12 (got 'Dec 2026')"
    )


def test_budgets_alone_let_a_report_have_alerts(tmp_path: Path) -> None:
    """Threshold and forecast alerts need a budget: ``budgets`` or a CSV row is one."""
    (tmp_path / "budgets.csv").write_text(HEADER + "design,2026-12,10\n", encoding="utf-8")
    config = write_config(
        tmp_path / "c.toml",
        MARKETING
        + 'budgets = { "2026-12" = 5 }\nalert_thresholds = [50]\n\n'
        + DESIGN
        + "forecast_alert = true\n",
        defaults='budgets_csv = "budgets.csv"',
    )
    done = reporter("run", "--config", str(config), "--dry-run")
    # Past the config: it stops at the missing API key instead.
    assert done.returncode == 2
    assert "MAGNIFIC_API_KEY" in done.stderr.splitlines()[0]


# --- the PDF ------------------------------------------------------------------


def run_report(tmp_path: Path, api: SandboxServer, period: str, reports: str, **kw: str) -> str:
    """The report's PDF text; the config is in its own folder, which budgets_csv is
    relative to (not the working directory)."""
    folder = tmp_path / "config"
    folder.mkdir(exist_ok=True)
    config = write_config(folder / "c.toml", reports, **kw)
    out = tmp_path / "out"
    result = CliRunner().invoke(
        cli,
        ["run", "--config", str(config), "--period", period, "--dry-run", "--out", str(out)],
        env={"MAGNIFIC_API_KEY": API_KEY, "MAGNIFIC_API_BASE_URL": api.url},
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    return pdf_text(tmp_path / "out" / period / "marketing.pdf")


def credits_between(api: SandboxServer, start: dt.date, end: dt.date) -> int:
    body = {"granularity": "day", "start_date": start.isoformat(), "end_date": end.isoformat()}
    return total_credits(raw_usage(api, body))


def test_a_month_with_its_own_budget_in_the_csv(tmp_path: Path, api: SandboxServer) -> None:
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "budgets.csv").write_text(
        HEADER + "marketing,2026-10,500000\nmarketing,2026-09,1\n", encoding="utf-8"
    )
    text = run_report(
        tmp_path,
        api,
        "2026-10",
        MARKETING + "budget_credits = 2000000\n",
        defaults='budgets_csv = "budgets.csv"',
    )
    used = credits_between(api, dt.date(2026, 10, 1), dt.date(2026, 10, 31))
    assert f"{used:,} of 500,000 credits" in text
    assert "Budget: 500,000 credits, set for October 2026." in text


@pytest.mark.parametrize(
    ("budgets", "monthly", "limit", "sentence"),
    [
        (
            '{ "2026-07" = 100000, "2026-08" = 200000, "2026-09" = 400000 }',
            None,
            700_000,
            "Budget: 700,000 credits, the sum of its months' budgets.",
        ),
        (
            '{ "2026-08" = 200000 }',
            300000,
            300_000 + 200_000 + 300_000,
            "Budget: 800,000 credits, the sum of its months' budgets (the monthly"
            " budget_credits for the 2 months without their own).",
        ),
        (
            '{ "2026-12" = 5 }',
            300000,
            3 * 300_000,
            "Budget: 900,000 credits, the monthly budget_credits × 3 months.",
        ),
    ],
    ids=["every month its own", "one month its own", "none of its own"],
)
def test_a_quarters_budget_in_the_pdf(
    tmp_path: Path,
    api: SandboxServer,
    budgets: str,
    monthly: int | None,
    limit: int,
    sentence: str,
) -> None:
    extra = f"budget_credits = {monthly}\n" if monthly else ""
    text = run_report(tmp_path, api, "2026-Q3", MARKETING + f"budgets = {budgets}\n" + extra)
    used = credits_between(api, dt.date(2026, 7, 1), dt.date(2026, 9, 30))
    assert f"{used:,} of {limit:,} credits" in text
    assert sentence in text


def test_the_about_sentence_in_spanish(tmp_path: Path, api: SandboxServer) -> None:
    reports = MARKETING + 'locale = "es"\nbudgets = { "2026-10" = 500000 }\n'
    text = run_report(tmp_path, api, "2026-10", reports)
    assert "Presupuesto: 500.000 créditos, fijado para octubre de 2026." in text


def test_a_month_without_a_budget_has_no_budget(tmp_path: Path, api: SandboxServer) -> None:
    text = run_report(tmp_path, api, "2026-10", MARKETING + 'budgets = { "2026-09" = 5 }\n')
    assert "Budget" not in text


# --- watch and check -------------------------------------------------------------

# Group 20 spends 100 credits a day in November: 1,200 through the 12th.
NOVEMBER = {dt.date(2026, 11, day): 100 for day in range(1, 31)}


@pytest.fixture
def november_api() -> Iterator[SandboxServer]:
    data = SandboxData(synthetic_team(users=48, seed=7), today=dt.date(2026, 12, 1))
    data.script(20, NOVEMBER)
    with SandboxServer(data, api_key=API_KEY) as server:
        yield server


def test_watch_measures_the_month_against_its_own_budget(
    tmp_path: Path, november_api: SandboxServer, smtp: SmtpServer
) -> None:
    """1,200 credits is 50% of November's own 2,400, and nothing of budget_credits; the
    report budgeted only for December has no budget in November, so no alert."""
    quiet = "group_ids = [20]\nspike_factor = 0\nforecast_alert = false\nalert_thresholds = [50]\n"
    config = write_config(
        tmp_path / "c.toml",
        MARKETING
        + quiet
        + 'title = "Marketing"\nbudget_credits = 100000000\nbudgets = { "2026-11" = 2400 }\n\n'
        + DESIGN
        + quiet
        + 'budgets = { "2026-12" = 2400 }\n',
    )
    env = {"MAGNIFIC_API_KEY": API_KEY, "MAGNIFIC_API_BASE_URL": november_api.url, **smtp.env()}
    for day in ("2026-11-11", "2026-11-12"):
        args = ["watch", "--config", str(config), "--date", day, "-q"]
        args += ["--out", str(tmp_path / "out"), "--state", str(tmp_path / "state.sqlite3")]
        result = CliRunner().invoke(cli, args, env=env)
        assert result.exit_code == 0, result.output
    (received,) = smtp.recorder.messages
    assert received.recipients == ["lead@company.com"]
    assert str(received.message["Subject"]) == "Marketing: 50% of the November budget used"
    text = received.message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "Credits used: 1,200 of a budget of 2,400 (50.0%)" in text


def test_check_shows_each_reports_budget_for_the_month(
    tmp_path: Path, api: SandboxServer, smtp: SmtpServer
) -> None:
    month = dt.datetime.now(dt.UTC).strftime("%Y-%m")
    other = "1999-01" if month != "1999-01" else "1999-02"
    config = write_config(
        tmp_path / "c.toml",
        MARKETING
        + f'budget_credits = 30000\nbudgets = {{ "{month}" = 80000 }}\n\n'
        + DESIGN
        + "budget_credits = 30000\n\n"
        + '[[reports]]\nname = "launch"\nowners = ["l@company.com"]\n'
        + f'budgets = {{ "{other}" = 5 }}\nalert_thresholds = [50]\n\n'
        + '[[reports]]\nname = "plain"\nowners = ["p@company.com"]\n',
    )
    env = {"MAGNIFIC_API_KEY": API_KEY, "MAGNIFIC_API_BASE_URL": api.url, **smtp.env()}
    done = reporter("check", "--config", str(config), "--out", str(tmp_path / "out"), env=env)
    assert done.returncode in (0, 1), done.stderr
    lines = done.stdout.splitlines()
    assert f"ok    budget marketing: 80,000 credits for {month} (set for the month)" in lines
    assert f"ok    budget design: 30,000 credits for {month} (the monthly budget_credits)" in lines
    assert (
        f"note  budget launch: none for {month}: budgets has no {month} and there is no"
        " budget_credits" in lines
    )
    assert (
        "ok    alerts marketing: budget thresholds 80%, 100% of 80,000 credits; forecast"
        " above the budget; spikes at 3x the typical day" in lines
    )
    assert (
        f"ok    alerts launch: spikes at 3x the typical day (no budget for {month}, so no"
        " threshold or forecast alerts)" in lines
    )
    assert not any("budget plain" in line for line in lines)
