"""More of what this session's speed changes (issue 11) must not break, found by trying to:
the chart labels' whole-run drawing (reporter/svg_text.py) and the charts' bar merging
(reporter/charts.py), through the real pipeline."""

from __future__ import annotations

import email
import email.policy
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from reporter.files import default_templates_dir
from reporter.sandbox import SandboxData, SandboxServer
from tests.conftest import API_KEY, pdf_text, raw_usage, reporter, total_credits, write_config
from tests.test_hostile_data import DETAIL, PERIOD, TEAM, Doctor, DoctoredApi
from tests.test_report import run
from tests.test_svg_text import stock_first, stock_then_whole  # noqa: F401 (a fixture)

# A logo as drawing programs export one: its words in a <text> with <tspan> lines.
LOGO = """<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 120 64">
  <rect width="120" height="64" rx="8" fill="#332288"/>
  <text x="60" y="28" text-anchor="middle" font-family="Liberation Sans" font-size="16"
   fill="white">Umbrella<tspan x="60" dy="20">Holdings</tspan></text>
</svg>"""


def test_a_templates_logo_with_tspan_lines_is_still_drawn(
    tmp_path: Path, api: SandboxServer
) -> None:
    """WeasyPrint hands a <text>'s <tspan>s to the drawer it knows as text; with only
    <text> redirected to the whole-run drawer, a <tspan> was no longer text to it, its
    text box never set, and the whole image failed to draw: the logo vanished, silently."""
    templates = tmp_path / "templates"
    shutil.copytree(default_templates_dir(), templates)
    (templates / "logo.svg").write_text(LOGO, encoding="utf-8")

    folder = run(tmp_path, api, "2026-10", "--templates", str(templates))

    words = pdf_text(folder / "team.pdf").split()
    assert "Umbrella" in words
    assert "Holdings" in words


@pytest.mark.usefixtures("stock_first")
def test_text_with_tspans_lands_where_weasyprint_puts_it(tmp_path: Path) -> None:
    """Anchored in the middle by the lines of its <tspan>s, as WeasyPrint's own drawing does."""
    stock, whole = stock_then_whole(LOGO, tmp_path)

    assert [w for w, _ in stock][:2] == ["Umbrella", "Holdings"]
    assert [w for w, _ in whole] == [w for w, _ in stock]
    for (word, box), (_, expected) in zip(whole, stock, strict=True):
        assert box == pytest.approx(expected, abs=1.0), word


# --- tool names a chart cannot carry as they are --------------------------------------


@pytest.fixture
def renamed_api(sandbox_data: SandboxData) -> Iterator[DoctoredApi]:
    with DoctoredApi(sandbox_data, api_key=API_KEY) as server:
        yield server


def _renamed(names: dict[str, str]) -> Doctor:
    def doctor(body: dict[str, Any], payload: dict[str, Any]) -> None:
        for bucket in payload["data"]:
            for consumption in bucket["consumptions"]:
                consumption["tool"] = names.get(consumption["tool"], consumption["tool"])

    return doctor


@pytest.mark.parametrize(
    "name",
    [
        "Vertical\x0btab",  # XML 1.0 has no such character: vl-convert aborted the process
        "Form\x0cfeed",
        "Line\u2028separator",  # a line end to Vega's expression parser: the chart failed
        "Paragraph\u2029separator",
    ],
)
def test_a_tool_name_with_a_character_no_chart_can_carry_still_prints(
    tmp_path: Path, renamed_api: DoctoredApi, name: str
) -> None:
    """One tool's odd name is a label to draw, not a reason to lose the report (or, with a
    control character, the whole run: vl-convert's text measuring panicked and aborted the
    process, exit -6, no report written, no summary). The chart shows it with a space."""
    renamed_api.doctor = _renamed({"Video Generation": name})
    raw = raw_usage(renamed_api, DETAIL)
    config = write_config(tmp_path / "team.toml", TEAM)
    env = {"MAGNIFIC_API_KEY": API_KEY, "MAGNIFIC_API_BASE_URL": renamed_api.url}
    args = ["--config", str(config), "--period", PERIOD, "--dry-run", "--out", str(tmp_path)]

    result = reporter("run", *args, env=env)

    assert result.returncode == 0, result.stderr
    out = tmp_path / PERIOD
    text = pdf_text(out / "team.pdf")
    assert f"{total_credits(raw):,}" in text
    first, second = re.split("[\x0b\x0c\u2028\u2029]", name)
    # The name, a space between its halves, in the table and in both charts' legends.
    assert text.count(f"{first} {second}") >= 3
    message = email.message_from_bytes((out / "team.eml").read_bytes(), policy=email.policy.default)
    [chart] = [p for p in message.walk() if p.get_content_type() == "image/png"]
    assert chart.get_payload(decode=True).startswith(b"\x89PNG\r\n\x1a\n")
