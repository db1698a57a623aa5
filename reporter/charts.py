"""Chart specs (pure Vega-Lite) and their rendering through vl-convert (no browser, no network).

The specs are written as plain Vega-Lite dictionaries: building them through Altair
cost more than a tenth of a second a report and a third of a second of import, for
dictionaries this small. Each shape is validated against the Vega-Lite schema once,
in the tests (``tests/test_charts.py``), rather than on every run.

Colours: one per tool, the same in every chart and every month. Known tools
have fixed places in Paul Tol's colour-blind-safe "muted" palette; a tool we
have never seen gets a colour from a hash of its name, so it keeps it too.
"""

from __future__ import annotations

import base64
import json
import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
import vl_convert

from reporter.errors import RenderError

# Paul Tol, "muted" qualitative scheme (colour-blind safe), then his "light" extras.
PALETTE = (
    "#332288",
    "#88CCEE",
    "#44AA99",
    "#117733",
    "#999933",
    "#DDCC77",
    "#CC6677",
    "#882255",
    "#AA4499",
    "#6699CC",
    "#EE8866",
    "#BBCC33",
)
UNATTRIBUTED_COLOUR = "#BBBBBB"

KNOWN_TOOLS = (
    "AI Image Models",
    "Video Generation",
    "Image Upscaler",
    "Image Editing",
    "Audio Generation",
    "Icon Generator",
    "Background Remover",
    "Asset Download",
)

# vl-convert measures every label in this family, and measures its own bundled copy of
# Liberation Sans about three times faster than a system font (it reopens and reparses a
# system font file for each label: 70 ms a chart with DejaVu Sans, 25 ms with this).
# templates/fonts ships the same font, so the PDF draws the text in what was measured.
FONT = "Liberation Sans, Arial, Helvetica, sans-serif"

# vl-convert's d3 locales for number and time formats, by report locale.
VL_LOCALES: dict[str, Any] = {"en": "en-US", "es": "es-ES"}


def tool_colour(tool: str) -> str:
    """A tool's colour: fixed for known tools, a stable hash of the name otherwise."""
    if tool in KNOWN_TOOLS:
        return PALETTE[KNOWN_TOOLS.index(tool)]
    return PALETTE[zlib.crc32(tool.encode()) % len(PALETTE)]


# What a chart cannot carry in a label: the C0 controls XML 1.0 has no place for (on
# one, vl-convert's text measuring panics and aborts the whole process) and the line and
# paragraph separators, line ends to Vega's expression parser (the chart fails). A tool
# named with one is shown with a space in its place, in its own colour.
_UNSHOWABLE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\u2028\u2029\ufffe\uffff]")


def _shown(tool: str) -> str:
    return _UNSHOWABLE.sub(" ", tool)


def _showable(frame: pd.DataFrame, tools: Sequence[str]) -> pd.DataFrame:
    """The rows with their tools as the chart names them (the same, all but always)."""
    if not any(_UNSHOWABLE.search(tool) for tool in tools):
        return frame
    return frame.assign(tool=frame["tool"].map(_shown))


def _tool_colour(tools: Sequence[str]) -> dict[str, Any]:
    """Colour by tool, in each tool's own colour, in the tables' order."""
    shown = [_shown(t) for t in tools]
    return {
        "field": "tool",
        "type": "nominal",
        "title": None,
        "scale": {"domain": shown, "range": [tool_colour(t) for t in tools]},
        "sort": shown,
    }


def _stacked_by_tool(tools: Sequence[str], labels: ChartLabels) -> dict[str, Any]:
    """The encodings of credits stacked by tool, in the tables' order and colours."""
    return {
        "y": {
            "field": "credits",
            "aggregate": "sum",
            "type": "quantitative",
            "title": labels.credits,
            "axis": {"format": ",.0f"},
        },
        "color": _tool_colour(tools),
        "order": {"field": "tool_rank", "type": "quantitative"},
    }


def _tool_order(tools: Sequence[str]) -> dict[str, Any]:
    """Stacks in the tables' order: a rank per tool, computed by Vega."""
    shown = [_shown(t) for t in tools]
    return {"calculate": f"indexof({json.dumps(shown)}, datum.tool)", "as": "tool_rank"}


# The charts' shared look (fonts, axes, titles, legend) as a Vega-Lite ``config``.
STYLE: dict[str, Any] = {
    "view": {"continuousWidth": 300, "continuousHeight": 300, "stroke": None},
    "axis": {
        "domainColor": "#9ca3af",
        "gridColor": "#e5e7eb",
        "labelColor": "#374151",
        "labelFontSize": 10,
        "titleColor": "#374151",
        "titleFontSize": 10,
    },
    "axisBand": {"ticks": False},
    "background": "white",
    "font": FONT,
    "legend": {
        "columns": 4,
        "labelFontSize": 10,
        "labelLimit": 180,
        "orient": "bottom",
        "symbolType": "square",
        "titleFontSize": 10,
    },
    "title": {
        "anchor": "start",
        "color": "#1f2937",
        "fontSize": 13,
        "fontWeight": "bold",
        "subtitleColor": "#4b5563",
        "subtitleFontSize": 10,
    },
}
SCHEMA = "https://vega.github.io/schema/vega-lite/v6.json"


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """A frame as Vega-Lite inline values (plain Python numbers and strings)."""
    return frame.to_dict(orient="records")  # type: ignore[return-value]


def _drawn(frame: pd.DataFrame, x: str) -> pd.DataFrame:
    """The rows that draw a bar, and one row for each place on the x axis that has none.

    A tool with no credits that day is a bar of height zero: nothing to see, and about a
    third of a month's bars, each one work for vl-convert and the printer. A day with no
    credits at all keeps one row, so that it keeps its place on the axis."""
    used = frame["credits"] != 0
    unused_place = ~used.groupby(frame[x]).transform("any")
    return frame[used | (unused_place & ~frame[x].duplicated())]


@dataclass(frozen=True, slots=True)
class ChartLabels:
    """Every word a chart shows, already translated."""

    daily_title: str
    history_title: str
    credits: str
    tool: str
    day: str
    period: str
    user: str
    in_progress: str = ""  # the history's note on a period not over yet


def _chart(
    body: dict[str, Any], title: str | dict[str, str], width: int, height: int
) -> dict[str, Any]:
    return {
        "$schema": SCHEMA,
        "config": STYLE,
        "title": title,
        "width": width,
        "height": height,
        **body,
    }


def daily_spec(
    daily: pd.DataFrame, tools: Sequence[str], labels: ChartLabels, *, granularity: str = "day"
) -> dict[str, Any]:
    """Credits per day (or month, for a year), stacked by tool."""
    days = daily["date"].nunique()
    data = _showable(_drawn(daily, "date")[["date", "tool", "credits"]], tools)
    data = data.assign(date=data["date"].dt.strftime("%Y-%m-%d"))
    time_unit = "yearmonthdate" if granularity == "day" else "yearmonth"
    axis_format = ("%d" if days <= 31 else "%b %d") if granularity == "day" else "%b"
    body = {
        "data": {"values": _records(data)},
        "mark": {"type": "bar", "width": {"band": 0.85}},
        "encoding": {
            "x": {
                "field": "date",
                "type": "ordinal",
                "timeUnit": time_unit,
                "title": labels.day,
                "axis": {"format": axis_format, "labelAngle": 0, "labelOverlap": True},
            },
            **_stacked_by_tool(tools, labels),
        },
        "transform": [_tool_order(tools)],
    }
    return _chart(body, labels.daily_title, 500, 170)


def history_spec(
    history: pd.DataFrame,
    tools: Sequence[str],
    periods: Sequence[str],
    period_labels: Sequence[str],
    labels: ChartLabels,
    *,
    in_progress: bool = False,
    forecast: float | None = None,
) -> dict[str, Any]:
    """Credits per period for the history, stacked by tool; the report's period last.

    A last period still in progress is drawn lighter, with its forecast as a dashed
    outline, so it does not read as a short bar among full ones."""
    names = dict(zip(periods, period_labels, strict=True))
    current = period_labels[-1] if in_progress else None
    data = _showable(history[["period", "tool", "credits"]], tools)
    data = data.assign(label=history["period"].map(names))
    # Every period has its place, in order, even one without usage (and so without rows).
    x: dict[str, Any] = {
        "field": "label",
        "type": "nominal",
        "scale": {"domain": list(period_labels)},
    }
    lighter = f"datum.label === {json.dumps(current or '')}"
    bars: dict[str, Any] = {
        "data": {"values": _records(data)},
        "mark": {"type": "bar", "width": {"band": 0.7}},
        "encoding": {
            "x": {**x, "title": None, "axis": {"labelAngle": 0}},
            **_stacked_by_tool(tools, labels),
            "opacity": {"condition": {"test": lighter, "value": 0.4}, "value": 1.0},
        },
        "transform": [_tool_order(tools)],
    }
    if current is None:
        return _chart(bars, labels.history_title, 500, 170)
    title = {"text": labels.history_title, "subtitle": labels.in_progress}
    if forecast is None:
        return _chart(bars, title, 500, 170)
    mark: dict[str, Any] = {
        "data": {"values": [{"label": current, "forecast": float(forecast)}]},
        "encoding": {"x": x, "y": {"field": "forecast", "type": "quantitative"}},
    }
    outline = {
        **mark,
        "mark": {
            "type": "bar",
            "width": {"band": 0.7},
            "fillOpacity": 0,
            "stroke": "#1f2937",
            "strokeWidth": 1.2,
            "strokeDash": [4, 3],
        },
    }
    value = {
        **mark,
        "mark": {"type": "text", "baseline": "bottom", "dy": -3, "fontSize": 9, "color": "#1f2937"},
        "encoding": {
            **mark["encoding"],
            "text": {"field": "forecast", "type": "quantitative", "format": ",.0f"},
        },
    }
    return _chart({"layer": [bars, outline, value]}, title, 500, 170)


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


def budget_spec(
    cumulative: pd.DataFrame,
    budget: float | None,
    forecast: tuple[str, float, str, float] | None,
    *,
    title: str,
    credits_label: str,
    day_label: str,
) -> dict[str, Any]:
    """The month so far for an alert: cumulative credits by day, the budget as a rule and
    the run-rate forecast as a dashed line from today to the month's end.

    ``forecast`` is (from day, from credits, to day, to credits), days as YYYY-MM-DD.
    """
    x = {
        "field": "date",
        "type": "temporal",
        "title": day_label,
        "axis": {"format": "%d", "labelAngle": 0, "labelOverlap": True},
    }
    y = {"field": "credits", "type": "quantitative", "title": credits_label}
    y_axis = {**y, "axis": {"format": ",.0f"}}
    values = [
        {"date": day.strftime("%Y-%m-%d"), "credits": float(credits)}
        for day, credits in zip(cumulative["date"], cumulative["credits"], strict=True)
    ]
    layers: list[dict[str, Any]] = [
        {
            "data": {"values": values},
            "mark": {"type": "line", "color": PALETTE[0], "strokeWidth": 2},
            "encoding": {"x": x, "y": y_axis},
        }
    ]
    if forecast is not None:
        start, start_credits, end, end_credits = forecast
        layers.append(
            {
                "data": {
                    "values": [
                        {"date": start, "credits": start_credits},
                        {"date": end, "credits": end_credits},
                    ]
                },
                "mark": {
                    "type": "line",
                    "color": "#1f2937",
                    "strokeDash": [4, 3],
                    "strokeWidth": 1.2,
                },
                "encoding": {"x": x, "y": y},
            }
        )
    if budget:
        layers.append(
            {
                "data": {"values": [{"credits": budget}]},
                "mark": {"type": "rule", "color": "#b42318", "strokeWidth": 1.2},
                "encoding": {"y": y},
            }
        )
    return {
        "$schema": SCHEMA,
        "config": STYLE,
        "title": title,
        "width": 500,
        "height": 150,
        "layer": layers,
    }


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
