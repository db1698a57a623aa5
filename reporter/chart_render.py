"""Drawing chart specs with vl-convert: SVG for the PDF, PNG for the email.

Apart from the specs (``reporter.charts``, which need pandas), so that the printer
processes, which draw the charts beside printing the PDF, import only this and
vl-convert: the JavaScript engine that draws a chart (some 70 MB) then lives in a
printer, not in the run that holds every report's data.
"""

from __future__ import annotations

import base64
import re
from typing import Any

import vl_convert

from reporter.errors import RenderError

VL_LOCALES: dict[str, Any] = {"en": "en-US", "es": "es-ES"}


def render_svg(spec: dict[str, Any], locale: str) -> str:
    """SVG markup for the PDF (vector, selectable text)."""
    try:
        svg: str = vl_convert.vegalite_to_svg(
            spec,
            format_locale=VL_LOCALES.get(locale, "en-US"),
            time_format_locale=VL_LOCALES.get(locale, "en-US"),
        )
    except Exception as exc:  # vl-convert raises plain ValueError/RuntimeError
        raise RenderError(f"could not draw a chart: {exc}") from exc
    return merge_bars(svg)


# A bar mark as vl-convert writes it: a group of self-closing <path/> elements, one a bar.
_ATTRIBUTES = r'(?:\s+[\w:-]+="[^"]*")*'
_BAR_MARK = re.compile(
    rf'(<g class="mark-rect[^"]*"{_ATTRIBUTES}>)((?:<path{_ATTRIBUTES}\s*/>)+)(</g>)'
)
_PATH = re.compile(rf"<path({_ATTRIBUTES})\s*/>")
_ATTRIBUTE = re.compile(r'([\w:-]+)="([^"]*)"')
# What describes one bar to a screen reader: it has no meaning for bars drawn as one path
# (the chart is an image with its own alt text, in the PDF and in the email).
_BAR_LABELS = ("aria-label", "aria-roledescription", "role")


def merge_bars(svg: str) -> str:
    """The same chart with each bar mark's same-looking bars drawn as one path.

    vl-convert writes one ``<path>`` per bar (a month by day and tool is some 250); the
    PDF printer pays for every element it draws (20 ms a report for these), and bars of
    one colour drawn as one path look the same, since bars stacked by tool never overlap.
    Marks other than bars (rules, text, symbols, the forecast's outline) are left alone,
    and so is a bar mark written in any other shape than this expects."""
    return _BAR_MARK.sub(_merged_bars, svg)


def _merged_bars(mark: re.Match[str]) -> str:
    outlines: dict[tuple[tuple[str, str], ...], list[str]] = {}
    for written in _PATH.findall(mark[2]):
        attributes = dict(_ATTRIBUTE.findall(written))
        outline = attributes.pop("d", "")
        for name in _BAR_LABELS:
            attributes.pop(name, None)
        outlines.setdefault(tuple(attributes.items()), []).append(outline)
    paths = "".join(
        "<path " + " ".join(f'{k}="{v}"' for k, v in (("d", "".join(outline)), *look)) + "/>"
        for look, outline in outlines.items()
    )
    return mark[1] + paths + mark[3]


def svg_data_url(svg: str) -> str:
    """An SVG as a ``data:`` URL, the one kind of URL the PDF renderer may load."""
    return "data:image/svg+xml;base64," + base64.b64encode(svg.encode()).decode("ascii")


def svg_to_png(svg: str, *, scale: float = 2.0) -> bytes:
    """PNG bytes for the email, where SVG is not displayed by most clients.

    Rasterised from the SVG the PDF already has, rather than by running the chart
    through Vega a second time."""
    try:
        png: bytes = vl_convert.svg_to_png(svg, scale=scale)
    except Exception as exc:
        raise RenderError(f"could not draw a chart: {exc}") from exc
    return png


def render_png(spec: dict[str, Any], locale: str, *, scale: float = 2.0) -> bytes:
    """PNG bytes straight from a spec, for an email chart no PDF shares."""
    try:
        png: bytes = vl_convert.vegalite_to_png(
            spec,
            scale=scale,
            format_locale=VL_LOCALES.get(locale, "en-US"),
            time_format_locale=VL_LOCALES.get(locale, "en-US"),
        )
    except Exception as exc:
        raise RenderError(f"could not draw a chart: {exc}") from exc
    return png
