"""Chart specs are built without validation on the hot path; here each shape is checked
once against the Vega-Lite schema Altair ships, so a wrong spec still fails a test."""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any

import jsonschema
import pandas as pd
import pytest
from altair.utils.schemapi import validate_jsonschema
from altair.vegalite.v6.schema import load_schema

from reporter.charts import ChartLabels, budget_spec, daily_spec, history_spec, render_svg

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
