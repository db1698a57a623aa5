"""The stand-in API answers like the documented one: filters, buckets, gaps, breakdowns."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from typing import Any

import pytest

from reporter.sandbox import GROUPS, PROJECTS, SandboxServer, parse_fault
from tests.conftest import raw_usage, total_credits

OCTOBER = {"start_date": "2026-10-01", "end_date": "2026-10-31"}


def usages(payload: dict[str, Any]) -> list[dict[str, Any]]:
    return [u for b in payload["data"] for c in b["consumptions"] for u in c.get("user_usages", [])]


def test_day_buckets_add_up_to_the_month_bucket(api: SandboxServer) -> None:
    days = raw_usage(api, {"granularity": "day", **OCTOBER})
    month = raw_usage(api, {"granularity": "month", **OCTOBER})
    assert [b["date"] for b in month["data"]] == ["2026-10-01T00:00:00.000Z"]
    assert total_credits(days) == total_credits(month) > 0


def test_week_buckets_start_on_monday(api: SandboxServer) -> None:
    weeks = raw_usage(api, {"granularity": "week", **OCTOBER})
    starts = [dt.date.fromisoformat(b["date"][:10]) for b in weeks["data"]]
    assert all(day.weekday() == 0 for day in starts)
    assert starts[0] == dt.date(2026, 9, 28)


def test_end_date_is_inclusive_and_days_without_usage_are_missing(api: SandboxServer) -> None:
    days = raw_usage(api, {"granularity": "day", **OCTOBER})
    dates = [b["date"][:10] for b in days["data"]]
    assert len(dates) < 31  # the team has days off: those buckets are absent
    last = dates[-1]
    one_day = raw_usage(api, {"granularity": "day", "start_date": last, "end_date": last})
    assert [b["date"][:10] for b in one_day["data"]] == [last]
    assert total_credits(one_day) == total_credits({"data": days["data"][-1:]})


def test_group_filter_keeps_only_that_groups_members(api: SandboxServer) -> None:
    everyone = raw_usage(api, {"granularity": "month", **OCTOBER})
    design = raw_usage(api, {"granularity": "month", "group_ids": [10], **OCTOBER})
    assert 0 < total_credits(design) < total_credits(everyone)
    assert {u["group_name"] for u in usages(design)} == {"Design Team"}


def test_project_filter_and_api_key_filter(api: SandboxServer) -> None:
    ref, name = PROJECTS[0]
    project = raw_usage(api, {"granularity": "month", "project_references": [ref], **OCTOBER})
    assert {u["project_name"] for u in usages(project)} == {name}
    everyone = total_credits(raw_usage(api, {"granularity": "month", **OCTOBER}))
    by_key = [
        total_credits(raw_usage(api, {"granularity": "month", "api_key_ids": [k], **OCTOBER}))
        for k in ("api-key-1", "api-key-2", "api-key-3")
    ]
    assert sum(by_key) == everyone


def test_breakdowns_are_partial_as_the_contract_warns(api: SandboxServer) -> None:
    month = raw_usage(api, {"granularity": "month", **OCTOBER})
    consumptions = month["data"][0]["consumptions"]
    assert "user_usages" not in next(c for c in consumptions if c["tool"] == "Asset Download")
    attributed = sum(u["user_credits"] for u in usages(month))
    assert attributed < total_credits(month)
    rows = Counter(u["group_name"] for u in usages(month))
    assert set(rows) <= {name for _, name in GROUPS}


def test_answers_are_deterministic(api: SandboxServer) -> None:
    body = {"granularity": "day", "group_ids": [20], **OCTOBER}
    assert raw_usage(api, body) == raw_usage(api, body)


def test_no_data_before_the_team_started_or_after_today(api: SandboxServer) -> None:
    assert raw_usage(
        api, {"granularity": "month", "start_date": "2023-01-01", "end_date": "2023-12-31"}
    ) == {"data": []}
    future = raw_usage(
        api, {"granularity": "day", "start_date": "2026-11-20", "end_date": "2026-12-31"}
    )
    assert max(b["date"][:10] for b in future["data"]) < "2026-11-25"


@pytest.mark.parametrize(
    ("spec", "kinds"),
    [
        ("503", ["status"]),
        ("429:2x3", ["status"] * 3),
        ("slow:0.5", ["slow"]),
        ("truncate", ["truncate"]),
        ("malformedx2", ["malformed"] * 2),
        ("503x2", ["status"] * 2),
    ],
)
def test_fault_specs(spec: str, kinds: list[str]) -> None:
    assert [f.kind for f in parse_fault(spec)] == kinds


def test_unknown_fault_spec_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown fault 'explode'"):
        parse_fault("explode")
