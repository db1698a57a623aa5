"""The tidy frame and the report tables, pinned on the shapes the fast paths had to keep:
responses out of order, offsets that move a bucket to another UTC day, a tool twice in a
bucket, rows without an email, and sums that must match pandas' groupby to the last bit."""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

import numpy as np
import pandas as pd
import pytest

from reporter.magnific import parse_usage_response
from reporter.usage import BREAKDOWN_EXCESS, _group_sums, tidy_frame


def row(email: str | None, uses: int, credits: float) -> dict[str, Any]:
    found: dict[str, Any] = {"user_uses": uses, "user_credits": credits}
    if email is not None:
        found["user_email"] = email
    return found


def consumption(tool: str, uses: int, credits: float, *users: dict[str, Any]) -> dict[str, Any]:
    return {"tool": tool, "user_uses": uses, "user_credits": credits, "user_usages": list(users)}


# Buckets out of date order; "+02:00" midnight of the 3rd is 22:00 UTC on the 2nd, so it
# joins the 2nd's bucket; Video twice in one bucket; tools not in name order; one row
# without an email and one with an empty one; credits exact in binary, so any order of
# addition gives the same sums.
BUCKETS: list[dict[str, Any]] = [
    {
        "date": "2026-10-02T00:00:00.000Z",
        "consumptions": [
            consumption("Video", 10, 100.5, row("b@x.com", 3, 30.25), row("a@x.com", 3, 30.25)),
            consumption("Image", 4, 8.0, row("a@x.com", 4, 8.0)),
            consumption("Video", 2, 20.0, row(None, 1, 10.0)),
        ],
    },
    {
        "date": "2026-10-01T00:00:00.000Z",
        "consumptions": [
            consumption("Upscale", 7, 70.75, row("c@x.com", 2, 20.5), row("", 1, 5.0)),
            consumption("Audio", 3, 1.5),
        ],
    },
    {
        "date": "2026-10-03T00:00:00+02:00",
        "consumptions": [consumption("Video", 5, 50.0, row("a@x.com", 5, 50.0))],
    },
]


def expected_rows() -> list[tuple[str, str, str | None, int, float]]:
    """The tidy rows worked out by hand from BUCKETS: the named rows as sent, then per UTC
    day and tool what no named row accounts for; by day, tool and credits (largest first)."""
    utc_day = {"2026-10-02T00:00:00.000Z": "2026-10-02", "2026-10-01T00:00:00.000Z": "2026-10-01"}
    utc_day["2026-10-03T00:00:00+02:00"] = "2026-10-02"
    totals: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0, 0.0])
    claimed: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0, 0.0])
    rows: list[tuple[str, str, str | None, int, float]] = []
    for bucket in BUCKETS:
        day = utc_day[bucket["date"]]
        for c in bucket["consumptions"]:
            key = (day, c["tool"])
            totals[key][0] += c["user_uses"]
            totals[key][1] += c["user_credits"]
            for user in c.get("user_usages", []):
                if user.get("user_email"):
                    rows.append((day, c["tool"], user["user_email"], *_numbers(user)))
                    claimed[key][0] += user["user_uses"]
                    claimed[key][1] += user["user_credits"]
    for (day, tool), (uses, credits) in totals.items():
        left = (int(uses - claimed[day, tool][0]), credits - claimed[day, tool][1])
        if left[0] > 0 or left[1] > 0:
            rows.append((day, tool, None, *left))
    return sorted(rows, key=lambda r: (r[0], r[1], -r[4]))


def _numbers(user: dict[str, Any]) -> tuple[int, float]:
    return int(user["user_uses"]), float(user["user_credits"])


def test_a_shuffled_response_becomes_its_named_rows_and_the_rest_unattributed() -> None:
    frame = tidy_frame(parse_usage_response(json.dumps({"data": BUCKETS}).encode()))
    got = [
        (
            r.date.strftime("%Y-%m-%d"),
            r.tool,
            r.user if isinstance(r.user, str) else None,
            r.uses,
            r.credits,
        )
        for r in frame.itertuples()
    ]
    assert got == expected_rows()
    assert list(frame.index) == list(range(len(frame)))
    assert frame["date"].dtype == "datetime64[ns]"
    assert (frame["uses"].dtype, frame["credits"].dtype) == ("int64", "float64")
    assert frame.attrs[BREAKDOWN_EXCESS] == 0


def test_a_response_without_consumptions_is_an_empty_tidy_frame() -> None:
    body = {"data": [{"date": "2026-10-01T00:00:00.000Z", "consumptions": []}]}
    frame = tidy_frame(parse_usage_response(json.dumps(body).encode()))
    assert frame.empty
    assert list(frame.columns) == [
        "date",
        "tool",
        "user",
        "project",
        "project_reference",
        "group",
        "uses",
        "credits",
    ]
    assert frame["date"].dtype == "datetime64[ns]"


@pytest.mark.parametrize("credits_kind", ["fractional", "whole", "whole with -0.0"])
@pytest.mark.parametrize("order", ["sorted", "shuffled"])
def test_group_sums_add_up_exactly_as_a_pandas_groupby(order: str, credits_kind: str) -> None:
    """Sorted ids take pandas' reduceat path, shuffled ones its compensated sum; fractional
    credits make the two differ in the last bits, so each must be matched bit for bit."""
    rng = np.random.default_rng(11)
    keys = rng.integers(0, 40, 5000)
    if order == "sorted":
        keys.sort()
    credits = rng.random(5000) * 1000 / 3
    if credits_kind != "fractional":
        credits = np.floor(credits)
    if credits_kind == "whole with -0.0":
        keys[-1], credits[-1] = 40, -0.0  # a group of its own, last whichever the order
    uses = rng.integers(0, 10**6, 5000)
    expected = pd.DataFrame({"key": keys, "uses": uses, "credits": credits}).groupby("key").sum()
    ids, distinct = pd.factorize(keys, sort=True)
    sums = _group_sums(ids, len(distinct), credits)
    assert np.array_equal(sums, expected["credits"])
    assert np.array_equal(np.signbit(sums), np.signbit(expected["credits"]))
    assert np.array_equal(_group_sums(ids, len(distinct), uses), expected["uses"])
    assert np.array_equal(sums, pd.Series(credits).groupby(keys).sum().to_numpy())


def test_a_breakdown_over_its_credits_with_no_uses_is_scaled_without_a_warning() -> None:
    """Credits claimed beyond the tool's total by a user row with no uses: only the
    credits are scaled, and the uses' factor (uses over zero claimed uses, never taken)
    raises no division warning, which the command line would print and the suite fails."""
    body = {
        "data": [
            {
                "date": "2026-10-01T00:00:00.000Z",
                "consumptions": [
                    consumption("Video", 4, 10.0, row("a@x.com", 0, 15.0), row("b@x.com", 0, 5.0))
                ],
            }
        ]
    }
    frame = tidy_frame(parse_usage_response(json.dumps(body).encode()))
    named = frame[frame["user"].notna()].set_index("user")
    assert named["credits"].to_dict() == {"a@x.com": 7.5, "b@x.com": 2.5}  # 15:5 of 10
    assert frame["credits"].sum() == 10.0
    assert frame["uses"].sum() == 4  # all four unattributed
    assert frame.attrs[BREAKDOWN_EXCESS] == 10.0
