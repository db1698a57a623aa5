"""The endpoint's answer: validated against the contract, user rows flattened column by column."""

from __future__ import annotations

import datetime as dt
import itertools
import operator
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, BinaryIO

import ijson
import numpy as np
import pandas as pd
import pydantic_core
from pandas.api.types import infer_dtype
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter
from pydantic import ValidationError as PydanticValidationError

from reporter.errors import (
    ApiResponseError,
)
from reporter.magnific.query import UsageQuery

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


# Above this, a body is read a tool's breakdown at a time (``_streamed``), and kept on
# disk while it is (``SpooledBody``): a 5,000-person team's six months by month are
# ~55 MB of JSON, and in memory, as bytes and as Python objects, they were most of a
# run's peak.
STREAM_ABOVE = 4 * 1024 * 1024


class SpooledBody:
    """A big answer in an anonymous temporary file (no name on disk; gone when closed
    or collected), which the streaming parser reads in passes."""

    def __init__(self) -> None:
        self._file = tempfile.TemporaryFile()  # noqa: SIM115  (closed with this object)
        self._size = 0

    def write(self, chunk: bytes | bytearray) -> None:
        self._file.write(chunk)
        self._size += len(chunk)

    def __len__(self) -> int:
        return self._size

    def reader(self) -> BinaryIO:
        self._file.seek(0)
        return self._file

    def read_all(self) -> bytes:
        """The whole body in memory: only to say what is wrong with one."""
        return self.reader().read()

    def close(self) -> None:
        self._file.close()


# An answer's body as it was read: small ones grown in place (never copied into
# ``bytes``), big ones spooled to disk.
Body = bytes | bytearray | SpooledBody


def parse_usage_response(
    content: Body, query: UsageQuery | None = None, *, stream_above: int = STREAM_ABOVE
) -> UsageResponse:
    """Parse a response body once, then validate it: the totals with pydantic, the user
    rows as columns.

    With ``query``, buckets that do not overlap its range are dropped (and listed in
    ``dropped``): a bucket dated years away is the API's mistake, not usage of the
    period, and counting it would change the report's total and land in its CSV.
    """
    if isinstance(content, SpooledBody):
        spooled = content  # read once: its file is closed whatever happens
        try:
            streamed = _streamed(spooled)
            if streamed is not None:
                return _kept(*streamed, query)
            content = spooled.read_all()  # something is wrong with it: the parser says what
        finally:
            spooled.close()
    elif len(content) > stream_above:
        streamed = _streamed(content)
        if streamed is not None:
            return _kept(*streamed, query)
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
    users = _user_frame(_labels(totals.data), breakdowns)
    return _kept(totals.data, users, query, inside)


def _kept(
    buckets: list[Bucket],
    users: pd.DataFrame,
    query: UsageQuery | None,
    inside: list[bool] | None = None,
) -> UsageResponse:
    """The response without the buckets outside ``query``'s range; ``inside`` given: their
    user rows are left out already."""
    filtered = inside is not None
    if inside is None:
        inside = [query is None or _overlaps(bucket.date, query) for bucket in buckets]
    if not filtered and not all(inside):
        starts = {b.date for b, keep in zip(buckets, inside, strict=True) if not keep}
        users = users[~users["date"].isin(pd.to_datetime(list(starts), utc=True))]
        users.index = pd.RangeIndex(len(users))
        if users.empty:  # as a response without rows has it, dtypes and all
            users = _user_frame(_labels([]), [])
    return UsageResponse(
        [bucket for bucket, keep in zip(buckets, inside, strict=True) if keep],
        users,
        tuple(utc_day(b.date) for b, keep in zip(buckets, inside, strict=True) if not keep),
    )


def _labels(buckets: Sequence[Bucket]) -> Callable[[int, int], tuple[dt.datetime, str]]:
    return lambda b, c: (buckets[b].date, buckets[b].consumptions[c].tool)


_BUCKET = TypeAdapter(Bucket)


class _Reader:
    """A body as the file ijson reads, piece by piece, without copying it whole."""

    def __init__(self, content: bytes | bytearray) -> None:
        self._view = memoryview(content)
        self._at = 0

    def read(self, size: int = -1) -> bytes:
        end = len(self._view) if size < 0 else self._at + size
        piece = self._view[self._at : end].tobytes()
        self._at += len(piece)
        return piece


def _source(content: Body) -> BinaryIO | _Reader:
    """A fresh pass over ``content`` for ijson."""
    return content.reader() if isinstance(content, SpooledBody) else _Reader(content)


def _streamed(content: Body) -> tuple[list[Bucket], pd.DataFrame] | None:
    """The body read one tool's breakdown at a time (ijson), each turned into columns at
    once, so a million user rows never exist as Python objects together. None when the
    body is anything but a well-formed answer: the whole-body parser then says what is
    wrong with it, in the words it always has."""
    shape: list[tuple[Any, int]] = []  # each bucket's date and how many tools it has
    try:
        for prefix, event, value in ijson.parse(_source(content)):
            if event == "start_map":
                if prefix == "data.item":
                    shape.append((None, 0))
                elif prefix == "data.item.consumptions.item":
                    shape[-1] = (shape[-1][0], shape[-1][1] + 1)
            elif prefix == "data.item.date" and shape:
                shape[-1] = (value, shape[-1][1])
        consumptions = ijson.items(_source(content), "data.item.consumptions.item", use_float=True)
        buckets: list[Bucket] = []
        frames = []
        strings: dict[str, str] = {}  # one object per distinct text, as pydantic's cache
        for b, (date, count) in enumerate(shape):
            tools = []
            for c in range(count):
                consumption = next(consumptions)
                if not isinstance(consumption, dict):
                    return None
                rows = consumption.pop("user_usages", None)
                tools.append(consumption)
                if rows is not None:
                    one = _BUCKET.validate_python({"date": date, "consumptions": [consumption]})
                    place = (one.date, one.consumptions[0].tool)
                    frames.append(_user_frame(lambda *_, at=place: at, [((b, c), rows)], strings))
            buckets.append(_BUCKET.validate_python({"date": date, "consumptions": tools}))
        if next(consumptions, None) is not None:
            return None
    except (ijson.JSONError, PydanticValidationError, ApiResponseError, StopIteration):
        return None
    if not shape:
        return None  # not even a "data" list: let the whole-body parser say so
    users = pd.concat(frames, ignore_index=True) if frames else _user_frame(_labels([]), [])
    return buckets, users


def utc_day(when: dt.datetime) -> dt.date:
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
    first = utc_day(start)
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
    label: Callable[[int, int], tuple[dt.datetime, str]],
    breakdowns: list[tuple[tuple[int, int], Any]],
    strings: dict[str, str] | None = None,
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
        if strings is not None and len(values):
            # Each distinct text once across the whole body, however it was read.
            codes, uniques = pd.factorize(values)
            shared = [strings.setdefault(text, text) for text in uniques]
            values = np.array([*shared, None], dtype=object)[codes]
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
    labels = [label(b, c) for b, c in places]
    columns["date"] = pd.to_datetime([date for date, _ in labels], utc=True).repeat(counts)
    columns["tool"] = np.repeat(np.array([tool for _, tool in labels], dtype=object), counts)
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
