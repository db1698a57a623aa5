"""Client for the one Magnific endpoint we read: team credit usage over time.

Contract: shared/reference/magnific-team-credit-usage.md. Where it is silent
we follow its own advice: 401/403 mean a rejected key, 400/404/422 a rejected
request, and 429/5xx/network failures are retried with backoff and jitter,
honouring ``Retry-After``. Every third-party error is translated here, once,
into a ``ReporterError`` that names what to do.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import itertools
import json
import logging
import operator
import re
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import httpx
import numpy as np
import pandas as pd
import pydantic_core
import tenacity
from pandas.api.types import infer_dtype
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter
from pydantic import ValidationError as PydanticValidationError

from reporter import __version__
from reporter.environment import ApiSettings
from reporter.errors import (
    ApiAuthError,
    ApiError,
    ApiRequestError,
    ApiResponseError,
    ApiUnavailableError,
)
from reporter.periods import Granularity

log = logging.getLogger(__name__)

ENDPOINT = "/v1/analytics/team-credit-usage"
KEY_HEADER = "x-magnific-api-key"
GRANULARITIES: tuple[str, ...] = ("day", "week", "month", "year")
_RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})
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


def names_date_field(status: int, body: bytes) -> bool:
    """Whether an error answer is a refusal of the request's dates: a 400 or 422 whose
    body names ``start_date`` or ``end_date``."""
    return status in (400, 422) and _DATE_FIELD.search(body) is not None


# --- end_date: inclusive or exclusive ----------------------------------------

PROBE_DAYS = 4
"""Days the end probe's first request spans, ending yesterday: a few, so that a recent
day with usage is almost always among them, and few, so that a large team's answer
stays small."""


@dataclass(frozen=True, slots=True)
class EndProbe:
    """What the API's ``end_date`` means, as a day-granularity comparison showed it."""

    inclusive: bool | None  # None: the answers could not tell
    day: dt.date | None  # the day compared
    reason: str  # one line, for the log and `reporter check`


def probe_day(long_end: dt.date, long_days: set[dt.date]) -> dt.date | None:
    """The latest day with usage strictly before ``long_end``, in an answer that ended
    on ``long_end``: a day the answer covers whether its end was inclusive or not."""
    earlier = [day for day in long_days if day < long_end]
    return max(earlier) if earlier else None


def decide_end(
    long_end: dt.date,
    long_days: set[dt.date],
    short_end: dt.date | None,
    short_days: set[dt.date],
) -> EndProbe:
    """Inclusive or exclusive, from two day-granularity answers' days with usage.

    The long answer ended on ``long_end``; ``short_end`` is ``probe_day`` of it, a day
    with usage that the long answer covers either way. The short answer ends on that
    day: it has usage on ``short_end`` only if the end is inclusive. The days before
    ``short_end`` must agree between the two answers, and the short one must have nothing
    after its end; otherwise the API is not answering like-for-like and nothing is
    concluded.
    """
    if short_end is None or short_end >= long_end or short_end not in long_days:
        return EndProbe(None, short_end, "no usage on a recent day to compare")
    if any(day > short_end for day in short_days):
        return EndProbe(None, short_end, f"the answer ending {short_end} has later days")
    short_start = short_end - dt.timedelta(days=1)
    before_long = {day for day in long_days if short_start <= day < short_end}
    before_short = {day for day in short_days if day < short_end}
    if before_long != before_short:
        return EndProbe(None, short_end, "two answers for the same days disagree")
    if short_end in short_days:
        return EndProbe(True, short_end, f"an answer ending {short_end} includes that day")
    return EndProbe(False, short_end, f"an answer ending {short_end} leaves that day out")


def usage_days(response: UsageResponse) -> set[dt.date]:
    """The UTC days of a day-granularity answer that carry any usage."""
    return {
        _utc_day(bucket.date)
        for bucket in response.data
        if any(c.user_uses > 0 or c.user_credits > 0 for c in bucket.consumptions)
    }


# --- response ----------------------------------------------------------------


class _Lenient(BaseModel):
    # Unknown fields are tolerated: the API may grow; we read what we know.
    model_config = ConfigDict(extra="ignore", frozen=True)


MAX_PLAUSIBLE = 10**15
"""The largest count of uses or credits one response value may carry.

No team spends anywhere near a quadrillion credits in a bucket, so a larger
number is a broken response, not usage: refused as a contract error rather than
summed into a report. The cap also keeps every value an exact integer in a
float64 (exact up to 2**53, about 9e15) and far from int64 and float overflow,
so sums over a million rows cannot turn into ``inf`` or wrap around.
"""

_Count = Annotated[int, Field(ge=0, le=MAX_PLAUSIBLE)]
_Credits = Annotated[float, Field(ge=0, le=MAX_PLAUSIBLE)]
_TOO_LARGE = f"Input should be less than or equal to {MAX_PLAUSIBLE}"


class Consumption(_Lenient):
    tool: str
    user_uses: _Count
    user_credits: _Credits


class Bucket(_Lenient):
    date: dt.datetime
    consumptions: list[Consumption]


class _Totals(_Lenient):
    data: list[Bucket]


_TOTALS = TypeAdapter(_Totals)

USER_COLUMNS = (
    "date",
    "tool",
    "user",
    "project",
    "project_reference",
    "group",
    "uses",
    "credits",
)
# A user row's field, and the column it becomes.
_USER_TEXT = {
    "user_email": "user",
    "project_name": "project",
    "project_reference": "project_reference",
    "group_name": "group",
}


@dataclass(frozen=True)
class UsageResponse:
    """A validated response: the tool totals per bucket, and every user row as one frame.

    The user breakdown can run to a million rows; it is checked and flattened column by
    column (NumPy), never as one Python object per row.
    """

    data: list[Bucket]
    users: pd.DataFrame  # USER_COLUMNS; user is None where the API gave no address
    dropped: tuple[dt.date, ...] = ()  # starts of buckets outside the query, not counted


def parse_usage_response(content: bytes, query: UsageQuery | None = None) -> UsageResponse:
    """Parse a response body once, then validate it: the totals with pydantic, the user
    rows as columns.

    With ``query``, buckets that do not overlap its range are dropped (and listed in
    ``dropped``): a bucket dated years away is the API's mistake, not usage of the
    period, and counting it would change the report's total and land in its CSV.
    """
    try:
        raw = pydantic_core.from_json(content, cache_strings="all", allow_inf_nan=False)
    except ValueError as exc:
        raise ApiResponseError(
            f"the Magnific API sent a body that is not valid JSON ({len(content)} bytes): {exc}",
            hint="this is usually a transient upstream fault; run again later",
        ) from None
    # The breakdowns are taken out before pydantic sees the rest, so that it validates
    # a few hundred totals rather than building a model per user row.
    breakdowns: list[tuple[tuple[int, int], Any]] = []
    if isinstance(raw, dict) and isinstance(raw.get("data"), list):
        for b, bucket in enumerate(raw["data"]):
            consumptions = bucket.get("consumptions") if isinstance(bucket, dict) else None
            for c, consumption in enumerate(consumptions or ()):
                if isinstance(consumption, dict):
                    breakdowns.append(((b, c), consumption.pop("user_usages", None)))
    try:
        totals = _TOTALS.validate_python(raw)
    except PydanticValidationError as exc:
        first = exc.errors(include_url=False)[0]
        raise _contract_error(format_location(first["loc"]), first["msg"]) from None
    del raw
    inside = [query is None or _overlaps(bucket.date, query) for bucket in totals.data]
    breakdowns = [(place, rows) for place, rows in breakdowns if inside[place[0]]]
    # Places keep their index in the response, so errors name the row as the API sent it.
    return UsageResponse(
        [bucket for bucket, keep in zip(totals.data, inside, strict=True) if keep],
        _user_frame(totals.data, breakdowns),
        tuple(
            _utc_day(bucket.date)
            for bucket, keep in zip(totals.data, inside, strict=True)
            if not keep
        ),
    )


def _utc_day(when: dt.datetime) -> dt.date:
    """A bucket's start as a UTC calendar day (the API sends ``...T00:00:00.000Z``)."""
    if when.tzinfo is None:
        return when.date()
    try:
        return when.astimezone(dt.UTC).date()
    except OverflowError:  # year 1 or 9999 with an offset: no UTC day exists
        return when.date()


def _overlaps(start: dt.datetime, query: UsageQuery) -> bool:
    """Whether a bucket starting at ``start`` shares a day with the query's range.

    Overlap rather than containment: the API's week start is undocumented, so a week
    bucket may start a few days before ``start_date`` and still be the period's.
    """
    first = _utc_day(start)
    if first > query.end_date:
        return False
    if query.granularity == "day":
        last = first
    elif query.granularity == "week":
        last = first + dt.timedelta(days=6)
    elif query.granularity == "month":
        following = dt.date(first.year + first.month // 12, first.month % 12 + 1, 1)
        last = following - dt.timedelta(days=1)
    else:
        last = dt.date(first.year, 12, 31)
    return last >= query.start_date


def _contract_error(where: str, message: str) -> ApiResponseError:
    return ApiResponseError(
        f"the Magnific API sent an unexpected response: {where}: {message}",
        hint="the response breaks the documented contract; run again later, and report it"
        " to Magnific if it persists",
    )


def _user_frame(
    buckets: list[Bucket], breakdowns: list[tuple[tuple[int, int], Any]]
) -> pd.DataFrame:
    """All user rows, flattened and checked column by column."""
    lists: list[list[Any]] = []
    places: list[tuple[int, int]] = []
    for place, rows in breakdowns:
        if rows is None:
            continue
        if not isinstance(rows, list):
            b, c = place
            raise _contract_error(
                f"data[{b}].consumptions[{c}].user_usages", "Input should be a valid list"
            )
        if rows:
            lists.append(rows)
            places.append(place)
    counts = np.fromiter(map(len, lists), dtype=np.int64, count=len(lists))
    rows = list(itertools.chain.from_iterable(lists))
    ends = np.cumsum(counts)

    def fail(index: int, name: str | None, message: str) -> ApiResponseError:
        """Name the first bad row as pydantic would: data[b].consumptions[c].user_usages[k]."""
        slot = int(np.searchsorted(ends, index, side="right"))
        b, c = places[slot]
        k = index - int(ends[slot] - counts[slot])
        where = f"data[{b}].consumptions[{c}].user_usages[{k}]" + (f".{name}" if name else "")
        return _contract_error(where, message)

    is_dict = _of_type(rows, dict)
    if not is_dict.all():
        raise fail(int((~is_dict).argmax()), None, "Input should be a valid dictionary")
    columns: dict[str, Any] = {}
    for name, column in _USER_TEXT.items():
        values = np.array(list(map(operator.methodcaller("get", name), rows)), dtype=object)
        # One pass in C decides the common case; only a bad column is searched for its row.
        if infer_dtype(values, skipna=True) not in ("string", "empty"):
            text = _of_type(values, str, type(None))
            raise fail(int((~text).argmax()), name, "Input should be a valid string")
        columns[column] = values
    columns["user"][columns["user"] == ""] = None
    for name, column in (("user_uses", "uses"), ("user_credits", "credits")):
        values = np.array(list(map(operator.methodcaller("get", name), rows)), dtype=object)
        kind = infer_dtype(values, skipna=False)
        numeric = (
            np.ones(len(values), dtype=bool)
            if kind in ("integer", "floating", "mixed-integer-float", "empty")
            else _of_type(values, int, float)
        )
        if not numeric.all():
            bad = int((~numeric).argmax())
            problem = "Field required" if values[bad] is None else "Input should be a valid number"
            raise fail(bad, name, problem)
        try:
            number = values.astype(np.float64)
        except OverflowError:  # an integer with hundreds of digits: no float holds it
            bad = next(i for i, v in enumerate(values) if abs(v) > MAX_PLAUSIBLE)
            too_large = values[bad] > 0
            raise fail(
                bad, name, _TOO_LARGE if too_large else "Input should be greater than or equal to 0"
            ) from None
        problems = [
            (number < 0, "Input should be greater than or equal to 0"),
            (number > MAX_PLAUSIBLE, _TOO_LARGE),
        ]
        if column == "uses":
            problems.insert(0, (number != np.floor(number), "Input should be a valid integer"))
        for mask, problem in problems:
            if mask.any():
                raise fail(int(mask.argmax()), name, problem)
        columns[column] = number.astype(np.int64) if column == "uses" else number
    del rows, lists
    # One date and tool per breakdown, repeated for its rows.
    columns["date"] = pd.to_datetime([buckets[b].date for b, _ in places], utc=True).repeat(counts)
    columns["tool"] = np.repeat(
        np.array([buckets[b].consumptions[c].tool for b, c in places], dtype=object), counts
    )
    return pd.DataFrame({name: columns[name] for name in USER_COLUMNS})


def _of_type(values: Any, *kinds: type) -> np.ndarray:
    """Which elements are exactly of one of ``kinds`` (bool is not a number here)."""
    wanted = set(kinds)
    return np.fromiter(map(wanted.__contains__, map(type, values)), dtype=bool, count=len(values))


def format_location(loc: Sequence[str | int]) -> str:
    """A validation error's location as a user reads it.

    ``('data', 3, 'consumptions', 1, 'user_credits')`` -> ``data[3].consumptions[1].user_credits``
    """
    text = ""
    for item in loc:
        text += f"[{item}]" if isinstance(item, int) else (f".{item}" if text else str(item))
    return text or "body"


# --- retries -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How hard to try: attempts and waits per request, a deadline for the whole request
    (every attempt, wait and byte of the body), and a cap on one response's size; and how
    to spell what the API's documentation leaves open (``auto``: find out)."""

    attempts: int = 5
    initial_wait: float = 0.5
    max_wait: float = 30.0
    total_timeout: float = 180.0
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    max_response_bytes: int = 512 * MB
    date_format: Literal["auto", "datetime", "date"] = "auto"
    end_inclusive: Literal["auto"] | bool = "auto"


_ERROR_BODY_LIMIT = 64 * 1024  # an error answer's message is a line, never megabytes


class _DatesRefused(ApiRequestError):
    """The API refused the request's dates (a 400 or 422 naming a date field)."""


class _Retryable(Exception):
    """An attempt that failed in a way worth trying again."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


@dataclass
class _WaitRetryAfter(tenacity.wait.wait_base):
    """Exponential backoff with full jitter, unless the server said how long to wait."""

    policy: RetryPolicy
    _backoff: tenacity.wait.wait_base = field(init=False)

    def __post_init__(self) -> None:
        self._backoff = tenacity.wait_random_exponential(
            multiplier=self.policy.initial_wait, max=self.policy.max_wait
        )

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        outcome = retry_state.outcome
        exc = outcome.exception() if outcome else None
        if isinstance(exc, _Retryable) and exc.retry_after is not None:
            return min(exc.retry_after, self.policy.max_wait)
        return float(self._backoff(retry_state))


def parse_retry_after(value: str | None, *, now: dt.datetime | None = None) -> float | None:
    """``Retry-After`` as seconds: either delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():  # "²" is a digit to str.isdigit(), not to float()
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    current = now or dt.datetime.now(dt.UTC)
    return max(0.0, (when - current).total_seconds())


# --- client ------------------------------------------------------------------


class MagnificClient:
    """A pooled, retrying, concurrency-bounded client; safe to share between threads."""

    def __init__(
        self,
        settings: ApiSettings,
        *,
        retry: RetryPolicy | None = None,
        max_in_flight: int = 4,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        today: Callable[[], dt.date] | None = None,
    ) -> None:
        self._settings = settings
        self._sleep = sleep
        self._today = today or (lambda: dt.datetime.now(dt.UTC).date())
        self._retry = retry or RetryPolicy()
        # What this run has learnt about the API; shared by every thread, under a lock.
        self._learnt = threading.Lock()
        self._date_form: DateForm = "date" if self._retry.date_format == "date" else "datetime"
        self._date_form_known = self._retry.date_format != "auto"
        self._end_probe: EndProbe | None = None
        self._probing = threading.Lock()
        self._slots = threading.BoundedSemaphore(max_in_flight)
        self._http = httpx.Client(
            base_url=settings.base_url,
            timeout=httpx.Timeout(self._retry.read_timeout, connect=self._retry.connect_timeout),
            limits=httpx.Limits(
                max_connections=max_in_flight, max_keepalive_connections=max_in_flight
            ),
            headers={"user-agent": f"reporter/{__version__}", "accept": "application/json"},
            transport=transport,
        )

    def __repr__(self) -> str:
        return f"MagnificClient(base_url={self._settings.base_url!r}, key=**********)"

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> MagnificClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def fetch_usage(self, query: UsageQuery) -> UsageResponse:
        """POST the query, retrying transient failures; return the validated response,
        without buckets outside the query's range (a warning names them)."""
        pad_end = self._pads_end(query)
        response = parse_usage_response(self._fetch(query, pad_end=pad_end), query)
        dropped = response.dropped
        if pad_end:  # the bucket of the day after the end was asked for, not sent by mistake
            following = query.end_date + dt.timedelta(days=1)
            dropped = tuple(day for day in dropped if day != following)
        if dropped:
            log.warning(
                "dropped %d bucket%s outside %s..%s: %s",
                len(dropped),
                "s" if len(dropped) != 1 else "",
                query.start_date,
                query.end_date,
                _list_dates(dropped),
            )
        return response

    def fetch_raw(self, query: UsageQuery) -> bytes:
        """The response body of a successful request, as bytes.

        When the end is padded (see ``_pads_end``) the body may hold a bucket starting
        the day after the query's end; ``parse_usage_response(body, query)`` drops it.
        """
        return self._fetch(query, pad_end=self._pads_end(query))

    # --- what the documentation leaves open ----------------------------------------

    def _pads_end(self, query: UsageQuery) -> bool:
        """Whether to send the day after the query's end, so that the answer covers
        exactly its days: always for an exclusive end, never for an inclusive one, and
        with ``auto`` whenever that is exact either way (``end_pad_is_exact``), which is
        every query a monthly run makes; otherwise as the end probe found."""
        setting = self._retry.end_inclusive
        if setting != "auto":
            return setting is False
        if end_pad_is_exact(query):
            return True
        return self.end_semantics().inclusive is False

    def end_semantics(self) -> EndProbe:
        """The API's end semantics, probed once per client (two small requests) and kept.

        A probe that fails or cannot tell is kept too, so a run never probes twice; the
        client then sends ends as they are, the documented example's reading, and says so
        once. A rejected key is raised: nothing else can work either.
        """
        with self._probing:
            if self._end_probe is None:
                try:
                    probe = self.probe_end()
                except ApiAuthError:
                    raise
                except ApiError as exc:
                    probe = EndProbe(None, None, f"the probe failed: {exc.message}")
                if probe.inclusive is None:
                    log.warning(
                        "cannot tell whether the API's end_date is inclusive (%s); sending"
                        " ends as they are, which loses a range's last day if it is"
                        " exclusive. Set [api] end_inclusive in the config to say.",
                        probe.reason,
                    )
                else:
                    log.info(
                        "the API's end_date is %s (%s)",
                        "inclusive" if probe.inclusive else "exclusive",
                        probe.reason,
                    )
                self._end_probe = probe
            return self._end_probe

    def probe_end(self) -> EndProbe:
        """Ask for the last few complete days by day, then again ending on the latest of
        them with usage: the second answer has that day only if the end is inclusive."""
        long_end = self._today() - dt.timedelta(days=1)
        long_start = long_end - dt.timedelta(days=PROBE_DAYS - 1)
        long_days = self._probe_days(UsageQuery("day", long_start, long_end))
        short_end = probe_day(long_end, long_days)
        if short_end is None:
            return decide_end(long_end, long_days, None, set())
        short_start = short_end - dt.timedelta(days=1)
        short_days = self._probe_days(UsageQuery("day", short_start, short_end))
        return decide_end(long_end, long_days, short_end, short_days)

    def _probe_days(self, query: UsageQuery) -> set[dt.date]:
        # Parsed without the query: a day past the end must be seen, not dropped.
        return usage_days(parse_usage_response(self._fetch(query, pad_end=False)))

    def accepts_dates(self, form: DateForm) -> bool:
        """Whether the API takes dates spelled in ``form``: one small request (the last
        two complete days as one month bucket), without adapting. A rejected key raises
        ``ApiAuthError``; other failures raise as usual."""
        last = self._today() - dt.timedelta(days=1)
        query = UsageQuery("month", last - dt.timedelta(days=1), last)
        try:
            self._fetch_as(query, form, pad_end=False, deadline=self._deadline())
        except _DatesRefused:
            return False
        return True

    def use_dates(self, form: DateForm) -> None:
        """Send dates in ``form`` from now on, as found to work (``reporter check``)."""
        with self._learnt:
            self._date_form, self._date_form_known = form, True

    @property
    def date_form(self) -> DateForm:
        """The date form this client sends now (``auto`` may have switched it)."""
        with self._learnt:
            return self._date_form

    # --- requests ----------------------------------------------------------------

    def _deadline(self) -> float:
        return time.monotonic() + self._retry.total_timeout

    def _fetch(self, query: UsageQuery, *, pad_end: bool) -> bytes:
        """One request, in the date form that works: with ``auto``, a refusal naming a
        date field is retried once in the other form, which is then kept for the run."""
        deadline = self._deadline()
        form = self.date_form
        try:
            content = self._fetch_as(query, form, pad_end=pad_end, deadline=deadline)
        except _DatesRefused as refused:
            other = self._alternative(form)
            if other is None:
                raise
            try:
                content = self._fetch_as(query, other, pad_end=pad_end, deadline=deadline)
            except _DatesRefused:
                raise refused from None  # not the form, then: the first answer says why
            self._learn_form(other, refused)
            return content
        self._learn_form(form, None)
        return content

    def _alternative(self, refused: DateForm) -> DateForm | None:
        """The form to try after ``refused`` was refused, if any."""
        with self._learnt:
            if self._retry.date_format != "auto":
                return None
            if self._date_form != refused:  # another request has switched meanwhile
                return self._date_form
            if self._date_form_known:  # it worked before: the dates themselves are wrong
                return None
            return "date" if refused == "datetime" else "datetime"

    def _learn_form(self, form: DateForm, refused: _DatesRefused | None) -> None:
        with self._learnt:
            if self._date_form == form:
                self._date_form_known = True
                return
            if refused is None:
                return
            self._date_form, self._date_form_known = form, True
        log.warning(
            "%s; sending %s dates from now on. Set [api] date_format = %r in the config"
            " to skip the refused request.",
            refused.message,
            "plain (YYYY-MM-DD)" if form == "date" else "datetime",
            form,
        )

    def _fetch_as(
        self, query: UsageQuery, form: DateForm, *, pad_end: bool, deadline: float
    ) -> bytes:
        """The body of a successful request sent in ``form``.

        ``deadline`` covers the whole request: retries stop before a wait would cross
        it, and each attempt's timeouts and body reading are held to what is left, so a
        server trickling a byte a second cannot stretch a run indefinitely.
        """
        started = time.monotonic()
        left = max(0.0, deadline - started)
        body = query.body(dates=form, pad_end=pad_end)
        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(_Retryable),
            wait=_WaitRetryAfter(self._retry),
            stop=(
                tenacity.stop_after_attempt(self._retry.attempts) | tenacity.stop_before_delay(left)
            ),
            before_sleep=self._log_retry,
            sleep=self._sleep,
            reraise=True,
        )
        attempts = 0
        try:
            for attempt in retrying:
                with attempt:
                    attempts += 1
                    content = self._attempt(query, body, deadline)
        except _Retryable as exc:
            elapsed = time.monotonic() - started
            raise ApiUnavailableError(
                f"the Magnific API did not answer successfully: {exc.reason}"
                f" (gave up after {attempts} attempt{'s' if attempts != 1 else ''}"
                f" in {elapsed:.1f}s)",
                url=self._url(),
                hint="the API may be down or rate-limiting; run again later (delivered"
                " reports are not sent twice)",
            ) from None
        log.info(
            "POST %s %s -> 200 in %.2fs (%d attempt%s, %d bytes)",
            ENDPOINT,
            query.describe(),
            time.monotonic() - started,
            attempts,
            "s" if attempts != 1 else "",
            len(content),
        )
        return content

    def _url(self) -> str:
        return f"{self._settings.base_url}{ENDPOINT}"

    def _attempt(self, query: UsageQuery, sent: dict[str, Any], deadline: float) -> bytes:
        if not self._slots.acquire(timeout=max(0.0, deadline - time.monotonic())):
            raise self._past_deadline("still waiting for a free connection")
        try:
            status, body, headers = self._exchange(query, sent, deadline)
        finally:
            self._slots.release()
        if status == 200:
            return body
        message = _api_message(body)
        if names_date_field(status, body):
            raise _DatesRefused(
                f"the Magnific API refused the request's dates ({status})"
                + (f": {message}" if message else ""),
                status=status,
                url=self._url(),
                hint='set [api] date_format in the config to "auto" (the default),'
                ' "datetime" or "date"; check the period asked for',
            )
        if status in _RETRYABLE_STATUS:
            raise _Retryable(
                f"HTTP {status}{': ' + message if message else ''}",
                retry_after=parse_retry_after(headers.get("retry-after")),
            )
        if status in (401, 403):
            raise ApiAuthError(
                f"the Magnific API rejected the key in MAGNIFIC_API_KEY ({status})"
                + (f": {message}" if message else ""),
                status=status,
                url=self._url(),
                hint="check that MAGNIFIC_API_KEY holds a current key of your team",
            )
        if status in (400, 404, 422):
            raise ApiRequestError(
                f"the Magnific API refused the request ({status})"
                + (f": {message}" if message else ""),
                status=status,
                url=self._url(),
                hint="check the report's filters (project_references, group_ids, api_key_ids)"
                " and MAGNIFIC_API_BASE_URL",
            )
        raise ApiError(
            f"the Magnific API answered with unexpected status {status}"
            + (f": {message}" if message else ""),
            status=status,
            url=self._url(),
        )

    def _exchange(
        self, query: UsageQuery, sent: dict[str, Any], deadline: float
    ) -> tuple[int, bytes, httpx.Headers]:
        """One POST, its body streamed in: status, body (an error's only in part), headers."""
        started = time.monotonic()
        left = deadline - started
        if left <= 0:
            raise self._past_deadline("no time was left for another attempt")
        # Each socket wait is held to what is left of the deadline; reading the body
        # checks the clock again as every piece arrives.
        timeout = httpx.Timeout(
            min(self._retry.read_timeout, left), connect=min(self._retry.connect_timeout, left)
        )
        headers = {KEY_HEADER: self._settings.key.get_secret_value()}
        try:
            with self._http.stream(
                "POST", ENDPOINT, json=sent, headers=headers, timeout=timeout
            ) as response:
                status = response.status_code
                log.debug(
                    "POST %s %s -> %d in %.2fs",
                    ENDPOINT,
                    query.describe(),
                    status,
                    time.monotonic() - started,
                )
                if status == 200:
                    body = self._read_body(response, deadline)
                else:
                    body = _read_some(response, _ERROR_BODY_LIMIT, deadline)
                return status, body, response.headers
        except httpx.TimeoutException as exc:
            if time.monotonic() >= deadline:
                raise self._past_deadline(f"timed out ({type(exc).__name__})") from None
            raise _Retryable(f"timed out ({type(exc).__name__})") from None
        except httpx.TransportError as exc:
            raise _Retryable(f"cannot reach {self._url()}: {_reason(exc)}") from None

    def _read_body(self, response: httpx.Response, deadline: float) -> bytes:
        """The whole body, refused as soon as it is known to pass the size cap or the
        deadline: a declared Content-Length before reading, then piece by piece."""
        cap = self._retry.max_response_bytes
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > cap:
            raise self._too_large(f"it announced {int(declared):,} bytes")
        chunks: list[bytes] = []
        size = 0
        for chunk in response.iter_bytes():
            size += len(chunk)
            if size > cap:
                raise self._too_large(f"more than {cap:,} bytes arrived")
            if time.monotonic() > deadline:
                raise self._past_deadline(f"the body was still arriving ({size:,} bytes so far)")
            chunks.append(chunk)
        return b"".join(chunks)

    def _past_deadline(self, detail: str) -> ApiUnavailableError:
        return ApiUnavailableError(
            "the Magnific API did not answer within the deadline of"
            f" {self._retry.total_timeout:g}s ([api] total_timeout_seconds): {detail}",
            url=self._url(),
            hint="if the API is slow but working, raise [api] total_timeout_seconds in the"
            " config; otherwise run again later (delivered reports are not sent twice)",
        )

    def _too_large(self, detail: str) -> ApiResponseError:
        return ApiResponseError(
            "the Magnific API's response is larger than the cap of"
            f" {self._retry.max_response_bytes / MB:g} MB ([api] max_response_mb): {detail}",
            url=self._url(),
            hint="narrow the report (filters, a shorter period) or raise [api] max_response_mb"
            " in the config if the host has the memory for it",
        )

    def _log_retry(self, state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0.0
        log.warning(
            "attempt %d failed (%s); retrying in %.1fs",
            state.attempt_number,
            exc.reason if isinstance(exc, _Retryable) else exc,
            wait,
        )


def _list_dates(dates: Sequence[dt.date], shown: int = 10) -> str:
    """``2031-01-01, 2019-05-02``, the first ``shown`` of them and how many more."""
    text = ", ".join(day.isoformat() for day in dates[:shown])
    return text + (f" and {len(dates) - shown} more" if len(dates) > shown else "")


def _reason(exc: httpx.TransportError) -> str:
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0][:200]


def _read_some(response: httpx.Response, limit: int, deadline: float) -> bytes:
    """The first ``limit`` bytes of a body, or what arrived before the deadline."""
    data = bytearray()
    for chunk in response.iter_bytes():
        data += chunk
        if len(data) >= limit or time.monotonic() > deadline:
            break
    return bytes(data[:limit])


def _api_message(body: bytes) -> str:
    """The API's own error message, if the body carries one; never the request.

    On one line: it ends up in an ``Error:`` line and in the summary's table."""
    try:
        payload = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return _one_line(body.decode("utf-8", "replace"))[:200]
    if isinstance(payload, dict):
        for key in ("message", "detail", "error", "title"):
            value = payload.get(key)
            if isinstance(value, str) and value:
                return _one_line(value)[:200]
            if isinstance(value, dict | list) and value:
                return json.dumps(value)[:200]
    return ""


def _one_line(text: str) -> str:
    return " ".join(text.split())
