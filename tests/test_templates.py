"""What the templates say: the attachment the email names, the budget card's colour."""

from __future__ import annotations

import dataclasses
import datetime as dt
import email
import email.policy
import re
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from pydantic import SecretStr

from reporter.cli import cli
from reporter.config import parse_config
from reporter.environment import ApiSettings
from reporter.files import default_templates_dir
from reporter.jobs import RunOptions, fetch_tables
from reporter.magnific import MagnificClient
from reporter.periods import parse_period
from reporter.render import render_template, translations
from reporter.report import Figure, Source, build_context
from reporter.sandbox import SandboxServer
from reporter.usage import ReportTables, budget_status
from tests.conftest import API_KEY, TODAY, raw_usage, write_config

NOW = dt.datetime(2026, 11, 25, 6, 0, tzinfo=dt.UTC)
OCTOBER = parse_period("2026-10", today=TODAY)
CONFIG = parse_config(
    {
        "email": {"from": "reports@company.com"},
        "reports": [{"name": "marketing", "owners": ["manager@company.com"]}],
    },
    source="test",
)


def test_the_email_names_the_pdf_by_the_name_it_is_attached_under(
    tmp_path: Path, api: SandboxServer
) -> None:
    config = write_config(
        tmp_path / "c.toml", '[[reports]]\nname = "marketing"\nowners = ["m@company.com"]\n'
    )
    args = ["--config", str(config), "--period", "2026-10", "--out", str(tmp_path), "--dry-run"]
    result = CliRunner().invoke(
        cli,
        ["run", *args],
        env={"MAGNIFIC_API_KEY": API_KEY, "MAGNIFIC_API_BASE_URL": api.url},
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    raw = (tmp_path / "2026-10" / "marketing.eml").read_bytes()
    message = email.message_from_bytes(raw, policy=email.policy.SMTP)
    assert isinstance(message, EmailMessage)
    (pdf,) = [
        part.get_filename()
        for part in message.iter_attachments()
        if part.get_content_type() == "application/pdf"
    ]
    assert pdf == "marketing-2026-10.pdf"
    for kind in ("plain", "html"):
        body = message.get_body((kind,))
        assert body is not None
        text = body.get_content()
        assert f"The full report is attached: {pdf}." in text
        assert "marketing.pdf" not in text


# --- the budget card -----------------------------------------------------------


@pytest.fixture
def october(api: SandboxServer) -> ReportTables:
    """The stand-in team's October, through the same fetch and aggregation a run uses."""
    options = RunOptions(OCTOBER, Path("unused"), default_templates_dir(), NOW)
    settings = ApiSettings(key=SecretStr(API_KEY), base_url=api.url)
    with MagnificClient(settings) as client:
        return fetch_tables(client, CONFIG.reports[0], CONFIG, options)


def _with_budget(tables: ReportTables, used_pct: float) -> ReportTables:
    """The same month against a budget that it uses ``used_pct`` percent of."""
    used = tables.totals.credits
    limit = used * 100 / used_pct
    return dataclasses.replace(tables, budget=budget_status(used, limit, OCTOBER, TODAY))


def _context(tables: ReportTables) -> dict[str, Any]:
    catalog = translations(default_templates_dir(), "en")
    return build_context(
        CONFIG.reports[0],
        tables,
        [],
        dict.fromkeys(["daily", "history"], Figure("data:,", "a chart")),
        locale="en",
        gettext=catalog.gettext,
        ngettext=catalog.ngettext,
        source=Source(api_url="http://127.0.0.1/", filters={}, fetched_at=NOW),
        generated_at=NOW,
    )


def _card_classes(html: str) -> set[str]:
    (classes,) = re.findall(r'<div class="(card budget[^"]*)"', html)
    return set(classes.split())


def _css_colour(rule_selector: str) -> str:
    """The colour report.css gives ``rule_selector``, with its custom property resolved."""
    css = (default_templates_dir() / "report.css").read_text(encoding="utf-8")
    variables = dict(re.findall(r"(--[\w-]+):\s*([^;]+);", css))
    for selectors, body in re.findall(r"([^{}]+)\{([^}]*)\}", css):
        if rule_selector in [s.strip() for s in selectors.split(",")]:
            colour = re.search(r"(?<![-\w])color:\s*([^;]+);", body)
            assert colour, f"{rule_selector} sets no colour"
            value = colour.group(1).strip()
            return variables.get(value.removeprefix("var(").removesuffix(")"), value).strip()
    raise AssertionError(f"report.css has no rule for {rule_selector}")


@pytest.mark.parametrize(
    ("used_pct", "level", "email_colour"),
    [
        (89, "green", "#117733"),
        (90, "amber", "#b45309"),
        (100, "amber", "#b45309"),
        (101, "red", "#b42318"),
    ],
)
def test_budget_card_is_green_below_90_amber_from_90_and_red_past_100(
    october: ReportTables, used_pct: float, level: str, email_colour: str
) -> None:
    context = _context(_with_budget(october, used_pct))
    html = render_template(default_templates_dir(), "report.html.j2", "en", context)
    assert _card_classes(html) & {"green", "amber", "red"} == {level}
    assert _css_colour(f".card.budget.{level} .figure") == email_colour
    mail = render_template(
        default_templates_dir(),
        "email.html.j2",
        "en",
        {
            "subject": "s",
            "reports": [
                {
                    **context,
                    "chart_cid": None,
                    "pdf_name": "marketing-2026-10.pdf",
                    "csv_name": "marketing.csv",
                    "csv_rows": 1,
                    "csv_attached": True,
                }
            ],
        },
    )
    (shown,) = re.findall(r"color:(#[0-9a-f]{6});\">" + re.escape(f"{used_pct}"), mail)
    assert shown == email_colour


# --- in-table bars ---------------------------------------------------------------


TRACK_MM = 15.0  # report.css: table.data .bar's width


def _bars(html: str, heading: str) -> dict[str, float]:
    """Each row's label and its bar's fill (percent of its 15 mm track, the fill being the
    track's left border) in the table after ``heading``."""
    section = html.split(f"<h2>{heading}</h2>", 1)[1].split("</table>", 1)[0]
    body = section.split("<tbody>", 1)[1]
    rows = re.findall(
        r'<th scope="row"[^>]*>(?:<span class="swatch"[^>]*></span>)?([^<]+)</th>.*?'
        r'<span class="bar" style="border-left: ([\d.]+)mm solid [^"]+"',
        body,
    )
    return {label: 100 * float(mm) / TRACK_MM for label, mm in rows}


def test_each_named_row_has_a_bar_as_long_as_its_credits_against_the_largest(
    october: ReportTables, api: SandboxServer
) -> None:
    """The bar charts beside the tool and user tables became bars in the tables: each
    named row's bar against the longest, the largest named row's; "everyone else" and
    unattributed usage, which the charts never drew, get none."""
    html = render_template(default_templates_dir(), "report.html.j2", "en", _context(october))
    month = {"start_date": "2026-10-01", "end_date": "2026-10-31", "granularity": "month"}
    payload = raw_usage(api, month)
    per_tool: dict[str, float] = {}
    for bucket in payload["data"]:
        for usage in bucket["consumptions"]:
            per_tool[usage["tool"]] = per_tool.get(usage["tool"], 0.0) + usage["user_credits"]
    largest = max(per_tool.values())
    bars = _bars(html, "Credits by tool")
    assert bars == pytest.approx(
        {tool: 100 * credits / largest for tool, credits in per_tool.items()}, abs=0.06
    )
    assert max(bars.values()) == 100.0
    users = _bars(html, "Top users")
    assert users, "the users table has bars"
    assert all("@" in label for label in users), users  # named users only
    assert max(users.values()) == 100.0
    assert list(users.values()) == sorted(users.values(), reverse=True)
    others = html.split("<h2>Top users</h2>", 1)[1].split("</table>", 1)[0]
    assert others.count('<span class="bar none"></span>') == 2  # everyone else, unattributed
    # The page has two charts left: the tables carry their own bars.
    assert html.count("<figure") == 2
