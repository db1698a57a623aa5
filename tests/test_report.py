"""The report's content: every period kind, locales, budget, scale, PDF variants, no network."""

from __future__ import annotations

import datetime as dt
import email
import re
import subprocess
from email.policy import SMTP
from pathlib import Path
from typing import Any

import pytest
from babel.messages.extract import extract_from_dir
from click.testing import CliRunner

from reporter.cli import cli
from reporter.files import default_templates_dir
from reporter.periods import parse_period
from reporter.printer import html_to_pdf
from reporter.render import translations
from reporter.sandbox import SandboxData, SandboxServer, synthetic_team
from tests.conftest import (
    API_KEY,
    TODAY,
    WebServer,
    pdf_rows,
    pdf_text,
    raw_usage,
    total_credits,
    write_config,
)

TEAM = """
[[reports]]
name = "team"
title = "Whole Team"
owners = ["cto@company.com"]
"""


def run(
    tmp_path: Path,
    api: SandboxServer,
    period: str,
    *extra: str,
    reports: str = TEAM,
    env: dict[str, str] | None = None,
) -> Path:
    config = write_config(tmp_path / "c.toml", reports)
    result = CliRunner().invoke(
        cli,
        [
            "run",
            "--config",
            str(config),
            "--period",
            period,
            "--out",
            str(tmp_path),
            "--dry-run",
            *extra,
        ],
        env={"MAGNIFIC_API_KEY": API_KEY, "MAGNIFIC_API_BASE_URL": api.url, **(env or {})},
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.stderr
    return tmp_path / parse_period(period, today=TODAY).key


def credits_between(api: SandboxServer, start: dt.date, end: dt.date) -> int:
    return total_credits(
        raw_usage(
            api,
            {"granularity": "day", "start_date": start.isoformat(), "end_date": end.isoformat()},
        )
    )


@pytest.mark.parametrize(
    ("period", "label", "previous_label"),
    [
        ("2026-10", "October 2026", "September 2026"),
        ("2026-W43", "Week 43, 2026", "Week 42, 2026"),
        ("2026-Q3", "Q3 2026", "Q2 2026"),
        ("2025", "2025", "2024"),
    ],
)
def test_each_period_kind_shows_its_total_and_change(
    tmp_path: Path, api: SandboxServer, period: str, label: str, previous_label: str
) -> None:
    folder = run(tmp_path, api, period)
    the_period = parse_period(period, today=TODAY)
    before = the_period.previous()
    total = credits_between(api, the_period.start, the_period.end)
    previous = credits_between(api, before.start, before.end)
    text = pdf_text(folder / "team.pdf")
    assert label in text
    assert f"{total:,}" in text
    change = (total - previous) / previous * 100
    sign = "+" if change > 0 else "\u2212"
    assert f"{sign}{abs(change):.1f}% vs {previous_label}" in text


def test_history_chart_and_tables_cover_six_periods(tmp_path: Path, api: SandboxServer) -> None:
    folder = run(tmp_path, api, "2026-Q3")
    text = pdf_text(folder / "team.pdf")
    for quarter in ("Q2 2025", "Q3 2025", "Q4 2025", "Q1 2026", "Q2 2026", "Q3 2026"):
        assert quarter in text


def test_charts_are_drawn_in_the_typeface_they_were_measured_in(
    tmp_path: Path, api: SandboxServer
) -> None:
    """vl-convert lays out each label with its bundled Liberation Sans; the PDF must draw
    the charts' text in that font (shipped in templates/fonts), not fall back to another
    whose wider glyphs would overrun the measured layout. The page's own text is DejaVu."""
    folder = run(tmp_path, api, "2026-10")
    fonts = subprocess.run(
        ["pdffonts", str(folder / "team.pdf")], capture_output=True, text=True, check=True
    ).stdout
    embedded = {line.split()[0].split("+")[-1] for line in fonts.splitlines()[2:]}
    assert {"Liberation-Sans", "Liberation-Sans-Bold", "DejaVu-Sans"} <= embedded


def test_spanish_report_end_to_end(tmp_path: Path, api: SandboxServer) -> None:
    folder = run(tmp_path, api, "2026-10", reports=TEAM + 'locale = "es"\n')
    total = credits_between(api, dt.date(2026, 10, 1), dt.date(2026, 10, 31))
    text = pdf_text(folder / "team.pdf")
    assert "CRÉDITOS USADOS" in text  # card labels are upper-cased by the stylesheet
    assert "Octubre de 2026" in text
    assert f"{total:,}".replace(",", ".") in text
    assert "Qué ha cambiado" in text
    assert "frente a septiembre de 2026" in text
    # A month is capitalised where it starts a heading, and lower case within a sentence.
    message = email.message_from_bytes((folder / "team.eml").read_bytes(), policy=SMTP)
    assert str(message["Subject"]).endswith("— uso de créditos, octubre de 2026")
    plain = message.get_body(("plain",))
    assert plain is not None
    assert "Uso de créditos de la API de Magnific, octubre de 2026" in plain.get_content()
    assert "Octubre de 2026" not in plain.get_content()


def test_spanish_catalogue_translates_every_message() -> None:
    """Every string the code and templates mark for translation has a Spanish text."""
    root = Path(__file__).parent.parent
    method_map = [("reporter/**.py", "python"), ("templates/**.j2", "jinja2")]
    catalog = translations(default_templates_dir(), "es")
    found = {
        message if isinstance(message, str) else message[0]
        for _, _, message, *_ in extract_from_dir(
            str(root), method_map, keywords={"_": None, "gettext": None, "ngettext": (1, 2)}
        )
    }
    assert len(found) > 60
    untranslated = sorted(m for m in found if catalog.gettext(m) == m and m not in {"Total"})
    assert untranslated == []


def test_budget_exceeded_is_stated_first(tmp_path: Path, api: SandboxServer) -> None:
    folder = run(tmp_path, api, "2026-10", reports=TEAM + "budget_credits = 100000\n")
    total = credits_between(api, dt.date(2026, 10, 1), dt.date(2026, 10, 31))
    rows = pdf_rows(folder / "team.pdf")
    alert = f"Budget exceeded: {total:,} credits used against a budget of 100,000."
    assert alert in rows
    changed = rows.index("What changed")
    assert rows[changed + 1].startswith(f"Over budget: {total:,} credits used of 100,000")


def test_budget_is_monthly_and_prorated_for_a_quarter(tmp_path: Path, api: SandboxServer) -> None:
    folder = run(tmp_path, api, "2026-Q3", reports=TEAM + "budget_credits = 1000000\n")
    total = credits_between(api, dt.date(2026, 7, 1), dt.date(2026, 9, 30))
    text = pdf_text(folder / "team.pdf")
    assert f"{total:,} of 3,000,000 credits" in text
    assert "Budget exceeded" not in text


def test_period_in_progress_forecasts_the_month_end(sandbox_data: SandboxData) -> None:
    """November 2026 seen on the 25th: 24 complete days, forecast = used / 24 * 30."""
    from reporter.magnific import parse_usage_response
    from reporter.sandbox import dumps
    from reporter.usage import build_tables, tidy_frame

    period = parse_period("2026-11", today=TODAY)

    def fetch(granularity: str, start: dt.date) -> Any:
        _, payload = sandbox_data.answer(
            {
                "granularity": granularity,
                "start_date": start.isoformat(),
                "end_date": period.end.isoformat(),
            }
        )
        return parse_usage_response(dumps(payload))

    detail = fetch("day", period.start)
    used = sum(c.user_credits for b in detail.data for c in b.consumptions)
    tables = build_tables(
        tidy_frame(detail),
        tidy_frame(fetch("month", dt.date(2026, 6, 1))),
        period,
        budget=used * 1.1,
        today=TODAY,
    )
    assert tables.budget is not None
    assert tables.budget.forecast == pytest.approx(used / 24 * 30)
    assert tables.budget.status == "at_risk"


def test_two_thousand_users_stay_readable(tmp_path: Path) -> None:
    data = SandboxData(synthetic_team(users=2000, seed=3), today=TODAY)
    with SandboxServer(data, api_key=API_KEY) as big:
        folder = run(tmp_path, big, "2026-10")
        october = raw_usage(
            big, {"granularity": "month", "start_date": "2026-10-01", "end_date": "2026-10-31"}
        )
    users = {
        u["user_email"]
        for b in october["data"]
        for c in b["consumptions"]
        for u in c.get("user_usages", [])
    }
    assert len(users) > 1000
    pages = subprocess.run(
        ["pdfinfo", str(folder / "team.pdf")], capture_output=True, text=True, check=True
    ).stdout
    assert (
        int(next(line.split()[-1] for line in pages.splitlines() if line.startswith("Pages:"))) <= 5
    )
    rows = pdf_rows(folder / "team.pdf")
    assert any(row.startswith(f"Everyone else ({len(users) - 10:,} users) ") for row in rows)
    assert f"{len(users):,} users used credits this period." in rows


def test_pdf_ua_is_the_default_and_tagged(tmp_path: Path, api: SandboxServer) -> None:
    folder = run(tmp_path, api, "2026-10")
    pdf = str(folder / "team.pdf")
    info = subprocess.run(["pdfinfo", pdf], capture_output=True, text=True, check=True).stdout
    meta = subprocess.run(
        ["pdfinfo", "-meta", pdf], capture_output=True, text=True, check=True
    ).stdout
    assert "Tagged:          yes" in info
    assert "pdfuaid:part" in meta


def test_pdf_a3b_embeds_the_csv(tmp_path: Path, api: SandboxServer) -> None:
    folder = run(tmp_path, api, "2026-10", "--pdf-variant", "pdf/a-3b")
    pdf = folder / "team.pdf"
    info = subprocess.run(
        ["pdfinfo", "-meta", str(pdf)], capture_output=True, text=True, check=True
    ).stdout
    assert "pdfaid:part" in info
    listing = subprocess.run(
        ["pdfdetach", "-list", str(pdf)], capture_output=True, text=True, check=True
    ).stdout
    assert "team-2026-10.csv" in listing
    subprocess.run(["pdfdetach", "-save", "1", "-o", str(tmp_path / "x.csv"), str(pdf)], check=True)
    assert (tmp_path / "x.csv").read_bytes() == (folder / "team.csv").read_bytes()


def test_footer_names_generation_time_and_page_numbers(tmp_path: Path, api: SandboxServer) -> None:
    folder = run(tmp_path, api, "2026-10")
    text = pdf_text(folder / "team.pdf")
    assert "Generated " in text
    assert " UTC · Whole Team · October 2026" in text
    assert re.search(r"\b1 ?/ ?\d\b", text)
    assert f"Source: Magnific API, POST {api.url}/v1/analytics/team-credit-usage" in text
    assert "Filters: none (the whole team)" in text


def test_renderer_fetches_no_url(tmp_path: Path, web: WebServer) -> None:
    """A template pointing at the network (or outside its folder) gets nothing fetched."""
    secret = tmp_path / "secret.png"
    secret.write_bytes(b"not for reports")
    html = (
        f'<img src="{web.url}/track.png" alt="x">'
        f'<link rel="stylesheet" href="{web.url}/x.css">'
        f'<img src="{secret.as_uri()}" alt="y"><p>hello</p>'
    )
    pdf = html_to_pdf(html, templates_dir=default_templates_dir())
    assert pdf.startswith(b"%PDF-")
    assert web.hits == []
