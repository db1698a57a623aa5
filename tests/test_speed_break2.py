"""More of what this session's speed changes (issue 11) must not break, found by trying to:
the chart labels' whole-run drawing (reporter/svg_text.py) and the charts' bar merging
(reporter/charts.py), through the real pipeline."""

from __future__ import annotations

import base64
import shutil
from pathlib import Path

import pytest

from reporter import svg_text
from reporter.files import default_templates_dir
from reporter.sandbox import SandboxServer
from tests.conftest import pdf_text
from tests.test_report import run
from tests.test_svg_text import _words, stock_first  # noqa: F401 (a fixture)

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
    url = "data:image/svg+xml;base64," + base64.b64encode(LOGO.encode()).decode()
    html = f"<!DOCTYPE html><html lang=en><title>t</title><img src='{url}' alt='logo'>"
    stock = _words(html, tmp_path / "stock.pdf")
    assert svg_text.install()
    whole = _words(html, tmp_path / "whole.pdf")

    assert [w for w, _ in stock][:2] == ["Umbrella", "Holdings"]
    assert [w for w, _ in whole] == [w for w, _ in stock]
    for (word, box), (_, expected) in zip(whole, stock, strict=True):
        assert box == pytest.approx(expected, abs=1.0), word
