"""Money beside credits (issue 26): amounts priced day by day, rounded once, adding up.

The expected amounts are computed here from the stand-in's raw JSON with ``decimal``:
each day's tool credits times the price in force that day, summed, rounded half up to
the cent. The report's printed figures are read back from the PDF, both email parts and
the CSV, in en and es.
"""

from __future__ import annotations

import csv
import datetime as dt
import email
import email.policy
import html
import json
import re
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import pytest
from babel.numbers import format_currency, format_percent
from hypothesis import given
from hypothesis import strategies as st

from reporter.money import allocate
from reporter.prices import Prices
from reporter.sandbox import SandboxServer
from tests.conftest import API_KEY, pdf_rows, pdf_text, raw_usage, reporter, write_config

CHANGE = dt.date(2026, 10, 15)  # the plan's new price takes effect
BEFORE, AFTER = Decimal("0.0045"), Decimal("0.004")
CENT = Decimal("0.01")
REPORTS = """
[[reports]]
name = "team"
title = "Team"
owners = ["cfo@company.com"]
currency = "EUR"
credit_prices = { "2026-01-01" = 0.0045, "2026-10-15" = 0.0040 }

[[reports]]
name = "equipo"
title = "Equipo"
locale = "es"
owners = ["cfo@company.com"]
currency = "EUR"
credit_price = 0.0045

[[reports]]
name = "tokyo"
title = "Tokyo"
owners = ["cfo@company.com"]
currency = "JPY"
credit_price = 0.61
"""


def price_on(day: dt.date) -> Decimal:
    return AFTER if day >= CHANGE else BEFORE


def october_by_tool(api: SandboxServer) -> dict[str, dict[dt.date, Decimal]]:
    """tool -> day -> credits of October, from the API's own answer."""
    answer = raw_usage(
        api, {"granularity": "day", "start_date": "2026-10-01", "end_date": "2026-10-31"}
    )
    days: dict[str, dict[dt.date, Decimal]] = {}
    for bucket in answer["data"]:
        day = dt.date.fromisoformat(bucket["date"][:10])
        for c in bucket["consumptions"]:
            per_day = days.setdefault(c["tool"], {})
            per_day[day] = per_day.get(day, Decimal(0)) + Decimal(repr(c["user_credits"]))
    return days


def euros(text: str) -> Decimal:
    return Decimal(text.removeprefix("€").replace(",", ""))


@pytest.fixture(scope="module")
def out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("money")


@pytest.fixture
def folder(api: SandboxServer, out: Path) -> Path:
    if not (out / "out" / "2026-10" / "team.pdf").exists():
        config = write_config(
            out / "reports.toml",
            REPORTS,
            defaults='slack_webhook_env = "SLACK_URL"\nteams_webhook_env = "TEAMS_URL"',
        )
        result = reporter(
            *("run", "--config", str(config), "--period", "2026-10", "--dry-run"),
            *("--out", str(out / "out"), "-q"),
            env={
                "MAGNIFIC_API_KEY": API_KEY,
                "MAGNIFIC_API_BASE_URL": api.url,
                "SLACK_URL": "https://hooks.slack.com/services/T0/B0/x",
                "TEAMS_URL": "https://example.webhook.office.com/webhookb2/x",
                "GITHUB_STEP_SUMMARY": str(out / "summary.md"),
            },
        )
        assert result.returncode == 0, result.stderr
    return out / "out" / "2026-10"


def test_each_days_credits_are_priced_at_that_days_price_and_the_table_adds_up(
    api: SandboxServer, folder: Path
) -> None:
    days = october_by_tool(api)
    exact = {
        tool: sum((credits * price_on(day) for day, credits in per_day.items()), Decimal(0))
        for tool, per_day in days.items()
    }
    total = sum(exact.values(), Decimal(0)).quantize(CENT, ROUND_HALF_UP)
    rows = pdf_rows(folder / "team.pdf")
    printed = {}
    for tool, amount in exact.items():
        credits = sum(days[tool].values(), Decimal(0))
        (row,) = [r for r in rows if r.startswith(f"{tool} ") and f" {credits:,.0f} €" in r]
        printed[tool] = euros(row.split(f" {credits:,.0f} ", 1)[1].split()[0])
        assert abs(printed[tool] - amount) < CENT, tool  # within a cent of exact
    (footer,) = [r for r in rows if r.startswith("Total ")]
    assert f"€{total:,}" in footer.split()
    assert sum(printed.values(), Decimal(0)) == total  # as printed, the rows add up
    text = pdf_text(folder / "team.pdf")
    credits = sum(sum(d.values()) for d in days.values())
    assert re.search(rf"CREDITS USED .*? {credits:,.0f} .*? €{total:,} ", text)  # the card
    # The users' (top ten, everyone else, not attributed), projects' and groups' tables
    # each add up to the same total, as printed.
    sections: dict[str, Decimal] = {}
    heading = ""
    for row in rows:
        if row in ("Credits by tool", "Top users", "Credits by project", "Credits by group"):
            heading = row
        elif row == "About these figures":
            heading = ""
        elif heading and not row.startswith("Total "):
            found = re.findall(r"€[\d,]+\.\d\d", row)
            sections[heading] = sections.get(heading, Decimal(0)) + sum(map(euros, found))
            project = re.match(r"(.+?) [\d,]+ [\d,]+ (€[\d,]+\.\d\d)", row)
            if heading == "Credits by project" and project:
                printed[f"Project {project[1]}"] = euros(project[2])
    assert sections == dict.fromkeys(sections, total)
    assert len(sections) == 4
    # Where "what changed" states a change, its amount is beside its credits.
    stated = re.findall(r"(\w[\w ]*?) (?:grew|fell) [\d.]+% to [\d,]+ credits \(([^)]*)\)", text)
    assert stated  # at least one tool's change is stated
    for tool, amount in stated:
        assert amount == f"€{printed[tool]:,}", tool
    total_line = re.search(r"Credits (?:rose|fell) [\d.]+% to [\d,]+ \(([^)]*)\)", text)
    assert total_line is not None
    assert total_line[1] == f"€{total:,}"
    assert (
        "Amounts: each day's credits at the price per credit in force that day:"
        " €0.0045 from Oct 1, 2026; €0.004 from Oct 15, 2026." in text
    )


def test_the_email_and_the_csv_carry_the_amounts(api: SandboxServer, folder: Path) -> None:
    days = october_by_tool(api)
    exact = sum(
        (c * price_on(day) for per_day in days.values() for day, c in per_day.items()),
        Decimal(0),
    )
    shown = f"€{exact.quantize(CENT, ROUND_HALF_UP):,}"
    message = email.message_from_bytes(
        (folder / "team.eml").read_bytes(), policy=email.policy.default
    )
    plain = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    page = message.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert f"Amount: {shown}" in plain
    assert shown in html.unescape(re.sub(r"<[^>]+>", " ", page)).split()
    for channel in ("slack", "teams"):  # the chat summaries carry it too
        (payload,) = folder.glob(f"team*.{channel}.json")
        assert shown in json.dumps(json.loads(payload.read_text()), ensure_ascii=False), channel
    with (folder / "team.csv").open(newline="") as file:
        lines = list(csv.DictReader(file))
    assert sum(Decimal(line["amount"]) for line in lines) == exact
    # Each line at its own day's price.
    for line in lines[:: max(1, len(lines) // 50)]:
        day = dt.date.fromisoformat(line["date"])
        assert Decimal(line["amount"]) == Decimal(line["credits"]) * price_on(day)


def test_spanish_amounts_and_a_currency_without_cents(api: SandboxServer, folder: Path) -> None:
    days = october_by_tool(api)
    credits = sum((c for d in days.values() for c in d.values()), Decimal(0))
    euros_es = format_currency((credits * BEFORE).quantize(CENT, ROUND_HALF_UP), "EUR", locale="es")
    assert euros_es.endswith("\xa0€")  # 1.234,56 €: Babel's Spanish form
    text = pdf_text(folder / "equipo.pdf")  # (its white space folded to plain spaces)
    assert " ".join(euros_es.split()) in text
    assert "Importes: créditos a 0,0045 € por crédito." in text
    plain = email.message_from_bytes(
        (folder / "equipo.eml").read_bytes(), policy=email.policy.default
    ).get_body(("plain",))
    assert f"Importe: {euros_es}" in plain.get_content()  # type: ignore[union-attr]
    yen = (credits * Decimal("0.61")).quantize(Decimal(1), ROUND_HALF_UP)
    assert f"¥{yen:,}" in pdf_text(folder / "tokyo.pdf").split()


def test_a_period_before_the_first_price_shows_no_amounts(
    api: SandboxServer, tmp_path: Path
) -> None:
    config = write_config(
        tmp_path / "reports.toml",
        '[[reports]]\nname = "team"\nowners = ["cfo@company.com"]\ncurrency = "EUR"\n'
        'credit_prices = { "2026-10-15" = 0.004 }\n',
    )
    result = reporter(
        *("run", "--config", str(config), "--period", "2026-10", "--dry-run"),
        *("--out", str(tmp_path / "out"), "-q"),
        env={"MAGNIFIC_API_KEY": API_KEY, "MAGNIFIC_API_BASE_URL": api.url},
    )
    assert result.returncode == 0, result.stderr
    text = pdf_text(tmp_path / "out" / "2026-10" / "team.pdf")
    assert "€" not in text
    assert "No amounts: the credit prices in the config start on Oct 15, 2026" in text


@pytest.mark.parametrize(
    ("pricing", "message"),
    [
        ('currency = "EURO"\ncredit_price = 0.004', "not an ISO 4217 currency code"),
        ("credit_price = 0.004", "currency: needed with a credit price"),
        ('currency = "EUR"\ncredit_price = -1', "credit_price: Input should be greater than 0"),
        (
            'currency = "EUR"\ncredit_price = 0.004\ncredit_prices = { "2026-01-01" = 0.004 }',
            "credit_price and credit_prices are both set",
        ),
        ('currency = "EUR"\ncredit_prices = { "2026-13-01" = 0.004 }', "credit_prices"),
    ],
)
def test_a_bad_price_is_one_error_line_before_any_request(
    tmp_path: Path, pricing: str, message: str
) -> None:
    config = write_config(
        tmp_path / "reports.toml",
        f'[[reports]]\nname = "team"\nowners = ["cfo@company.com"]\n{pricing}\n',
    )
    result = reporter(
        "run", "--config", str(config), "--dry-run", env={"MAGNIFIC_API_KEY": API_KEY}
    )
    assert result.returncode == 2
    first = result.stderr.splitlines()[0]
    assert first.startswith(f"Error: {config}: reports[0] ('team'): ")
    assert message in first
    assert "Traceback" not in result.stderr


amounts = st.decimals(min_value=0, max_value=10**7, places=6, allow_nan=False)


@given(
    st.dictionaries(st.text(min_size=1, max_size=4), amounts, min_size=1, max_size=30),
    st.sampled_from(["EUR", "JPY", "KWD"]),
)
def test_rounded_rows_add_up_to_the_rounded_total_each_within_a_unit(
    exact: dict[str, Decimal], currency: str
) -> None:
    prices = Prices(currency, (dt.date.min,), (Decimal(1),))
    rows, total = allocate(exact, prices)
    unit = prices.quantum
    assert total == sum(exact.values(), Decimal(0)).quantize(unit, ROUND_HALF_UP)
    assert sum(rows.values(), Decimal(0)) == total
    assert rows.keys() == exact.keys()
    for key, amount in rows.items():
        assert amount == amount.quantize(unit)
        assert abs(amount - exact[key]) < unit


def test_check_shows_each_reports_currency_and_price_in_force(
    api: SandboxServer, tmp_path: Path
) -> None:
    config = write_config(
        tmp_path / "reports.toml",
        '[[reports]]\nname = "team"\nowners = ["cfo@company.com"]\n'
        'credit_prices = { "2026-01-01" = 0.0045, "2099-01-01" = 0.004 }\n'
        '[[reports]]\nname = "flat"\nowners = ["cfo@company.com"]\ncredit_price = 0.61\n'
        'currency = "JPY"\nbudget_amount = 61000\n'
        '[[reports]]\nname = "plain"\nowners = ["cfo@company.com"]\ncurrency = "USD"\n',
        defaults='currency = "EUR"',
    )
    result = reporter(
        "check",
        *("--config", str(config), "--out", str(tmp_path / "out")),
        *("--state", str(tmp_path / "state.db")),
        env={"MAGNIFIC_API_KEY": API_KEY, "MAGNIFIC_API_BASE_URL": api.url},
    )
    lines = result.stdout.splitlines()
    assert (
        "ok    money team: EUR, 0.0045 EUR per credit in force since 2026-01-01;"
        " 0.004 EUR from 2099-01-01" in lines
    )
    assert "ok    money flat: JPY, 0.61 JPY per credit in force" in lines
    month = dt.datetime.now(dt.UTC).strftime("%Y-%m")  # check's own month
    assert (
        f"ok    budget flat: 100,000 credits for {month} (61,000 in money, at each day's price"
        " per credit)" in lines
    )
    assert not any(line.startswith("note  money plain") for line in lines)  # credits only


def test_the_job_summary_has_an_amount_column_totalled_only_in_one_currency(
    api: SandboxServer, folder: Path, out: Path
) -> None:
    days = october_by_tool(api)
    credits = sum((c for d in days.values() for c in d.values()), Decimal(0))
    team = sum(
        (c * price_on(day) for per_day in days.values() for day, c in per_day.items()),
        Decimal(0),
    ).quantize(CENT, ROUND_HALF_UP)
    equipo = (credits * BEFORE).quantize(CENT, ROUND_HALF_UP)
    yen = (credits * Decimal("0.61")).quantize(Decimal(1), ROUND_HALF_UP)
    lines = (out / "summary.md").read_text(encoding="utf-8").splitlines()
    assert "| Report | Credits | Amount | Status | Detail |" in lines
    rows = {line.split(" | ")[0].removeprefix("| "): line.split(" | ") for line in lines}
    assert rows["team"][1:3] == [f"{credits:,.0f}", f"€{team:,}"]
    assert rows["equipo"][1:3] == [f"{credits:,.0f}", f"€{equipo:,}"]  # English, as the page
    assert rows["tokyo"][1:3] == [f"{credits:,.0f}", f"¥{yen:,}"]
    # Euros and yen do not add up: the total row says so instead of a sum.
    assert rows["**Total**"][1:3] == [f"**{3 * credits:,.0f}**", "(several currencies)"]


# --- budgets in money ---------------------------------------------------------------


def budget_credits_of(amount: Decimal, first: dt.date, days: int) -> Decimal:
    """A money budget in credits: an equal share each day, at that day's price."""
    return sum(
        (amount / days / price_on(first + dt.timedelta(days=n)) for n in range(days)),
        Decimal(0),
    )


def test_a_budget_in_money_is_measured_in_credits_at_each_days_price(
    api: SandboxServer, tmp_path: Path
) -> None:
    (tmp_path / "budgets.csv").write_text(
        "report,period,budget_amount\nsheet,2026-10,2500\n", encoding="utf-8"
    )
    config = write_config(
        tmp_path / "reports.toml",
        '[[reports]]\nname = "team"\nowners = ["cfo@company.com"]\nbudget_amount = 1800\n'
        '[[reports]]\nname = "sheet"\nowners = ["cfo@company.com"]\nbudget_amount = 100\n',
        defaults='currency = "EUR"\nbudgets_csv = "budgets.csv"\n'
        'credit_prices = { "2026-01-01" = 0.0045, "2026-10-15" = 0.004 }',
    )
    result = reporter(
        *("run", "--config", str(config), "--period", "2026-10", "--dry-run"),
        *("--out", str(tmp_path / "out"), "-q"),
        env={"MAGNIFIC_API_KEY": API_KEY, "MAGNIFIC_API_BASE_URL": api.url},
    )
    assert result.returncode == 0, result.stderr
    days = october_by_tool(api)
    credits = sum((c for d in days.values() for c in d.values()), Decimal(0))
    used = sum(
        (c * price_on(day) for per_day in days.values() for day, c in per_day.items()),
        Decimal(0),
    ).quantize(CENT, ROUND_HALF_UP)
    # The monthly budget_amount, and the CSV's month (which overrides it) in money.
    for name, amount in (("team", Decimal(1800)), ("sheet", Decimal(2500))):
        limit = budget_credits_of(amount, dt.date(2026, 10, 1), 31)
        text = pdf_text(tmp_path / "out" / "2026-10" / f"{name}.pdf")
        share = format_percent(float(credits / limit), "#,##0.0%", locale="en")
        card = text.split("BUDGET", 1)[1].split("What changed", 1)[0]
        assert share in card.split(), name
        assert f" {credits:,.0f} of {limit:,.0f} credits €{used:,} of €{amount:,.2f} " in card
        assert (
            f"Budget: €{amount:,.2f}, set in money: {limit:,.0f} credits at each day's price"
            " per credit." in text
        ), name
        plain = email.message_from_bytes(
            (tmp_path / "out" / "2026-10" / f"{name}.eml").read_bytes(),
            policy=email.policy.default,
        ).get_body(("plain",))
        budget_line = f"Budget: {credits:,.0f} of {limit:,.0f} credits ({share}); €{used:,} of"
        assert f"{budget_line} €{amount:,.2f}" in plain.get_content(), name  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("budget", "message"),
    [
        ("budget_credits = 1\nbudget_amount = 1", "budget_credits and budget_amount are both set"),
        (
            'budgets = { "2026-10" = 1 }\nbudget_amounts = { "2026-10" = 1 }',
            "budgets and budget_amounts both set 2026-10",
        ),
        ("budget_amount = -5", "budget_amount: Input should be greater than or equal to 0"),
    ],
)
def test_a_budget_in_money_that_cannot_work_is_a_config_error(
    tmp_path: Path, budget: str, message: str
) -> None:
    config = write_config(
        tmp_path / "reports.toml",
        f'[[reports]]\nname = "team"\nowners = ["cfo@company.com"]\n{budget}\n',
        defaults='currency = "EUR"\ncredit_price = 0.004',
    )
    result = reporter(
        "run", "--config", str(config), "--dry-run", env={"MAGNIFIC_API_KEY": API_KEY}
    )
    assert result.returncode == 2
    assert message in result.stderr.splitlines()[0]
    assert "Traceback" not in result.stderr


def test_a_budget_in_money_without_a_price_is_a_config_error(tmp_path: Path) -> None:
    config = write_config(
        tmp_path / "reports.toml",
        '[[reports]]\nname = "team"\nowners = ["cfo@company.com"]\nbudget_amount = 540\n',
    )
    result = reporter(
        "run", "--config", str(config), "--dry-run", env={"MAGNIFIC_API_KEY": API_KEY}
    )
    assert result.returncode == 2
    assert result.stderr.splitlines()[0] == (
        f"Error: {config}: reports[0] ('team'): budget_amount: a budget in money needs a price"
        " per credit to be turned into credits; set currency and credit_price (or"
        " credit_prices), or give budget_credits instead"
    )


@given(
    st.lists(
        st.tuples(
            st.dates(dt.date(2026, 9, 1), dt.date(2026, 11, 30)),
            st.sampled_from(["a", "b", "c", None]),
            st.integers(0, 10**7).map(lambda n: n / 10),  # the API's credits: tenths at most
        ),
        max_size=60,
    ),
    st.dictionaries(
        st.dates(dt.date(2026, 9, 2), dt.date(2026, 11, 30)),
        st.decimals(min_value=Decimal("0.0001"), max_value=5, places=4),
        max_size=4,
    ),
    st.sampled_from(["EUR", "JPY"]),
)
def test_any_usage_at_any_price_schedule_adds_up_to_the_credit_and_the_cent(
    lines: list[tuple[dt.date, str | None, float]],
    changes: dict[dt.date, Decimal],
    currency: str,
) -> None:
    """Each key's amount is its days' credits at their prices, exactly; rounded, the keys
    add up to the rounded total whatever the schedule (a price from Sep 1, changes after)."""
    import pandas as pd

    from reporter.money import exact_amounts

    prices = Prices.schedule(currency, {dt.date(2026, 9, 1): Decimal("0.0045"), **changes})
    frame = pd.DataFrame(
        {
            "date": pd.to_datetime([day for day, _, _ in lines]),
            "tool": pd.Series([key for _, key, _ in lines], dtype=object),
            "credits": pd.Series([credits for _, _, credits in lines], dtype="float64"),
        }
    )
    exact = exact_amounts(frame, "tool", prices)
    expected: dict[str | None, Decimal] = {}
    for day, key, credits in lines:
        price = max((d, p) for d, p in zip(prices.starts, prices.prices, strict=True) if d <= day)
        expected[key] = expected.get(key, Decimal(0)) + Decimal(repr(credits)) * price[1]
    assert exact == expected
    rows, total = allocate(exact, prices)
    assert sum(rows.values(), Decimal(0)) == total
    assert total == sum(expected.values(), Decimal(0)).quantize(prices.quantum, ROUND_HALF_UP)
