"""Chart labels drawn as whole runs (reporter/svg_text.py) land where WeasyPrint's own
letter-by-letter drawing puts them, and read the same."""

from __future__ import annotations

import base64
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import weasyprint

from reporter import printer, svg_text
from reporter.files import default_templates_dir
from reporter.printer import html_to_pdf

FONT = 'font-family="Liberation Sans, Arial, Helvetica, sans-serif"'
# The kinds of label Vega writes (anchored start, middle and end, bold, a title, an axis
# title turned on its side), one with a letter placed by hand (WeasyPrint draws that one
# itself), and a bare one with no attributes at all.
CHART = f"""<svg xmlns="http://www.w3.org/2000/svg" width="400" height="200" viewBox="0 0 400 200">
<g transform="translate(40,20)">
<text text-anchor="start" transform="translate(0,10)" {FONT} font-size="13px"
 font-weight="bold" fill="#1f2937">Credits per day, by tool</text>
<text text-anchor="middle" transform="translate(60,60)" {FONT} font-size="10px"
 fill="#374151">Video Generation</text>
<text text-anchor="end" transform="translate(300,60)" {FONT} font-size="10px"
 fill="#374151">20,000</text>
<text text-anchor="middle" transform="translate(-20,120) rotate(-90) translate(0,-2)" {FONT}
 font-size="10px" font-weight="bold">Credits</text>
<text x="150" y="150" {FONT} font-size="12px">Day</text>
<text x="200 230 260" y="150" {FONT} font-size="12px">ABC</text>
<text>plain</text>
</g></svg>"""
Words = list[tuple[str, tuple[float, ...]]]
WORD = re.compile(
    r'<word xMin="([\d.]+)" yMin="([\d.]+)" xMax="([\d.]+)" yMax="([\d.]+)">([^<]*)</word>'
)


def _words(html: str, path: Path) -> Words:
    path.write_bytes(html_to_pdf(html, templates_dir=default_templates_dir()))
    boxes = subprocess.run(
        ["pdftotext", "-bbox", str(path), "-"], capture_output=True, text=True, check=True
    ).stdout
    return [(m[4], tuple(float(v) for v in m[:4])) for m in WORD.findall(boxes)]


@pytest.fixture
def stock_first() -> Iterator[None]:
    printer._shared(weasyprint)  # where the printer installs it, once per process
    svg_text.uninstall()
    try:
        yield
    finally:
        svg_text.install()


def stock_then_whole(svg: str, folder: Path) -> tuple[Words, Words]:
    """The words of a page showing ``svg``, and their boxes: printed by WeasyPrint's own
    drawing (the ``stock_first`` fixture), then with svg_text installed."""
    url = "data:image/svg+xml;base64," + base64.b64encode(svg.encode()).decode()
    html = f"<!DOCTYPE html><html lang=en><title>t</title><img src='{url}' alt='an image'>"
    stock = _words(html, folder / "stock.pdf")
    assert svg_text.install()
    return stock, _words(html, folder / "whole.pdf")


@pytest.mark.usefixtures("stock_first")
def test_labels_land_where_weasyprint_puts_them_letter_by_letter(tmp_path: Path) -> None:
    stock, whole = stock_then_whole(CHART, tmp_path)
    assert [w for w, _ in whole] == [w for w, _ in stock]
    # (A, B and C are placed one by one, so they are three words.)
    words = {w for w, _ in whole}
    assert {"per", "Generation", "20,000", "Credits", "Day", "A", "B", "C", "plain"} <= words
    for (word, box), (_, expected) in zip(whole, stock, strict=True):
        # Whole runs are kerned (as vl-convert measured them), letters one by one are not:
        # "day," ends 0.73 pt sooner, and the title's next words start that much sooner.
        assert box[0::2] == pytest.approx(expected[0::2], abs=1.0), word
        assert box[1::2] == pytest.approx(expected[1::2], abs=0.1), word


@pytest.mark.usefixtures("stock_first")
def test_anchored_labels_are_drawn_in_place_not_each_in_a_group_of_its_own() -> None:
    url = "data:image/svg+xml;base64," + base64.b64encode(CHART.encode()).decode()
    html = f"<!DOCTYPE html><html lang=en><title>t</title><img src='{url}' alt='an image'>"

    def groups() -> int:  # a form XObject in the PDF for each
        pdf = html_to_pdf(html, templates_dir=default_templates_dir())
        return pdf.count(b"/Subtype /Form")

    anchored = len(re.findall(r'text-anchor="(?:middle|end)"', CHART))
    assert groups() == anchored == 3  # WeasyPrint's own drawing
    assert svg_text.install()
    assert groups() == 0


def test_it_is_in_use_on_the_weasyprint_the_lock_file_pins() -> None:
    """When WeasyPrint is upgraded this fails: see whether the new release draws plain
    SVG text as whole runs itself (Kozea/WeasyPrint#2249); if it does, delete
    reporter/svg_text.py, and if not, check _draw_text against its svg/text.py and
    raise WRITTEN_FOR."""
    assert weasyprint.__version__ == svg_text.WRITTEN_FOR
    assert svg_text.install()
    assert weasyprint.svg.TAGS["text"] is weasyprint.svg.text is svg_text._draw_text
    assert weasyprint.svg.SVG.draw_node is svg_text._draw_node
