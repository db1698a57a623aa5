"""A request to the team credit usage endpoint: its filters, dates and how they are spelt."""

from __future__ import annotations

import datetime as dt
import json
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from reporter.errors import (
    ApiRequestError,
)
from reporter.periods import Granularity

ENDPOINT = "/v1/analytics/team-credit-usage"
KEY_HEADER = "x-magnific-api-key"
GRANULARITIES: tuple[str, ...] = ("day", "week", "month", "year")
MB = 1024 * 1024

DateForm = Literal["datetime", "date"]
"""How a request spells its dates: ``2026-10-01T00:00:00.000Z`` (the documented example)
or ``2026-10-01`` (the documented type); the documentation shows both."""


# --- request -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class UsageQuery:
    """One request's body; validated on creation so nothing invalid is sent."""

    granularity: Granularity
    start_date: dt.date
    end_date: dt.date  # inclusive, as the documented quarter example reads
    project_references: tuple[str, ...] = ()
    api_key_ids: tuple[str, ...] = ()
    group_ids: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        problems = validate_query_fields(
            granularity=self.granularity,
            start_date=self.start_date,
            end_date=self.end_date,
            project_references=self.project_references,
            api_key_ids=self.api_key_ids,
            group_ids=self.group_ids,
        )
        if problems:
            raise ApiRequestError(
                "invalid usage query, not sent: " + "; ".join(problems),
                hint="check the report's filters in the config",
            )

    @classmethod
    def for_filters(
        cls,
        granularity: Granularity,
        start_date: dt.date,
        end_date: dt.date,
        filters: Mapping[str, Sequence[str] | Sequence[int]],
    ) -> UsageQuery:
        return cls(
            granularity=granularity,
            start_date=start_date,
            end_date=end_date,
            project_references=tuple(str(v) for v in filters.get("project_references", ())),
            api_key_ids=tuple(str(v) for v in filters.get("api_key_ids", ())),
            group_ids=tuple(int(v) for v in filters.get("group_ids", ())),
        )

    def body(self, *, dates: DateForm = "datetime", pad_end: bool = False) -> dict[str, Any]:
        """The JSON body, dates spelled in ``dates`` form (by default as the documented
        example does); ``pad_end`` sends the day after ``end_date``, for an API whose end
        is exclusive."""
        end = self.end_date + dt.timedelta(days=1) if pad_end else self.end_date
        body: dict[str, Any] = {
            "granularity": self.granularity,
            "start_date": spell_date(self.start_date, dates),
            "end_date": spell_date(end, dates),
        }
        if self.project_references:
            body["project_references"] = list(self.project_references)
        if self.api_key_ids:
            body["api_key_ids"] = list(self.api_key_ids)
        if self.group_ids:
            body["group_ids"] = list(self.group_ids)
        return body

    def describe(self) -> str:
        """A log-friendly summary: granularity, range and filters (never the key)."""
        filters = {k: v for k, v in self.body().items() if k.endswith(("_references", "_ids"))}
        return f"{self.granularity} {self.start_date}..{self.end_date}" + (
            f" {json.dumps(filters, separators=(',', ':'))}" if filters else ""
        )


def validate_query_fields(
    *,
    granularity: str,
    start_date: dt.date,
    end_date: dt.date,
    project_references: Sequence[Any],
    api_key_ids: Sequence[Any],
    group_ids: Sequence[Any],
) -> list[str]:
    """Problems with a request's fields, as the API would refuse them; shared with the sandbox."""
    problems: list[str] = []
    if granularity not in GRANULARITIES:
        problems.append(
            f"granularity must be one of {', '.join(GRANULARITIES)}, got {granularity!r}"
        )
    if start_date > end_date:
        problems.append(f"start_date {start_date} is after end_date {end_date}")
    for ref in project_references:
        try:
            uuid.UUID(str(ref))
        except ValueError:
            problems.append(f"project reference {ref!r} is not a UUID")
    for key_id in api_key_ids:
        if not isinstance(key_id, str) or not key_id:
            problems.append(f"api key id {key_id!r} must be a non-empty string")
    for group in group_ids:
        if isinstance(group, bool) or not isinstance(group, int) or group < 1:
            problems.append(f"group id {group!r} must be an integer >= 1")
    return problems


def spell_date(day: dt.date, form: DateForm) -> str:
    """``2026-10-01T00:00:00.000Z`` or ``2026-10-01``."""
    return f"{day.isoformat()}T00:00:00.000Z" if form == "datetime" else day.isoformat()


def end_pad_is_exact(query: UsageQuery) -> bool:
    """Whether the day after the query's end starts a bucket of its own.

    Then sending that day as ``end_date`` covers exactly the query's days whatever the
    API's end means: an exclusive end stops before it, and an inclusive end adds one
    bucket that starts after the query and is dropped. Weeks are taken to start on
    Monday, as ISO weeks do (the documentation does not say).
    """
    following = query.end_date + dt.timedelta(days=1)
    if query.granularity == "day":
        return True
    if query.granularity == "week":
        return following.weekday() == 0
    if query.granularity == "month":
        return following.day == 1
    return (following.month, following.day) == (1, 1)


_DATE_FIELD = re.compile(rb"\b(?:start|end)_date\b")


def names_date_field(status: int, body: bytes | bytearray) -> bool:
    """Whether an error answer is a refusal of the request's dates: a 400 or 422 whose
    body names ``start_date`` or ``end_date``."""
    return status in (400, 422) and _DATE_FIELD.search(body) is not None
