"""Amounts in ``reporter watch`` alerts (issue 26): every credit figure an alert shows has
its amount beside it, each day's credits at that day's price, in the email (both parts),
Slack and Teams, in en and es.

The team is scripted (100 credits a day, then a spike of 1,100 on Nov 20) and the price
changes on Nov 10, so an amount taken at one price is wrong. The expected figures are
computed here from the stand-in's raw JSON with ``decimal``, never by the code tested.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from decimal import ROUND_HALF_UP, Decimal
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from babel.numbers import format_currency

from reporter.sandbox import TOOLS, SandboxData, SandboxServer, synthetic_team
from tests.conftest import API_KEY, SmtpServer, raw_usage, reporter, write_config

SPIKE = dt.date(2026, 11, 20)
CHANGE = dt.date(2026, 11, 10)
BEFORE, AFTER = Decimal("0.0045"), Decimal("0.0040")
CENT = Decimal("0.01")
BUDGET = 4000  # 3,000 used by Nov 20: past 50%, forecast 4,500 above it
DAYS = [dt.date(2026, 10, 1) + dt.timedelta(days=n) for n in range(51)]  # Oct 1 - Nov 20
PRICES = 'currency = "EUR"\ncredit_prices = { "2026-01-01" = 0.0045, "2026-11-10" = 0.0040 }\n'


def price_on(day: dt.date) -> Decimal:
    return AFTER if day >= CHANGE else BEFORE


def cents(amount: Decimal) -> Decimal:
    return amount.quantize(CENT, ROUND_HALF_UP)


@pytest.fixture
def data() -> SandboxData:
    data = SandboxData(synthetic_team(users=12, seed=3), today=dt.date(2026, 11, 21))
    daily: dict[dt.date, list[tuple[int, int, int]]] = {d: [(0, 0, 100)] for d in DAYS}
    daily[SPIKE] = [(0, 0, 100), (1, 1, 1000)]  # a second tool and user make the spike
    data.script_parts(20, daily)
    return data


@pytest.fixture
def api(data: SandboxData) -> Iterator[SandboxServer]:
    with SandboxServer(data, api_key=API_KEY) as server:
        yield server


def by_day(api: SandboxServer) -> dict[str, dict[dt.date, Decimal]]:
    """("tool", name) / ("user", address) -> day -> credits of November so far, raw."""
    answer = raw_usage(
        api,
        {
            "granularity": "day",
            "start_date": "2026-11-01",
            "end_date": SPIKE.isoformat(),
            "group_ids": [20],
        },
    )
    out: dict[str, dict[dt.date, Decimal]] = {}
    for bucket in answer["data"]:
        day = dt.date.fromisoformat(bucket["date"][:10])
        for c in bucket["consumptions"]:
            tool = out.setdefault(f"tool:{c['tool']}", {})
            tool[day] = tool.get(day, Decimal(0)) + Decimal(repr(c["user_credits"]))
            for u in c.get("user_usages") or []:
                user = out.setdefault(f"user:{u['user_email']}", {})
                user[day] = user.get(day, Decimal(0)) + Decimal(repr(u["user_credits"]))
    return out


def priced(days: dict[dt.date, Decimal]) -> Decimal:
    return cents(sum((c * price_on(d) for d, c in days.items()), Decimal(0)))


def body(message: EmailMessage, kind: str) -> str:
    part = message.get_body((kind,))
    assert part is not None
    return str(part.get_content()).replace("\u2009", " ").replace("\xa0", " ")


def watch(tmp_path: Path, api: SandboxServer, smtp: SmtpServer, reports: str) -> dict[str, Any]:
    config = write_config(
        tmp_path / "c.toml",
        reports,
        defaults='slack_webhook_env = "SLACK_URL"\nteams_webhook_env = "TEAMS_URL"',
    )
    env = {
        "MAGNIFIC_API_KEY": API_KEY,
        "MAGNIFIC_API_BASE_URL": api.url,
        "SLACK_URL": "https://hooks.slack.com/services/T0/B0/x",
        "TEAMS_URL": "https://example.webhook.office.com/webhookb2/x",
        **smtp.env(),
    }
    args = ["watch", "--config", str(config), "--date", SPIKE.isoformat(), "--dry-run", "-q"]
    result = reporter(*args, "--out", str(tmp_path / "out"), env=env)
    assert result.returncode == 0, result.stderr
    folder = tmp_path / "out" / "2026-11" / "alerts"
    (eml,) = folder.glob("*.eml")
    import email
    import email.policy

    message = email.message_from_bytes(eml.read_bytes(), policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    chat = {
        channel: json.dumps(json.loads(next(folder.glob(f"*.{channel}.json")).read_text()))
        for channel in ("slack", "teams")
    }
    return {"message": message, "chat": {k: json.loads(v) for k, v in chat.items()}}


def chat_text(payload: Any) -> str:
    return json.dumps(payload, ensure_ascii=False).replace("\u2009", " ").replace("\xa0", " ")


@pytest.mark.parametrize("locale", ["en", "es"])
def test_every_figure_of_an_alert_has_its_amount_at_each_days_price(
    tmp_path: Path, api: SandboxServer, smtp: SmtpServer, locale: str
) -> None:
    reports = (
        f'[[reports]]\nname = "studio"\ntitle = "Studio"\nowners = ["lead@company.com"]\n'
        f'group_ids = [20]\nlocale = "{locale}"\nbudget_credits = {BUDGET}\n'
        f"alert_thresholds = [50]\n{PRICES}"
    )
    sent = watch(tmp_path, api, smtp, reports)
    raw = by_day(api)
    days = {}
    for key, per_day in raw.items():
        if key.startswith("tool:"):
            for d, c in per_day.items():
                days[d] = days.get(d, Decimal(0)) + c
    used = sum(days.values(), Decimal(0))
    assert used == 3000
    elapsed, length = 20, 30
    forecast_credits = used / elapsed * length
    so_far = sum((c * price_on(d) for d, c in days.items()), Decimal(0))
    remaining = [SPIKE + dt.timedelta(days=n) for n in range(1, 11)]
    forecast = cents(
        so_far
        + sum(((forecast_credits - used) / len(remaining) * price_on(d) for d in remaining), 0)
    )
    budget = cents(
        sum(
            (
                Decimal(BUDGET) / length * price_on(dt.date(2026, 11, 1) + dt.timedelta(days=n))
                for n in range(length)
            ),
            Decimal(0),
        )
    )
    typical = Decimal(100)  # every one of the 28 days before the spike
    spike = days[SPIKE]

    def money(amount: Decimal) -> str:
        return format_currency(amount, "EUR", locale=locale).replace("\xa0", " ")

    def number(value: Decimal) -> str:
        text = f"{value:,.0f}"
        return text.replace(",", ".") if locale == "es" else text

    top_tool, spike_tool = f"tool:{TOOLS[0].name}", f"tool:{TOOLS[1].name}"
    spike_user = next(
        k for k, v in raw.items() if k.startswith("user:") and SPIKE in v and v[SPIKE] == 1000
    )
    expected = [
        money(cents(so_far)),  # used so far
        money(budget),  # the budget, priced day by day
        money(forecast),  # the forecast
        money(cents(spike * AFTER)),  # the spike's day
        money(cents(typical * AFTER)),  # a typical day, at the spike day's price
        money(priced(raw[top_tool])),  # the month's top tool so far
        money(priced(raw[spike_tool])),  # the spike's tool, on its day
        number(forecast_credits),
    ]
    assert money(cents(so_far)) != money(cents(used * AFTER))  # one price would be wrong
    message = sent["message"]
    for kind in ("plain", "html"):
        text = body(message, kind)
        for figure in expected:
            assert figure in text, (kind, figure)
    assert spike_user.removeprefix("user:") in body(message, "plain")
    for channel, payload in sent["chat"].items():
        shown = chat_text(payload)
        for figure in expected[:4]:
            assert figure in shown, (channel, figure)
        assert money(priced(raw[top_tool])) in shown, channel


def test_a_budget_set_in_money_is_shown_as_set(
    tmp_path: Path, api: SandboxServer, smtp: SmtpServer
) -> None:
    """budget_amount = 16.60 is the budget the alert names, not its credits priced back."""
    reports = (
        '[[reports]]\nname = "studio"\ntitle = "Studio"\nowners = ["lead@company.com"]\n'
        f"group_ids = [20]\nbudget_amount = 16.6\nalert_thresholds = [50]\n{PRICES}"
    )
    sent = watch(tmp_path, api, smtp, reports)
    credits = sum(
        (
            Decimal("16.6") / 30 / price_on(dt.date(2026, 11, 1) + dt.timedelta(days=n))
            for n in range(30)
        ),
        Decimal(0),
    )
    text = body(sent["message"], "plain")
    assert f"of a budget of {credits:,.0f}" in text
    assert "Amount: €12.45 of €16.60" in text
    assert "€12.45 of €16.60" in chat_text(sent["chat"]["teams"])


def test_without_a_price_an_alert_shows_credits_only(
    tmp_path: Path, api: SandboxServer, smtp: SmtpServer
) -> None:
    reports = (
        '[[reports]]\nname = "studio"\ntitle = "Studio"\nowners = ["lead@company.com"]\n'
        f"group_ids = [20]\nbudget_credits = {BUDGET}\nalert_thresholds = [50]\n"
    )
    sent = watch(tmp_path, api, smtp, reports)
    for kind in ("plain", "html"):
        assert "€" not in body(sent["message"], kind)
        assert "Amount" not in body(sent["message"], kind)
    for payload in sent["chat"].values():
        assert "€" not in chat_text(payload)
