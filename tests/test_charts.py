"""Chart specs are built without validation on the hot path; here each shape is checked
once against the Vega-Lite schema Altair ships, so a wrong spec still fails a test."""

from __future__ import annotations

import copy
import datetime as dt
import re
from collections import Counter
from typing import Any
from xml.etree import ElementTree

import jsonschema
import pandas as pd
import pytest
import vl_convert
from altair.utils.schemapi import validate_jsonschema
from altair.vegalite.v6.schema import load_schema

from reporter.charts import (
    ChartLabels,
    budget_spec,
    daily_spec,
    history_spec,
    merge_bars,
    render_svg,
    tool_colour,
)

SVG = "{http://www.w3.org/2000/svg}"

LABELS = ChartLabels(
    daily_title="Credits per day, by tool",
    history_title="Credits per period",
    credits="Credits",
    tool="Tool",
    day="Day",
    period="Period",
    user="User",
    in_progress="so far, and forecast",
)
TOOLS = ["AI Image Models", "Video Generation"]
DAILY = pd.DataFrame(
    {
        "date": pd.to_datetime(["2026-10-01", "2026-10-01", "2026-10-02"]),
        "tool": ["AI Image Models", "Video Generation", "AI Image Models"],
        "credits": [10.0, 5.0, 7.0],
    }
)
HISTORY = pd.DataFrame(
    {"period": ["2026-09", "2026-10"], "tool": ["AI Image Models"] * 2, "credits": [9.0, 4.0]}
)
HISTORY_ARGS = (HISTORY, TOOLS, ["2026-09", "2026-10"], ["Sep", "Oct"], LABELS)
CUMULATIVE = pd.DataFrame(
    {"date": [dt.date(2026, 11, 1), dt.date(2026, 11, 2)], "credits": [30.0, 70.0]}
)


def _specs() -> dict[str, dict[str, Any]]:
    budget = {"title": "November so far", "credits_label": "Credits", "day_label": "Day"}
    return {
        "daily by day": daily_spec(DAILY, TOOLS, LABELS),
        "daily by month": daily_spec(DAILY, TOOLS, LABELS, granularity="month"),
        "history": history_spec(*HISTORY_ARGS),
        "history in progress": history_spec(*HISTORY_ARGS, in_progress=True),
        "history with forecast": history_spec(*HISTORY_ARGS, in_progress=True, forecast=12.0),
        "alert budget": budget_spec(CUMULATIVE, 100.0, None, **budget),
        "alert forecast": budget_spec(
            CUMULATIVE, 100.0, ("2026-11-02", 70.0, "2026-11-30", 400.0), **budget
        ),
        "alert no budget": budget_spec(CUMULATIVE, None, None, **budget),
    }


@pytest.mark.parametrize("name", list(_specs()))
def test_every_chart_spec_is_valid_vega_lite_and_draws(name: str) -> None:
    spec = _specs()[name]
    validate_jsonschema(spec, load_schema())
    assert render_svg(spec, "en").lstrip().startswith("<svg")


def test_the_schema_check_catches_a_wrong_spec() -> None:
    """The check above can fail: a mark Vega-Lite has no such type of is refused."""
    spec = copy.deepcopy(_specs()["daily by day"])
    spec["mark"] = {"type": "histogram"}
    with pytest.raises(jsonschema.ValidationError):
        validate_jsonschema(spec, load_schema())


def _axis_labels(svg: str) -> list[str]:
    root = ElementTree.fromstring(svg)
    group = next(g for g in root.iter(f"{SVG}g") if "role-axis-label" in g.get("class", "").split())
    return [t.text or "" for t in group.iter(f"{SVG}text")]


def test_a_period_without_usage_keeps_its_place_in_the_history_chart() -> None:
    """A team with no usage in August sees May..October with August empty, not a
    chart that runs July straight into September as if August never was."""
    history = pd.DataFrame(
        {"period": ["2026-07", "2026-09"], "tool": ["AI Image Models"] * 2, "credits": [5.0, 9.0]}
    )
    keys, names = ["2026-07", "2026-08", "2026-09"], ["Jul", "Aug", "Sep"]
    for extra in ({}, {"in_progress": True, "forecast": 12.0}):
        spec = history_spec(history, TOOLS, keys, names, LABELS, **extra)  # type: ignore[arg-type]
        assert _axis_labels(render_svg(spec, "en")) == names


def _days(tools: list[str], credits: list[float]) -> pd.DataFrame:
    """Daily rows from October 1st, one per tool a day, ``credits`` in that order."""
    days = pd.date_range("2026-10-01", periods=len(credits) // len(tools))
    return pd.DataFrame(
        {"date": days.repeat(len(tools)), "tool": tools * len(days), "credits": credits}
    )


def _rects(svg: str) -> Counter[tuple[str, str, str]]:
    """Every rectangle of every bar mark, as (its look, its x, its y) -- the d strings
    vl-convert writes for bars are runs of ``Mx,yh..v..h..Z``."""
    found: Counter[tuple[str, str, str]] = Counter()
    for group in ElementTree.fromstring(svg).iter(f"{SVG}g"):
        if "mark-rect" not in group.get("class", "").split():
            continue
        for path in group.iter(f"{SVG}path"):
            look = f"{path.get('fill')} {path.get('opacity')} {path.get('stroke')}"
            for x, y in re.findall(r"M([-\d.e]+),([-\d.e]+)h", path.get("d", "")):
                found[(look, x, y)] += 1
    return found


def test_bars_of_one_colour_are_one_path_and_draw_the_same_rectangles() -> None:
    daily = _days(TOOLS, [10.0, 5.0, 7.0, 3.0, 4.0, 6.0])
    spec = daily_spec(daily, TOOLS, LABELS)
    raw = vl_convert.vegalite_to_svg(spec)
    merged = merge_bars(raw)
    assert _rects(merged) == _rects(raw)
    assert sum(_rects(raw).values()) == 6
    bars = [p for g in _bar_marks(merged) for p in g]
    assert sorted(p.get("fill") or "" for p in bars) == sorted(tool_colour(t) for t in TOOLS)
    # Everything that is not a bar is untouched.
    assert _not_bars(merged) == _not_bars(raw)


def _bar_marks(svg: str | ElementTree.Element) -> list[ElementTree.Element]:
    root = ElementTree.fromstring(svg) if isinstance(svg, str) else svg
    return [g for g in root.iter(f"{SVG}g") if "mark-rect" in g.get("class", "").split()]


def _not_bars(svg: str) -> Counter[str]:
    root = ElementTree.fromstring(svg)
    bars = {id(p) for g in _bar_marks(root) for p in g}
    return Counter(
        f"{e.tag} {sorted(e.attrib.items())} {e.text}" for e in root.iter() if id(e) not in bars
    )


def test_zero_bars_are_not_drawn_but_a_day_without_usage_keeps_its_place() -> None:
    daily = _days(TOOLS, [10.0, 0.0, 0.0, 0.0, 4.0, 6.0])
    spec = daily_spec(daily, TOOLS, LABELS)
    values = spec["data"]["values"]
    assert [(v["date"], v["credits"]) for v in values] == [
        ("2026-10-01", 10.0),
        ("2026-10-02", 0.0),
        ("2026-10-03", 4.0),
        ("2026-10-03", 6.0),
    ]
    assert _axis_labels(render_svg(spec, "en")) == ["01", "02", "03"]


def test_bars_of_tools_with_awkward_names_are_merged_and_the_names_kept() -> None:
    tools = ['Gen "2" <beta> & co', "Ünïcode ﬁlter", "עברית"]
    daily = _days(tools, [1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    spec = daily_spec(daily, tools, LABELS)
    raw = vl_convert.vegalite_to_svg(spec)
    merged = render_svg(spec, "en")
    assert _rects(merged) == _rects(raw)
    assert len([p for g in _bar_marks(merged) for p in g]) == 3
    legend = [t.text for t in ElementTree.fromstring(merged).iter(f"{SVG}text")]
    assert set(tools) <= set(legend)
