"""Trying to break this session's printing changes (issue #11) through the real pipeline:
the sandbox API on loopback, ``reporter run`` as a user runs it, the PDF read back with
poppler (its words and their boxes, and the page as pixels)."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from reporter.charts import tool_colour
from reporter.sandbox import PROJECTS, SandboxData
from tests.conftest import API_KEY, raw_usage, reporter, write_config
from tests.test_hostile_data import DETAIL, PERIOD, TEAM, DoctoredApi

MM = 72 / 25.4  # PDF points, and pixels at 72 dpi, per millimetre
ACCENT = (0x33, 0x22, 0x88)  # report.css --accent: the users' and projects' bars
TRACK = (0xF5, 0xF6, 0xFA)  # report.css --panel: the bars' track

# Names long enough to wrap over several lines of their table cells.
LONG_TOOL = "A tool with a name so long that its cell in the table of tools wraps it " * 2
LONG_PROJECT = "A project with a name so long that its cell in the table wraps it " * 2


@pytest.fixture
def doctored(sandbox_data: SandboxData) -> Iterator[DoctoredApi]:
    with DoctoredApi(sandbox_data, api_key=API_KEY) as server:
        yield server


def rename_long(body: dict[str, Any], payload: dict[str, Any]) -> None:
    """The busiest tool and the first project, named at length."""
    for bucket in payload["data"]:
        for consumption in bucket["consumptions"]:
            if consumption["tool"] == "AI Image Models":
                consumption["tool"] = LONG_TOOL
            for row in consumption.get("user_usages", []):
                if row.get("project_reference") == PROJECTS[0][0]:
                    row["project_name"] = LONG_PROJECT


def run_report(folder: Path, api: DoctoredApi, *options: str) -> Path:
    """``reporter run --dry-run`` as a user runs it; the PDF it wrote."""
    config = write_config(folder / "reports.toml", TEAM)
    env = {"MAGNIFIC_API_KEY": API_KEY, "MAGNIFIC_API_BASE_URL": api.url}
    args = ["--config", str(config), "--period", PERIOD, "--dry-run", "--out", str(folder)]
    result = reporter("run", *args, *options, env=env)
    assert result.returncode == 0, result.stderr
    return folder / PERIOD / "team.pdf"


Word = tuple[float, float, float, float, str]  # xMin, yMin, xMax, yMax, text
WORD = re.compile(
    r'<word xMin="([\d.]+)" yMin="([\d.]+)" xMax="([\d.]+)" yMax="([\d.]+)">([^<]*)</word>'
)


def pages(pdf: Path, folder: Path) -> list[tuple[list[Word], Image.Image]]:
    """Each page's words with their boxes, and the page at 72 dpi (a pixel a point)."""
    boxes = subprocess.run(
        ["pdftotext", "-bbox", str(pdf), "-"], capture_output=True, text=True, check=True
    ).stdout
    subprocess.run(["pdftoppm", "-r", "72", "-png", str(pdf), str(folder / "page")], check=True)
    out = []
    for number, page in enumerate(boxes.split("<page ")[1:], start=1):
        words = [
            (float(x0), float(y0), float(x1), float(y1), text)
            for x0, y0, x1, y1, text in WORD.findall(page)
        ]
        out.append((words, Image.open(folder / f"page-{number}.png").convert("RGB")))
    return out


def pixel(image: Image.Image, x: float, y: float) -> Any:
    return image.getpixel((round(x), round(y)))


def row_start(words: list[Word], text: str) -> Word | None:
    """The first word of the table row whose label starts with ``text``'s first words."""
    first = text.split()
    for i, word in enumerate(words):
        if [w[4] for w in words[i : i + len(first[:4])]] == first[:4] and word[0] < 150:
            return word
    return None


def share_on(words: list[Word], line: Word) -> Word:
    """The share printed on ``line``'s line: its first unsigned percentage."""
    middle = (line[1] + line[3]) / 2
    (share, *_) = [w for w in words if w[1] < middle < w[3] and re.fullmatch(r"[\d.,]+%", w[4])]
    return share


def test_a_wrapped_rows_swatch_and_bar_sit_on_its_first_line_beside_its_share(
    tmp_path: Path, doctored: DoctoredApi
) -> None:
    """A name that wraps makes its row several lines tall; the swatch stays beside the
    name's first line and the bar beside the share, as the boxes they replaced did
    (vertical-align on the first line), not halfway down the row."""
    doctored.doctor = rename_long
    raw = raw_usage(doctored, DETAIL)
    total = sum(c["user_credits"] for b in raw["data"] for c in b["consumptions"])
    tool = sum(
        c["user_credits"] for b in raw["data"] for c in b["consumptions"] if c["tool"] == LONG_TOOL
    )
    colour = tuple(int(tool_colour(LONG_TOOL)[i : i + 2], 16) for i in (1, 3, 5))
    checked = set()
    for words, image in pages(run_report(tmp_path, doctored), tmp_path):
        for label, fill in ((LONG_TOOL, colour), (LONG_PROJECT, ACCENT)):
            first = row_start(words, label)
            if first is None:
                continue
            share = share_on(words, first)
            middle = (share[1] + share[3]) / 2
            assert middle == pytest.approx((first[1] + first[3]) / 2, abs=0.5)
            if label == LONG_TOOL:
                assert share[4] == f"{100 * tool / total:.1f}%"
                # The swatch: 1.6 to 4.2 mm into the cell, whose text starts at 5.8 mm.
                assert pixel(image, first[0] - 2.9 * MM, middle) == colour, "swatch"
            # The 10 mm track starts 24 mm left of where the share ends (report.html.j2),
            # and the fill from it; above and below the bar's 2.6 mm, the cell's white.
            track_start = share[2] - 24 * MM
            assert pixel(image, track_start + 1, middle) == fill, label
            assert pixel(image, track_start + 9 * MM, middle) in (fill, TRACK), label
            assert pixel(image, track_start + 1, middle - 2 * MM) == (255, 255, 255), label
            assert pixel(image, track_start + 1, middle + 2 * MM) == (255, 255, 255), label
            checked.add(label)
    assert checked == {LONG_TOOL, LONG_PROJECT}


CONTROL_TOOL = "Odd\x01Tool\ufffe & <b>]]>"  # no XML 1.0 document can hold \x01 or \ufffe


def rename_control(body: dict[str, Any], payload: dict[str, Any]) -> None:
    for bucket in payload["data"]:
        for consumption in bucket["consumptions"]:
            if consumption["tool"] == "AI Image Models":
                consumption["tool"] = CONTROL_TOOL


def test_a_name_xml_cannot_hold_is_printed_through_htmls_parser_with_its_row(
    tmp_path: Path, doctored: DoctoredApi
) -> None:
    """The page is then not well-formed XML (expat refuses the control character): it is
    printed as before, by WeasyPrint's own parser, with the tool's row and figures."""
    doctored.doctor = rename_control
    raw = raw_usage(doctored, DETAIL)
    tool = sum(
        c["user_credits"]
        for b in raw["data"]
        for c in b["consumptions"]
        if c["tool"] == CONTROL_TOOL
    )
    pdf = run_report(tmp_path, doctored)
    text = subprocess.run(
        ["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True, check=True
    ).stdout
    rows = [line.split() for line in text.splitlines() if "& <b>]]>" in line]
    assert any(row[0].startswith("Odd") and f"{tool:,}" in row for row in rows), rows
