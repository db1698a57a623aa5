"""A period in progress compares like with like (issue 16).

Each case runs the whole pipeline on a fixed day against the stand-in API and
checks the PDF and the email against sums taken straight from the API's JSON:
the period so far against the same days of the earlier periods, the month-end
forecast against the whole previous period, and never a part against a whole.
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

import pandas as pd
import pytest
from babel import numbers
from pydantic import SecretStr

from reporter.charts import ChartLabels, history_spec, render_svg
from reporter.config import load_config
from reporter.environment import ApiSettings
from reporter.files import default_templates_dir
from reporter.jobs import RunOptions, run
from reporter.magnific import MagnificClient
from reporter.periods import Period, matching_span, parse_period
from reporter.sandbox import SandboxData, SandboxServer, synthetic_team
from tests.conftest import API_KEY, pdf_rows, pdf_text, raw_usage, write_config

TEAM = """
[[reports]]
name = "team"
title = "Whole Team"
owners = ["cto@company.com"]
"""

D = dt.date


@dataclass(frozen=True)
class Case:
    """A period seen on a fixed day, with what a reader should find, written out by hand."""

    period: str
    today: dt.date
    start: dt.date
    days: int  # complete days so far: the span every comparison uses
    earlier: tuple[dt.date, ...]  # starts of the five earlier periods, oldest first
    previous_end: dt.date  # end of the whole previous period, for the forecast
    total_days: int
    span_label: dict[str, str]  # the previous period's matching days, per locale
    previous_name: dict[str, str]  # the whole previous period, per locale


MONTH = Case(
    "2026-11",
    D(2026, 11, 25),
    D(2026, 11, 1),
    24,
    (D(2026, 6, 1), D(2026, 7, 1), D(2026, 8, 1), D(2026, 9, 1), D(2026, 10, 1)),
    D(2026, 10, 31),
    30,
    {"en": "vs Oct 1 – 24", "es": "frente al 1–24 oct"},
    {"en": "October 2026", "es": "octubre de 2026"},
)
WEEK = Case(  # seen on a Thursday: Monday to Wednesday are complete
    "2026-W47",
    D(2026, 11, 19),
    D(2026, 11, 16),
    3,
    (D(2026, 10, 12), D(2026, 10, 19), D(2026, 10, 26), D(2026, 11, 2), D(2026, 11, 9)),
    D(2026, 11, 15),
    7,
    {"en": "vs Nov 9 – 11", "es": "frente al 9–11 nov"},
    {"en": "Week 46, 2026", "es": "Semana 46 de 2026"},
)
QUARTER = Case(  # Oct 1 to Nov 24 is 55 days; Q3's first 55 run to Aug 24
    "2026-Q4",
    D(2026, 11, 25),
    D(2026, 10, 1),
    55,
    (D(2025, 7, 1), D(2025, 10, 1), D(2026, 1, 1), D(2026, 4, 1), D(2026, 7, 1)),
    D(2026, 9, 30),
    92,
    {"en": "vs Jul 1 – Aug 24", "es": "frente al 1 jul – 24 ago"},
    {"en": "Q3 2026", "es": "T3 2026"},
)

WORDS = {
    "en": {
        "forecast": "forecast {n}, {change} vs {whole}",
        "usual": "average {n} credits in the first {days} days of earlier periods",
        "rose": "Credits rose {pct} to {credits} against {span}.",
        "fell": "Credits fell {pct} to {credits} against {span}.",
        "span": "vs ",
        "opening": ("Credits rose", "Credits fell"),
        "versus": ("vs ", "against "),
        "ends": "At this pace the period ends at {n} credits, {change} against {whole}.",
        "chart": "In progress: the last period so far (lighter) and its forecast (dashed)",
    },
    "es": {
        "forecast": "previsión {n}, {change} frente a {whole}",
        "usual": "media de {n} créditos en los primeros {days} días de periodos anteriores",
        "rose": "Los créditos subieron un {pct} hasta {credits} frente al {span}.",
        "fell": "Los créditos bajaron un {pct} hasta {credits} frente al {span}.",
        "span": "frente al ",
        "opening": ("Los créditos subieron", "Los créditos bajaron"),
        "versus": ("frente a ",),
        "ends": "A este ritmo el periodo acabará en {n} créditos, {change} frente a {whole}.",
        "chart": "En curso: el último periodo hasta ahora (más claro) y su previsión (discontinua)",
    },
}


def folded(text: str) -> str:
    """White space as ``pdf_text`` leaves it (Babel puts thin spaces around range dashes)."""
    return " ".join(text.split())


def number(value: float, locale: str) -> str:
    return numbers.format_decimal(round(value), format="#,##0", locale=locale)


def share(value: float, locale: str) -> str:
    return numbers.format_percent(abs(value) / 100, format="#,##0.0%", locale=locale)


def change(value: float | None, locale: str) -> str:
    if value is None:
        return "–"
    if round(value, 1) == 0:
        return share(value, locale)
    return ("+" if value > 0 else "\u2212") + share(value, locale)


def pct(current: float, before: float) -> float | None:
    return (current - before) / before * 100 if before > 0 else None


@dataclass
class Expected:
    """Every like-for-like figure, summed from the API's own JSON with no pandas."""

    credits: float
    previous: float  # the previous period's matching days
    usual: float  # mean of the earlier periods' matching days
    forecast: float
    previous_whole: float
    by_tool: dict[str, tuple[float, float]]  # tool -> (so far, previous matching days)
    part_to_whole: float  # the old, wrong change: so far against the whole previous period


def credits_by_tool(api: SandboxServer, start: dt.date, end: dt.date) -> dict[str, float]:
    payload = raw_usage(
        api, {"granularity": "day", "start_date": start.isoformat(), "end_date": end.isoformat()}
    )
    out: dict[str, float] = {}
    for bucket in payload["data"]:
        for consumption in bucket["consumptions"]:
            tool = consumption["tool"]
            out[tool] = out.get(tool, 0.0) + consumption["user_credits"]
    return out


def expected(api: SandboxServer, case: Case) -> Expected:
    def span(start: dt.date) -> tuple[dt.date, dt.date]:
        return start, start + dt.timedelta(days=case.days - 1)

    now = credits_by_tool(api, *span(case.start))
    before = credits_by_tool(api, *span(case.earlier[-1]))
    usual = [sum(credits_by_tool(api, *span(start)).values()) for start in case.earlier]
    whole = sum(credits_by_tool(api, case.earlier[-1], case.previous_end).values())
    total = sum(now.values())
    assert all(usual), "every earlier period of the stand-in has usage"
    return Expected(
        credits=total,
        previous=sum(before.values()),
        usual=sum(usual) / len(usual),
        forecast=total / case.days * case.total_days,
        previous_whole=whole,
        by_tool={tool: (now.get(tool, 0.0), before.get(tool, 0.0)) for tool in now},
        part_to_whole=(total - whole) / whole * 100,
    )


@dataclass
class Built:
    pdf: str
    rows: list[str]
    mail_text: str
    mail_html: str


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[dt.date, SandboxServer]]:
    """One stand-in API per fixed day (its data stops the day before, as the real one)."""
    days = {MONTH.today, WEEK.today}
    started = {
        day: SandboxServer(
            SandboxData(synthetic_team(users=48, seed=7), today=day), api_key=API_KEY
        )
        for day in days
    }
    for server in started.values():
        server.start()
    try:
        yield started
    finally:
        for server in started.values():
            server.stop()


def build(tmp_path: Path, api: SandboxServer, period: str, today: dt.date, locale: str) -> Built:
    """``reporter run --dry-run`` as the CLI does it, with the clock passed in."""
    config = load_config(write_config(tmp_path / "c.toml", TEAM + f'locale = "{locale}"\n'))
    the_period = parse_period(period, today=today)
    options = RunOptions(
        period=the_period,
        out_dir=tmp_path,
        templates_dir=default_templates_dir(),
        now=dt.datetime.combine(today, dt.time(9, 30), tzinfo=dt.UTC),
        dry_run=True,
        api_url=api.url,
    )
    with MagnificClient(ApiSettings(SecretStr(API_KEY), api.url)) as client:
        outcomes = run(config, config.reports, options, client=client, sender=None, ledger=None)
    assert [o.status for o in outcomes] == ["written"], outcomes
    folder = tmp_path / the_period.key
    message = email.message_from_bytes(
        (folder / "team.eml").read_bytes(), policy=email.policy.default
    )
    assert isinstance(message, EmailMessage)
    text_part, html_part = message.get_body(("plain",)), message.get_body(("html",))
    assert text_part is not None
    assert html_part is not None
    return Built(
        pdf=pdf_text(folder / "team.pdf"),
        rows=pdf_rows(folder / "team.pdf"),
        mail_text=folded(text_part.get_content()),
        mail_html=folded(html_part.get_content()),
    )


@pytest.mark.parametrize("locale", ["en", "es"])
@pytest.mark.parametrize("case", [MONTH, WEEK, QUARTER], ids=["month", "week", "quarter"])
def test_a_period_in_progress_states_only_like_for_like_changes(
    tmp_path: Path, servers: dict[dt.date, SandboxServer], case: Case, locale: str
) -> None:
    api = servers[case.today]
    want = expected(api, case)
    got = build(tmp_path, api, case.period, case.today, locale)
    words = WORDS[locale]
    span = folded(case.span_label[locale])
    headline = f"{change(pct(want.credits, want.previous), locale)} {span}"
    forecast = words["forecast"].format(
        n=number(want.forecast, locale),
        change=change(pct(want.forecast, want.previous_whole), locale),
        whole=case.previous_name[locale],
    )
    ends = words["ends"].format(
        n=number(want.forecast, locale),
        change=change(pct(want.forecast, want.previous_whole), locale),
        whole=case.previous_name[locale],
    )
    rising = want.credits >= want.previous
    sentence = words["rose" if rising else "fell"].format(
        pct=share(pct(want.credits, want.previous) or 0, locale),
        credits=number(want.credits, locale),
        span=span.removeprefix(words["span"]),
    )

    # The headline card: so far against the same days, and the forecast against the whole.
    assert number(want.credits, locale) in got.pdf
    assert headline in got.pdf
    assert forecast in got.pdf
    # "The usual": the same days of the five earlier periods.
    assert change(pct(want.credits, want.usual), locale) in got.pdf
    assert words["usual"].format(n=number(want.usual, locale), days=case.days) in got.pdf
    # The "what changed" sentences say what they compare. The total's is listed when it
    # moved 10% or more (a smaller move may give way to other facts), the forecast's always.
    moved = abs(pct(want.credits, want.previous) or 0) >= 10
    assert sentence in got.pdf or not moved
    for opening in words["opening"]:
        assert got.pdf.count(opening) == got.pdf.count(sentence) * sentence.startswith(opening)
    assert ends in got.pdf
    # Each tool's change, on its own row of the table (not a "what changed" sentence,
    # whose volume/unit-cost split also has percentages, after a colon).
    for tool, (now, before) in want.by_tool.items():
        row = next(
            r for r in got.rows if r.startswith(f"{tool} ") and r.count("%") >= 2 and ":" not in r
        )
        assert row.endswith(change(pct(now, before), locale)), (tool, row)
    # The table headers name the span too (upper-cased by the stylesheet).
    assert span.upper() in got.pdf
    # The email says the same, in both its parts.
    for mail in (got.mail_text, got.mail_html):
        assert headline in mail
        assert forecast in mail
        assert sentence in mail or not moved
        assert ends in mail
    # Nowhere a part against a whole: the old figure is gone, and the whole previous
    # period is named only beside the forecast.
    for text in (got.pdf, got.mail_text, got.mail_html):
        assert change(want.part_to_whole, locale) not in text
        against_whole = sum(text.count(w + case.previous_name[locale]) for w in words["versus"])
        assert against_whole == text.count(forecast) + text.count(ends)
        assert "previous period" not in text
        assert "periodo anterior" not in text


@pytest.mark.parametrize("locale", ["en", "es"])
def test_the_history_chart_marks_the_period_in_progress(
    tmp_path: Path, servers: dict[dt.date, SandboxServer], locale: str
) -> None:
    api = servers[MONTH.today]
    got = build(tmp_path, api, MONTH.period, MONTH.today, locale)
    assert WORDS[locale]["chart"] in got.pdf


def test_a_complete_period_keeps_its_whole_period_comparisons(
    tmp_path: Path, servers: dict[dt.date, SandboxServer]
) -> None:
    api = servers[MONTH.today]
    got = build(tmp_path, api, "2026-10", MONTH.today, "en")
    october = sum(credits_by_tool(api, D(2026, 10, 1), D(2026, 10, 31)).values())
    september = sum(credits_by_tool(api, D(2026, 9, 1), D(2026, 9, 30)).values())
    months = [
        sum(credits_by_tool(api, start, end).values())
        for start, end in [
            (D(2026, 5, 1), D(2026, 5, 31)),
            (D(2026, 6, 1), D(2026, 6, 30)),
            (D(2026, 7, 1), D(2026, 7, 31)),
            (D(2026, 8, 1), D(2026, 8, 31)),
            (D(2026, 9, 1), D(2026, 9, 30)),
        ]
    ]
    usual = sum(months) / len(months)
    assert f"{change(pct(october, september), 'en')} vs September 2026" in got.pdf
    assert change(pct(october, usual), "en") in got.pdf
    assert f"average {number(usual, 'en')} credits per period" in got.pdf
    assert "against the previous period." in got.pdf
    assert "forecast" not in got.pdf.lower()
    assert "in progress" not in got.pdf.lower()


# --- the matching span, on its own --------------------------------------------


def period(text: str) -> Period:
    return parse_period(text, today=D(2030, 1, 1))


@pytest.mark.parametrize(
    ("current", "earlier", "through", "span"),
    [
        ("2026-11", "2026-10", D(2026, 11, 24), (D(2026, 10, 1), D(2026, 10, 24))),
        ("2026-11", "2026-06", D(2026, 11, 24), (D(2026, 6, 1), D(2026, 6, 24))),
        # Monday to Wednesday against Monday to Wednesday, across a year end.
        ("2027-W01", "2026-W53", D(2027, 1, 6), (D(2026, 12, 28), D(2026, 12, 30))),
        ("2026-Q4", "2026-Q3", D(2026, 11, 24), (D(2026, 7, 1), D(2026, 8, 24))),
        ("2026", "2025", D(2026, 11, 24), (D(2025, 1, 1), D(2025, 11, 24))),
        # Clamped to the earlier period's end: March's 30 days against all of February.
        ("2026-03", "2026-02", D(2026, 3, 30), (D(2026, 2, 1), D(2026, 2, 28))),
        # A leap year's first 365 days: all of the year before.
        ("2028", "2027", D(2028, 12, 30), (D(2027, 1, 1), D(2027, 12, 31))),
    ],
)
def test_matching_span(
    current: str, earlier: str, through: dt.date, span: tuple[dt.date, dt.date]
) -> None:
    assert matching_span(period(current), period(earlier), through) == span


def test_the_history_spec_draws_the_period_in_progress_lighter_with_its_forecast() -> None:
    labels = ChartLabels(*["x"] * 7, in_progress="so far, and forecast")
    history = pd.DataFrame(
        {"period": ["2026-10", "2026-11"], "tool": ["A", "A"], "credits": [90.0, 40.0]}
    )
    args = (history, ["A"], ["2026-10", "2026-11"], ["Oct", "Nov"], labels)
    spec = history_spec(*args, in_progress=True, forecast=120.0)
    bars, outline, value = spec["layer"]
    assert bars["encoding"]["opacity"]["condition"] == {
        "test": 'datum.label === "Nov"',
        "value": 0.4,
    }
    assert outline["data"]["values"] == [{"label": "Nov", "forecast": 120.0}]
    assert outline["mark"]["strokeDash"] == [4, 3]
    assert value["encoding"]["text"]["field"] == "forecast"
    assert spec["title"]["subtitle"] == "so far, and forecast"
    svg = render_svg(spec, "en")
    assert "stroke-dasharray" in svg
    assert ">120</text>" in svg
    # A complete period: one plain layer of full bars, no note.
    whole = history_spec(*args)
    assert "layer" not in whole
    assert whole["title"] == "x"
