"""The pure core: responses to tidy rows to report tables, checked with literal data."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from reporter.insights import find_insights
from reporter.magnific import parse_usage_response
from reporter.periods import parse_period
from reporter.usage import BREAKDOWN_EXCESS, OTHERS, build_tables, csv_frame, tidy_frame

DATA = Path(__file__).parent / "data"
TODAY = dt.date(2026, 11, 25)


def response(buckets: list[dict[str, Any]]) -> Any:
    return parse_usage_response(json.dumps({"data": buckets}).encode())


def bucket(day: str, *consumptions: dict[str, Any]) -> dict[str, Any]:
    return {"date": f"{day}T00:00:00.000Z", "consumptions": list(consumptions)}


def tool(
    name: str,
    uses: int,
    credits: float,
    users: list[tuple[str, int, float]] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    row: dict[str, Any] = {"tool": name, "user_uses": uses, "user_credits": credits}
    if users is not None:
        row["user_usages"] = [
            {"user_email": e, "user_uses": u, "user_credits": c, **extra} for e, u, c in users
        ]
    return row


def test_the_contracts_own_example_keeps_unattributed_usage() -> None:
    frame = tidy_frame(parse_usage_response((DATA / "contract-example.json").read_bytes()))
    assert frame["credits"].sum() == 1800 + 900
    unattributed = frame[frame["user"].isna()]
    assert unattributed[["tool", "uses", "credits"]].values.tolist() == [
        ["Asset Download", 10, 900.0]
    ]
    named = frame[frame["user"].notna()].sort_values("credits")
    assert named["user"].tolist() == ["developer@company.com", "designer@company.com"]


def test_a_breakdown_that_falls_short_leaves_the_rest_unattributed() -> None:
    frame = tidy_frame(
        response([bucket("2026-10-01", tool("Video", 10, 2500, [("a@x.com", 4, 1000)]))])
    )
    rows = {(r.user if isinstance(r.user, str) else None): r.credits for r in frame.itertuples()}
    assert rows == {"a@x.com": 1000.0, None: 1500.0}


def test_a_breakdown_larger_than_the_total_never_goes_negative() -> None:
    frame = tidy_frame(
        response([bucket("2026-10-01", tool("Video", 1, 100, [("a@x.com", 2, 250)]))])
    )
    assert (frame["credits"] >= 0).all()
    assert frame["user"].notna().all()


def test_a_breakdown_over_its_total_is_scaled_to_it_and_the_excess_kept() -> None:
    frame = tidy_frame(
        response(
            [
                bucket(
                    "2026-10-01",
                    # Users claim 9 uses and 150 credits of a tool that counted 8 and 100.
                    tool("Video", 8, 100, [("a@x.com", 3, 60), ("b@x.com", 3, 60), ("c", 3, 30)]),
                    tool("Image", 5, 50, [("a@x.com", 2, 20)]),
                ),
                bucket("2026-10-02", tool("Video", 1, 100, [("a@x.com", 2, 250)])),
            ]
        )
    )
    by_tool = frame.groupby([frame["date"].dt.day, "tool"])[["uses", "credits"]].sum()
    assert by_tool.to_dict("index") == {
        (1, "Image"): {"uses": 5, "credits": 50.0},
        (1, "Video"): {"uses": 8, "credits": 100.0},
        (2, "Video"): {"uses": 1, "credits": 100.0},
    }
    video = frame[(frame["date"].dt.day == 1) & (frame["tool"] == "Video")]
    # Each user keeps their share; no unattributed row is invented for a full breakdown.
    assert video[["user", "uses", "credits"]].values.tolist() == [
        ["a@x.com", 3, 40.0],
        ["b@x.com", 3, 40.0],
        ["c", 2, 20.0],
    ]
    assert frame.attrs[BREAKDOWN_EXCESS] == (150 - 100) + (250 - 100)


def test_a_breakdown_within_its_totals_has_no_excess() -> None:
    frame = tidy_frame(
        response([bucket("2026-10-01", tool("Video", 10, 2500, [("a@x.com", 4, 1000)]))])
    )
    assert frame.attrs[BREAKDOWN_EXCESS] == 0


def test_user_rows_without_an_email_count_as_unattributed() -> None:
    payload = tool("Video", 5, 500, [("a@x.com", 2, 200)])
    payload["user_usages"].append({"user_uses": 3, "user_credits": 300})
    frame = tidy_frame(response([bucket("2026-10-01", payload)]))
    assert frame.loc[frame["user"].isna(), "credits"].tolist() == [300.0]


def october(users: int = 15) -> tuple[pd.DataFrame, pd.DataFrame]:
    days = [
        bucket(
            f"2026-10-{d:02d}",
            tool("Image", 10, 1000, [(f"u{i}@x.com", 1, 50 + i) for i in range(users)]),
            tool("Download", 2, 180),
        )
        for d in range(1, 29, 3)
    ]
    detail = tidy_frame(response(days))
    history = tidy_frame(
        response(
            [
                bucket("2026-09-01", tool("Image", 50, 5000, [("u0@x.com", 50, 5000)])),
                bucket("2026-10-01", tool("Image", 100, 10000), tool("Download", 20, 1800)),
            ]
        )
    )
    return detail, history


def test_tables_add_up_to_the_tool_totals() -> None:
    detail, history = october()
    tables = build_tables(detail, history, parse_period("2026-10", today=TODAY), top_users=5)
    assert tables.totals.credits == 10 * 1180
    for breakdown in (tables.tools, tables.users):
        assert breakdown.rows["credits"].sum() == pytest.approx(tables.totals.credits)
    assert tables.daily["credits"].sum() == pytest.approx(tables.totals.credits)
    assert tables.daily["date"].nunique() == 31  # days without usage are there, as zero


def test_top_users_then_everyone_else_then_unattributed() -> None:
    detail, history = october(users=15)
    tables = build_tables(detail, history, parse_period("2026-10", today=TODAY), top_users=5)
    keys = tables.users.rows["key"].tolist()
    assert keys[:5] == [f"u{i}@x.com" for i in (14, 13, 12, 11, 10)]
    assert keys[5] == OTHERS
    assert pd.isna(keys[6])
    assert tables.others_count == 10


def test_change_against_previous_period_and_new_users() -> None:
    detail, history = october()
    tables = build_tables(detail, history, parse_period("2026-10", today=TODAY))
    assert tables.totals.previous_credits == 5000
    assert tables.totals.change_pct == pytest.approx((11800 - 5000) / 5000 * 100)
    assert "u0@x.com" not in tables.new_users
    assert "u1@x.com" in tables.new_users


def test_an_empty_period() -> None:
    empty = tidy_frame(response([]))
    tables = build_tables(empty, empty, parse_period("2026-10", today=TODAY), budget=100)
    assert tables.empty
    assert tables.totals.change_pct is None
    assert tables.daily.empty
    assert find_insights(tables) == []
    assert csv_frame(empty).columns.tolist()[:3] == ["date", "tool", "user_email"]


def test_a_spike_is_found_and_named() -> None:
    days = [
        bucket(f"2026-10-{d:02d}", tool("Image", 10, 1000 if d != 15 else 6000))
        for d in range(1, 29)
    ]
    detail = tidy_frame(response(days))
    tables = build_tables(detail, detail, parse_period("2026-10", today=TODAY))
    assert tables.spikes["date"].dt.date.tolist() == [dt.date(2026, 10, 15)]
    spike = next(i for i in find_insights(tables) if i.kind == "spike")
    assert spike.values["ratio"] == pytest.approx(6.0)


@pytest.mark.parametrize(
    "name", ["=1+1", "+1", "-cmd", "@SUM(A1)", "\tTab", "\rCR", '=HYPERLINK("x","y")']
)
def test_csv_text_that_a_spreadsheet_would_run_gets_a_leading_quote(name: str) -> None:
    frame = tidy_frame(
        response(
            [
                bucket(
                    "2026-10-01",
                    tool(name, 3, 30, [(name, 3, 30)], project_name=name, group_name=name),
                )
            ]
        )
    )
    out = csv_frame(frame)
    row = out.iloc[0]
    assert [row["tool"], row["user_email"], row["project_name"], row["group_name"]] == [
        "'" + name
    ] * 4


def test_csv_numbers_and_plain_text_are_left_alone() -> None:
    frame = tidy_frame(
        response([bucket("2026-10-01", tool("Image 2", 3, 30, [("a-b@x.com", 3, 30)]))])
    )
    frame.loc[0, "credits"] = -5.0  # never from the API; a number still is no formula
    out = csv_frame(frame)
    assert out.iloc[0][["tool", "user_email", "credits"]].tolist() == ["Image 2", "a-b@x.com", -5.0]
    assert out.to_csv(index=False).splitlines()[1].endswith(",3,-5.0,-1.6667")
