"""More use, or dearer use: credits per use in every table, and each stated change taken
apart into a volume effect and a unit-cost effect that add up to it, to the credit.

The team's usage is scripted with uses and credits set independently (a tool whose
uses grew, one whose uses cost more, one that appears, one that disappears, one with
credits but no uses); every expected figure is computed here from the stand-in's raw
JSON, and found in the PDF, both email parts and the Slack and Teams payloads."""

from __future__ import annotations

import datetime as dt
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from babel.numbers import format_decimal, format_percent
from click.testing import CliRunner

from reporter.chat.message import MAX_INSIGHTS
from reporter.cli import cli
from reporter.insights import (
    SPLIT_EXPLAINS_MOST,
    SPLIT_LINES,
    Insight,
    Split,
    _with_splits,
    split_change,
)
from reporter.sandbox import SandboxData, SandboxServer, synthetic_team
from reporter.usage import Row
from tests.conftest import API_KEY, pdf_rows, pdf_text, raw_usage, write_config

TEAM = synthetic_team(users=48, seed=7)
VIDEO, IMAGES, UPSCALER, AUDIO, ICONS, REMOVER = 1, 0, 2, 4, 5, 6
# (tool, uses, credits) for the whole of October and of November, put on their 1st day.
OCTOBER = [(VIDEO, 10000, 105000), (IMAGES, 2000, 80000), (UPSCALER, 500, 10000),
           (ICONS, 600, 30000), (REMOVER, 0, 2000)]  # fmt: skip
NOVEMBER = [(VIDEO, 11800, 148680), (IMAGES, 3000, 120900), (UPSCALER, 500, 30000),
            (AUDIO, 1000, 25000), (REMOVER, 0, 3000)]  # fmt: skip
CHANNELS = 'slack_webhook_env = "SLACK_URL"\nteams_webhook_env = "TEAMS_URL"'


@pytest.fixture(scope="module")
def stand_in() -> Iterator[SandboxServer]:
    data = SandboxData(TEAM, today=dt.date(2026, 12, 1))
    data.script_parts(
        20,
        {
            dt.date(2026, 10, 1): [(t, 0, c, u) for t, u, c in OCTOBER],
            dt.date(2026, 11, 1): [(t, 0, c, u) for t, u, c in NOVEMBER],
        },
    )
    with SandboxServer(data, api_key=API_KEY) as server:
        yield server


def by_tool(server: SandboxServer, month: str, last: int) -> dict[str, tuple[int, float]]:
    """tool -> (uses, credits) of the month, summed from the API's raw answer."""
    answer = raw_usage(
        server,
        {
            "granularity": "month",
            "start_date": f"{month}-01",
            "end_date": f"{month}-{last}",
            "group_ids": [20],
        },
    )
    sums: dict[str, tuple[int, float]] = {}
    for bucket in answer["data"]:
        for c in bucket["consumptions"]:
            uses, credits = sums.get(c["tool"], (0, 0.0))
            sums[c["tool"]] = (uses + c["user_uses"], credits + c["user_credits"])
    return sums


def number(value: float, digits: int = 0) -> str:
    pattern = "#,##0" + ("." + "0" * digits if digits else "")
    return format_decimal(round(value, digits) if digits else round(value), pattern, locale="en")


def share(value: float) -> str:
    return format_percent(value / 100, "#,##0.0%", locale="en")


def change(value: float) -> str:
    text = share(abs(value))
    return text if round(value, 1) == 0 else ("+" if value > 0 else "−") + text


@pytest.fixture(scope="module")
def run(stand_in: SandboxServer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("unit-cost")
    config = write_config(
        tmp / "reports.toml",
        '[[reports]]\nname = "studio"\ntitle = "Studio"\nowners = ["lead@company.com"]\n'
        "group_ids = [20]\n",
        defaults=CHANNELS,
    )
    env = {
        "MAGNIFIC_API_KEY": API_KEY,
        "MAGNIFIC_API_BASE_URL": stand_in.url,
        "SLACK_URL": "https://hooks.slack.com/services/T0/B0/x",
        "TEAMS_URL": "https://example.webhook.office.com/webhookb2/x",
    }
    args = ["run", "--config", str(config), "--period", "2026-11", "--dry-run"]
    args += ["--out", str(tmp / "out"), "-q"]
    result = CliRunner().invoke(cli, args, env=env)
    assert result.exit_code == 0, result.output
    return tmp / "out" / "2026-11"


def places(folder: Path) -> dict[str, str]:
    """Every text a reader gets: the PDF, both email parts, the Slack and Teams payloads."""
    import email
    import email.policy
    import html
    import re

    message = email.message_from_bytes(
        (folder / "studio.eml").read_bytes(), policy=email.policy.default
    )
    plain = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    page = message.get_body(("html",)).get_content()  # type: ignore[union-attr]
    (slack,) = folder.glob("*.slack.json")
    (teams,) = folder.glob("*.teams.json")
    return {
        "pdf": " ".join(pdf_text(folder / "studio.pdf").split()),
        "text": " ".join(plain.split()),
        "html": " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page)).split()),
        "slack": " ".join(html.unescape(json.loads(slack.read_text())["text"]).split()),
        "teams": " ".join(json.dumps(json.loads(teams.read_text()), ensure_ascii=False).split()),
    }


def expected_split(before: tuple[int, float], now: tuple[int, float]) -> tuple[str, float, float]:
    """The sentence's split clause, and the two effects, from uses and credits alone."""
    (old_uses, old_credits), (new_uses, new_credits) = before, now
    old, new = old_credits / old_uses, new_credits / new_uses
    volume = (new_uses - old_uses) * old
    unit_cost = (new - old) * new_uses
    uses_pct = (new_uses - old_uses) / old_uses * 100
    cost_pct = (new - old) / old * 100
    clause = (
        f"{share(abs(uses_pct))} {'more' if uses_pct >= 0 else 'fewer'} uses, and each use cost"
        f" {share(abs(cost_pct))} {'more' if cost_pct >= 0 else 'less'}"
        f" ({number(old, 1)} → {number(new, 1)} credits)"
    )
    return clause, volume, unit_cost


def test_each_stated_change_is_split_into_volume_and_unit_cost_everywhere(
    stand_in: SandboxServer, run: Path
) -> None:
    october, november = by_tool(stand_in, "2026-10", 31), by_tool(stand_in, "2026-11", 30)
    texts = places(run)
    for tool, lead in (("Video Generation", None), ("AI Image Models", "volume")):
        clause, volume, unit_cost = expected_split(october[tool], november[tool])
        assert round(volume + unit_cost, 6) == november[tool][1] - october[tool][1]
        grew = (november[tool][1] - october[tool][1]) / october[tool][1] * 100
        sentence = f"{tool} grew {share(grew)} to {number(november[tool][1])} credits: {clause}."
        if lead == "volume":
            sentence += f" Most of the change is in the number of uses (+{number(volume)} credits)."
        for place, text in texts.items():
            assert sentence in text, (place, sentence)
            if lead is None:
                assert f"{sentence} Most of the change" not in text, place
    # A tool gone since October is stated as such, without a split: sixth of the six
    # lines, so in the PDF and the email (chat shows the first five, MAX_INSIGHTS).
    gone = f"Icon Generator was not used this period ({number(october['Icon Generator'][1])}"
    gone += " credits before)."
    for place in ("pdf", "text", "html"):
        assert gone in texts[place], place
    assert MAX_INSIGHTS == 5
    for place in ("slack", "teams"):
        assert "Icon Generator" not in texts[place], place


def test_every_table_row_shows_its_credits_per_use_and_its_change(
    stand_in: SandboxServer, run: Path
) -> None:
    october, november = by_tool(stand_in, "2026-10", 31), by_tool(stand_in, "2026-11", 30)
    rows = [" ".join(r.split()) for r in pdf_rows(run / "studio.pdf")]
    for tool, (uses, credits) in november.items():
        row = next(r for r in rows if r.startswith(f"{tool} {number(uses)} {number(credits)} "))
        cells = row.removeprefix(f"{tool} {number(uses)} {number(credits)} ").split()
        if uses == 0:
            assert cells[0] == "–", row  # credits without uses: no division, no "inf"
        else:
            assert cells[0] == number(credits / uses, 1), row
        # Its change follows on the same line; without one the next cell is the share.
        before = october.get(tool)
        if before and before[0] and uses:
            was, now = before[1] / before[0], credits / uses
            assert cells[1] == change((now - was) / was * 100), row
        else:
            assert re.fullmatch(r"[\d.]+%", cells[1]), row  # unsigned: the share
    assert "Audio Generation" in november  # new: a per-use figure, no change
    assert "Icon Generator" not in november
    # Gone: no table row (the sentence says it), which would start with its uses.
    assert not any(r.startswith("Icon Generator ") and r[15:16].isdigit() for r in rows)
    assert any(r.startswith("Icon Generator was not used") for r in rows)


# --- the constants, at their edges --------------------------------------------------


def row(previous_uses: int, previous: float, uses: int, credits: float) -> Row:
    return Row("tool", uses, credits, 0.0, previous, None, previous_uses)


def test_an_effect_explains_most_from_exactly_the_documented_share() -> None:
    assert SPLIT_EXPLAINS_MOST == 2 / 3  # the README says so
    # 100 uses at 8 credits, then 200 at 10: volume 100 x 8 = 800, unit cost 2 x 200 = 400.
    at_edge = split_change(row(100, 800, 200, 2000))
    assert at_edge is not None
    assert (at_edge.volume, at_edge.unit_cost) == (800, 400)  # 800 / 1,200 is exactly 2/3
    assert at_edge.lead == "volume"
    # Then 200 at 10.25: unit cost 450, and 800 / 1,250 is 64%, under 2/3: nothing leads.
    below = split_change(row(100, 800, 200, 2050))
    assert below is not None
    assert below.volume + below.unit_cost == 2050 - 800
    assert below.lead is None
    # Same uses, each twice as dear: all of it is unit cost.
    dearer = split_change(row(100, 1000, 100, 2000))
    assert dearer is not None
    assert (dearer.volume, dearer.unit_cost, dearer.lead) == (0, 1000, "unit_cost")


@pytest.mark.parametrize(
    ("before", "now"),
    [((0, 0.0), (10, 100.0)), ((10, 100.0), (0, 0.0)), ((0, 50.0), (0, 80.0))],
    ids=["new", "gone", "no-uses"],
)
def test_no_split_without_uses_on_both_sides(
    before: tuple[int, float], now: tuple[int, float]
) -> None:
    assert split_change(row(before[0], before[1], now[0], now[1])) is None


def test_only_the_documented_number_of_lines_carry_a_split() -> None:
    split = Split(10.0, 5.0, 1.0, 1.05, 10.0, 5.0)
    found = [Insight("tool_grew", {"split": split}, float(100 - i)) for i in range(SPLIT_LINES + 2)]
    kept = _with_splits(found)
    assert [i.values["split"] is not None for i in kept] == [True] * SPLIT_LINES + [False] * 2


# --- tables a screen reader can navigate ---------------------------------------------


def test_pdfua_finds_nothing_in_the_demo_reports(tmp_path: Path) -> None:
    reporter = Path(sys.executable).parent / "reporter"
    subprocess.run([str(reporter), "demo", "--out", str(tmp_path / "out")], check=True,
                   capture_output=True, timeout=300)  # fmt: skip
    pdfs = sorted((tmp_path / "out").rglob("*.pdf"))
    assert len(pdfs) == 3
    for pdf in pdfs:
        checked = subprocess.run(
            [str(Path(sys.executable).parent / "pdfua"), "check", "--format", "json", str(pdf)],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        report = json.loads(checked.stdout)
        assert report["summary"]["errors"] == 0, report["findings"]
        assert report["summary"]["warnings"] == 0, report["findings"]
        assert report["summary"]["rules_run"] >= 10
        assert checked.returncode == 0


def test_every_header_cell_has_its_scope_in_pdf_a_too(
    tmp_path: Path, stand_in: SandboxServer
) -> None:
    import pikepdf

    config = write_config(
        tmp_path / "r.toml", '[[reports]]\nname = "studio"\nowners = ["a@company.com"]\n'
    )
    env = {"MAGNIFIC_API_KEY": API_KEY, "MAGNIFIC_API_BASE_URL": stand_in.url}
    args = ["run", "--config", str(config), "--period", "2026-11", "--dry-run", "-q"]
    args += ["--out", str(tmp_path / "out"), "--pdf-variant", "pdf/a-3b"]
    assert CliRunner().invoke(cli, args, env=env).exit_code == 0
    scopes: dict[str, int] = {}
    with pikepdf.open(tmp_path / "out" / "2026-11" / "studio.pdf") as pdf:
        stack = [pdf.Root.StructTreeRoot]
        while stack:
            element = stack.pop()
            if element.get("/S") == "/TH":
                scope = str(element.get("/A", {}).get("/Scope"))
                scopes[scope] = scopes.get(scope, 0) + 1
            kids = element.get("/K")
            if isinstance(kids, pikepdf.Array):
                stack += [k for k in kids if isinstance(k, pikepdf.Dictionary)]
            elif isinstance(kids, pikepdf.Dictionary):
                stack.append(kids)
    assert set(scopes) == {"/Column", "/Row"}, scopes
