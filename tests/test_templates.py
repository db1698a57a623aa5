"""What the templates say: the attachment the email names, the budget card's colour."""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import email
import email.policy
import io
import re
import subprocess
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from PIL import Image
from pydantic import SecretStr

from reporter.cli import cli
from reporter.config import parse_config
from reporter.environment import ApiSettings
from reporter.errors import RenderError
from reporter.files import default_templates_dir
from reporter.jobs import RunOptions, fetch_tables
from reporter.magnific import MagnificClient
from reporter.periods import parse_period
from reporter.printer import html_to_pdf
from reporter.render import Formatter, render_template, solid, translations
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


TRACK_MM = 10.0  # report.html.j2: the share cell's track, its second background
MIN_FILL_MM = 0.4  # report.html.j2: the narrowest fill, so a tiny share still shows a bar


def _bars(html: str, heading: str) -> dict[str, float]:
    """Each row's label and its bar's fill (percent of its 10 mm track; the fill is the
    share cell's first background, as wide as its first background size) in the table
    after ``heading``."""
    section = html.split(f"<h2>{heading}</h2>", 1)[1].split("</table>", 1)[0]
    body = section.split("<tbody>", 1)[1]
    rows = re.findall(
        r'<th scope="row"[^>]*>([^<]+)</th>(?:(?!</tr>).)*?'
        r'<td class="num share" style="[^"]*background-size: ([\d.]+)mm 2.6mm, '
        rf"{TRACK_MM:g}mm 2.6mm",
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
    # A bar is never drawn thinner than MIN_FILL_MM, however small its row.
    floor = 100 * MIN_FILL_MM / TRACK_MM
    assert bars == pytest.approx(
        {tool: max(100 * credits / largest, floor) for tool, credits in per_tool.items()},
        abs=0.06,
    )
    assert max(bars.values()) == 100.0
    users = _bars(html, "Top users")
    assert users, "the users table has bars"
    assert all("@" in label for label in users), users  # named users only
    assert max(users.values()) == 100.0
    assert list(users.values()) == sorted(users.values(), reverse=True)
    others = html.split("<h2>Top users</h2>", 1)[1].split("</table>", 1)[0]
    assert others.count('<td class="num share">') == 2  # no bar: everyone else, unattributed
    # The page has two charts left: the tables carry their own bars.
    assert html.count("<figure") == 2


def test_solid_is_a_one_pixel_png_of_its_colour_and_refuses_what_is_not_a_colour() -> None:
    url = solid("#88CCEE")
    assert url.startswith("data:image/png;base64,")
    image = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
    assert image.size == (1, 1)
    assert image.convert("RGB").getpixel((0, 0)) == (0x88, 0xCC, 0xEE)
    with pytest.raises(RenderError, match="not a colour: 'var"):
        solid("var(--accent)")


MM = 72 / 25.4  # PDF points, and pixels at 72 dpi, per millimetre


def test_the_printed_bars_are_as_long_as_the_page_says(
    october: ReportTables, tmp_path: Path
) -> None:
    """Read off the printed page: 14 mm left of where each share in the tool table ends
    (its 12 mm and a 2 mm gap) ends a 10 mm track, filled from its left in the tool's
    colour as far as _bars says."""
    html = render_template(default_templates_dir(), "report.html.j2", "en", _context(october))
    pdf = tmp_path / "report.pdf"
    pdf.write_bytes(html_to_pdf(html, templates_dir=default_templates_dir()))
    boxes = subprocess.run(
        ["pdftotext", "-bbox", str(pdf), "-"], capture_output=True, text=True, check=True
    ).stdout
    subprocess.run(["pdftoppm", "-r", "72", "-png", str(pdf), str(tmp_path / "page")], check=True)
    bars = _bars(html, "Credits by tool")
    tools = {row["label"]: row for row in _context(october)["tools"]}
    pages = boxes.split("<page ")[1:]
    checked = 0
    for number, page in enumerate(pages, start=1):
        image = Image.open(tmp_path / f"page-{number}.png").convert("RGB")
        for label, percent in bars.items():
            share = Formatter("en").share(tools[label]["share"])
            words = re.findall(
                rf'<word xMin="[\d.]+" yMin="([\d.]+)" xMax="([\d.]+)" yMax="([\d.]+)">'
                rf"{re.escape(share)}</word>",
                page,
            )
            rows = [w for w in words if _row_of(page, w, label)]
            if not rows:
                continue
            y_min, x_max, y_max = (float(v) for v in rows[0])
            track_end = x_max - 14 * MM
            middle = (y_min + y_max) / 2
            fill_end = track_end - TRACK_MM * MM + TRACK_MM * MM * percent / 100
            tool = tuple(int(tools[label]["colour"][i : i + 2], 16) for i in (1, 3, 5))
            assert _pixel(image, fill_end - 1.5, middle) == tool, label  # just inside the fill
            if percent < 90:
                assert _pixel(image, fill_end + 2, middle) == (0xF5, 0xF6, 0xFA), label  # track
            assert _pixel(image, track_end + 2, middle) == (255, 255, 255), label  # the gap
            checked += 1
    assert checked == len(bars) >= 5


def _pixel(image: Image.Image, x: float, y: float) -> Any:
    return image.getpixel((round(x), round(y)))


def _row_of(page: str, word: tuple[str, str, str], label: str) -> bool:
    """Whether the word at ``word`` (yMin, xMax, yMax) is on the line that starts with
    ``label``'s first word."""
    first = re.escape(label.split(maxsplit=1)[0])
    return any(
        abs(float(y) - float(word[0])) < 1
        for y in re.findall(rf'<word xMin="[\d.]+" yMin="([\d.]+)"[^>]*>{first}</word>', page)
    )
