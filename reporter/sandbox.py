"""A stand-in for the Magnific API: synthetic team data behind a real HTTP server.

It implements the documented contract (shared/reference) over a deterministic
dataset: projects, groups, API keys, tools with credit prices, users, quiet
weekends, days with no usage at all, usage not attributed to any user, and a
tool (Asset Download) that never carries a per-user breakdown. It validates
requests as the API would and can inject faults, so that tests, ``reporter
demo`` and template authors exercise the same code paths as production.

Where the contract is silent the sandbox picks one reading and says so:
weeks start on Monday and empty buckets are omitted. Where it contradicts itself
the sandbox can play either side, so that the client is tested against each:
``dates`` accepts ``2026-10-01T00:00:00.000Z``, ``2026-10-01`` or (the default)
both, and ``end`` makes ``end_date`` inclusive (the default) or exclusive.
"""

from __future__ import annotations

import collections
import datetime as dt
import functools
import itertools
import json
import re
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

import numpy as np
import pandas as pd

from reporter.magnific import ENDPOINT, KEY_HEADER, validate_query_fields

# --- the synthetic team ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Tool:
    name: str
    credits_per_use: int
    popularity: float  # chance that an active user touches it on a given day
    has_user_breakdown: bool = True


TOOLS: tuple[Tool, ...] = (
    Tool("AI Image Models", 40, 0.55),
    Tool("Video Generation", 250, 0.12),
    Tool("Image Upscaler", 20, 0.30),
    Tool("Image Editing", 15, 0.35),
    Tool("Audio Generation", 60, 0.08),
    Tool("Icon Generator", 5, 0.20),
    Tool("Background Remover", 10, 0.25),
    Tool("Asset Download", 90, 0.15, has_user_breakdown=False),
)

PROJECTS: tuple[tuple[str, str], ...] = (
    ("a1b2c3d4-1111-4000-8000-000000000001", "Marketing Campaign"),
    ("a1b2c3d4-1111-4000-8000-000000000002", "Product Launch"),
    ("a1b2c3d4-1111-4000-8000-000000000003", "Brand Refresh"),
    ("a1b2c3d4-1111-4000-8000-000000000004", "Mobile App"),
    ("a1b2c3d4-1111-4000-8000-000000000005", "Customer Stories"),
)

GROUPS: tuple[tuple[int, str], ...] = (
    (10, "Design Team"),
    (20, "Marketing"),
    (30, "Engineering"),
    (40, "Content Studio"),
)

API_KEYS: tuple[str, ...] = ("api-key-1", "api-key-2", "api-key-3")

_FIRST = (
    "ana",
    "ben",
    "carla",
    "dev",
    "elena",
    "farid",
    "grace",
    "hugo",
    "ines",
    "jonas",
    "kira",
    "liam",
    "maya",
    "nico",
    "olga",
    "pablo",
    "quinn",
    "rosa",
    "sami",
    "tara",
    "uma",
    "victor",
    "wen",
    "ximena",
    "yusuf",
    "zoe",
)
_LAST = (
    "garcia",
    "smith",
    "novak",
    "okafor",
    "rossi",
    "tanaka",
    "muller",
    "silva",
    "kim",
    "haddad",
    "larsen",
    "dubois",
    "costa",
    "ivanova",
    "nguyen",
    "patel",
)

DATA_START = dt.date(2024, 1, 1)
"""The team's first day of usage; nothing exists before it."""


@dataclass(frozen=True)
class Team:
    """Who the synthetic team is: users with a group, projects and a key each."""

    seed: int
    emails: np.ndarray  # str, one per user
    user_group: np.ndarray  # index into GROUPS
    user_projects: np.ndarray  # (users, 2) indices into PROJECTS
    user_key: np.ndarray  # index into API_KEYS
    user_activity: np.ndarray  # chance of being active on a weekday
    user_joined: np.ndarray  # months after DATA_START the user started (0: from the start)
    intensity: float = 1.0  # multiplies every daily chance of use; 20 uses nearly all of them

    @property
    def size(self) -> int:
        return len(self.emails)


def synthetic_team(users: int = 48, seed: int = 7, intensity: float = 1.0) -> Team:
    """A deterministic team of ``users`` people; the same arguments give the same team.

    ``intensity`` scales how often people use each tool: 1 is a typical team, and about
    20 has nearly everyone on nearly every tool every day, the heaviest answer the API
    could give (about 1 million user rows a month for 5,000 people)."""
    rng = np.random.default_rng([seed, users])
    emails = []
    for index in range(users):
        first = _FIRST[index % len(_FIRST)]
        last = _LAST[(index // len(_FIRST) + index * 7) % len(_LAST)]
        suffix = "" if index < len(_FIRST) * len(_LAST) else str(index)
        emails.append(f"{first}.{last}{suffix}@company.com")
    # A few heavy users, a long tail of occasional ones, as real teams have.
    activity = np.clip(rng.beta(1.4, 2.2, users) * 1.1, 0.05, 0.95)
    return Team(
        seed=seed,
        emails=np.array(emails, dtype=object),
        user_group=rng.integers(0, len(GROUPS), users),
        user_projects=rng.integers(0, len(PROJECTS), (users, 2)),
        user_key=rng.integers(0, len(API_KEYS), users),
        user_activity=activity,
        # Most of the team was there from the start; some joined month by month since.
        user_joined=np.where(rng.random(users) < 0.8, 0, rng.integers(1, 36, users)),
        intensity=intensity,
    )


_COLUMNS = ("date", "tool", "user", "project", "group", "key", "uses", "credits")


def _month_rows(team: Team, year: int, month: int) -> pd.DataFrame:
    """Every usage row of one calendar month, generated from a per-month seed."""
    rng = np.random.default_rng([team.seed, team.size, year, month])
    first = dt.date(year, month, 1)
    days = pd.date_range(first, periods=pd.Period(first, "M").days_in_month, freq="D")
    n_days, n_users, n_tools = len(days), team.size, len(TOOLS)
    months_in = (year - DATA_START.year) * 12 + month - 1
    trend = (1.0 + 0.035 * months_in) * (1.0 + 0.12 * np.sin(months_in / 1.7))
    weekday = np.where(days.day_of_week >= 5, 0.15, 1.0)
    # About one day in 30 the whole team is off (holidays, outages): no bucket at all.
    weekday = weekday * (rng.random(n_days) > 0.035)
    # One launch day a month, when the team works at two to three times its pace.
    weekday[rng.integers(0, n_days)] *= rng.uniform(2.0, 3.0)
    joined = (team.user_joined <= months_in).astype(float)
    popularity = np.array([t.popularity for t in TOOLS])
    chance = (
        weekday[:, None, None]
        * np.minimum(team.user_activity * min(trend, 1.6) * joined, 0.97)[None, :, None]
        * popularity[None, None, :]
    )
    active = rng.random((n_days, n_users, n_tools)) < np.minimum(chance * team.intensity, 0.98)
    d_idx, u_idx, t_idx = np.nonzero(active)
    uses = rng.poisson((1.0 + 3.0 * team.user_activity[u_idx] * trend) * weekday[d_idx]) + 1
    price = np.array([t.credits_per_use for t in TOOLS])[t_idx]
    premium = rng.choice(np.array([1, 1, 1, 2]), size=len(t_idx))
    users = pd.DataFrame(
        {
            "date": days.values[d_idx],
            "tool": t_idx,
            "user": u_idx,
            "project": team.user_projects[u_idx, rng.integers(0, 2, len(u_idx))],
            "group": team.user_group[u_idx],
            "key": team.user_key[u_idx],
            "uses": uses,
            "credits": uses * price * premium,
        }
    )
    # Usage no user is attributed with (service accounts, automations).
    open_days = np.nonzero(weekday > 0)[0]
    n_extra = len(open_days) * 2
    e_tool = rng.integers(0, n_tools, n_extra)
    e_uses = rng.poisson(3.0 * trend, n_extra) + 1
    unattributed = pd.DataFrame(
        {
            "date": days.values[np.repeat(open_days, 2)],
            "tool": e_tool,
            "user": -1,
            "project": rng.integers(0, len(PROJECTS), n_extra),
            "group": -1,
            "key": rng.integers(0, len(API_KEYS), n_extra),
            "uses": e_uses,
            "credits": e_uses * np.array([t.credits_per_use for t in TOOLS])[e_tool],
        }
    )
    return pd.concat([users, unattributed], ignore_index=True)


# --- answering a request (pure) ----------------------------------------------

DateForms = Literal["date", "datetime", "both"]
EndMeaning = Literal["inclusive", "exclusive"]
DATE_FORMS: tuple[DateForms, ...] = ("date", "datetime", "both")
END_MEANINGS: tuple[EndMeaning, ...] = ("inclusive", "exclusive")


class SandboxData:
    """The dataset and the endpoint's logic, without HTTP; months are generated once."""

    def __init__(self, team: Team | None = None, *, today: dt.date | None = None) -> None:
        self.team = team or synthetic_team()
        self._today = today
        self._months = functools.lru_cache(maxsize=64)(self._generate_month)
        # group index -> day -> (tool index, user index or -1: no user, credits, uses) parts
        self._scripted: dict[int, dict[dt.date, list[tuple[int, int, int, int]]]] = {}

    @property
    def today(self) -> dt.date:
        return self._today or dt.datetime.now(dt.UTC).date()

    def _generate_month(self, year: int, month: int) -> pd.DataFrame:
        return _month_rows(self.team, year, month)

    def rows(self, start: dt.date, end: dt.date) -> pd.DataFrame:
        """Usage rows with ``start <= date <= end``, only for days that have ended."""
        last = min(end, self.today - dt.timedelta(days=1))
        first = max(start, DATA_START)
        if first > last:
            return pd.DataFrame({c: pd.Series(dtype="int64") for c in _COLUMNS})
        months = pd.period_range(first, last, freq="M")
        frame = pd.concat([self._months(p.year, p.month) for p in months], ignore_index=True)
        mask = (frame["date"] >= pd.Timestamp(first)) & (frame["date"] <= pd.Timestamp(last))
        frame = frame.loc[mask]
        for group, daily in self._scripted.items():
            parts = [
                (d, *part)
                for d in sorted(daily)
                if first <= d <= last
                for part in daily[d]
                if part[2] > 0
            ]
            chosen = pd.DataFrame(
                {
                    "date": pd.to_datetime([p[0] for p in parts]),
                    "tool": [p[1] for p in parts],
                    "user": [p[2] for p in parts],
                    "project": 0,
                    "group": group,
                    "key": 0,
                    "uses": [p[4] for p in parts],
                    "credits": [p[3] for p in parts],
                },
                columns=_COLUMNS,
            )
            frame = pd.concat([frame[frame["group"] != group], chosen], ignore_index=True)
        return frame

    def script(self, group_id: int, daily: Mapping[dt.date, int]) -> None:
        """Give the group ``group_id`` exactly ``daily`` credits a day (one tool, one user)
        instead of its synthetic usage, so a test knows the day a budget is crossed;
        calling it again changes the series, as late-arriving usage does."""
        self.script_parts(group_id, {d: [(0, 0, c)] for d, c in daily.items()})

    def script_parts(
        self,
        group_id: int,
        daily: Mapping[dt.date, Sequence[tuple[int, int, int] | tuple[int, int, int, int]]],
    ) -> None:
        """As ``script``, each day's credits split as (tool index into ``TOOLS``, user
        index into the team or -1 for usage no user accounts for, credits[, uses]); uses
        default to the credits at the tool's usual cost, at least 1."""
        index = [gid for gid, _ in GROUPS].index(group_id)
        self._scripted[index] = {
            d: [
                (
                    p[0],
                    p[1],
                    p[2],
                    p[3] if len(p) > 3 else max(1, p[2] // TOOLS[p[0]].credits_per_use),
                )
                for p in parts
            ]
            for d, parts in daily.items()
        }

    def answer(
        self, body: Any, *, dates: DateForms = "both", end: EndMeaning = "inclusive"
    ) -> tuple[int, dict[str, Any]]:
        """Status and JSON payload for a request body, as the API would answer it, taking
        dates in the ``dates`` form(s) and reading ``end_date`` as ``end`` says."""
        try:
            query = _parse_body(body, self.today, dates)
        except ValueError as exc:
            return HTTPStatus.UNPROCESSABLE_ENTITY, {"message": str(exc)}
        last = query["end"] - dt.timedelta(days=1 if end == "exclusive" else 0)
        rows = self.rows(query["start"], last)
        rows = self._filter(rows, query)
        return HTTPStatus.OK, {"data": self._buckets(rows, query["granularity"])}

    def _filter(self, rows: pd.DataFrame, query: Mapping[str, Any]) -> pd.DataFrame:
        if query["project_references"]:
            wanted = [
                i for i, (ref, _) in enumerate(PROJECTS) if ref in query["project_references"]
            ]
            rows = rows[rows["project"].isin(wanted)]
        if query["group_ids"]:
            wanted = [i for i, (gid, _) in enumerate(GROUPS) if gid in query["group_ids"]]
            rows = rows[rows["group"].isin(wanted)]
        if query["api_key_ids"]:
            wanted = [i for i, key in enumerate(API_KEYS) if key in query["api_key_ids"]]
            rows = rows[rows["key"].isin(wanted)]
        return rows

    def _buckets(self, rows: pd.DataFrame, granularity: str) -> list[dict[str, Any]]:
        if rows.empty:
            return []
        rows = rows.assign(bucket=_bucket_start(rows["date"], granularity))
        totals = rows.groupby(["bucket", "tool"], sort=True)[["uses", "credits"]].sum()
        breakdown_tools = [i for i, t in enumerate(TOOLS) if t.has_user_breakdown]
        named = rows[(rows["user"] >= 0) & rows["tool"].isin(breakdown_tools)]
        per_user = (
            named.groupby(["bucket", "tool", "user", "project"], sort=True)[["uses", "credits"]]
            .sum()
            .reset_index()
        )
        team = self.team
        per_user["json"] = _user_usage_json(per_user, team)
        user_json = per_user.groupby(["bucket", "tool"], sort=False)["json"].agg(",".join)
        data: list[dict[str, Any]] = []
        current: dict[str, Any] | None = None
        for (bucket, tool), uses, credits in zip(
            totals.index, totals["uses"], totals["credits"], strict=True
        ):
            stamp = f"{pd.Timestamp(bucket).date().isoformat()}T00:00:00.000Z"
            if current is None or current["date"] != stamp:
                current = {"date": stamp, "consumptions": []}
                data.append(current)
            consumption: dict[str, Any] = {
                "tool": TOOLS[int(tool)].name,
                "user_uses": int(uses),
                "user_credits": int(credits),
            }
            if TOOLS[int(tool)].has_user_breakdown:
                consumption["user_usages"] = _Raw(user_json.get((bucket, tool), ""))
            current["consumptions"].append(consumption)
        return data


class _Raw(str):
    """Pre-serialised JSON array contents, spliced in by ``dumps``."""


def dumps(payload: Any) -> bytes:
    """JSON-encode a payload whose user breakdowns are pre-serialised (``_Raw``)."""
    parts: list[str] = []
    marker = "\x00RAW{}\x00"
    raws: list[str] = []

    def default(obj: Any) -> Any:
        raise TypeError(type(obj).__name__)

    def swap(obj: Any) -> Any:
        if isinstance(obj, _Raw):
            raws.append(obj)
            return marker.format(len(raws) - 1)
        if isinstance(obj, dict):
            return {k: swap(v) for k, v in obj.items()}
        if isinstance(obj, list):
            return [swap(v) for v in obj]
        return obj

    text = json.dumps(swap(payload), separators=(",", ":"), default=default)
    pieces = text.split('"\\u0000RAW')
    parts.append(pieces[0])
    for piece in pieces[1:]:
        index, rest = piece.split('\\u0000"', 1)
        parts.append("[" + raws[int(index)] + "]")
        parts.append(rest)
    return "".join(parts).encode()


def _user_usage_json(per_user: pd.DataFrame, team: Team) -> pd.Series:
    """One JSON object per user row, built column-wise rather than row by row."""
    refs = np.array([json.dumps(ref) for ref, _ in PROJECTS], dtype=object)
    names = np.array([json.dumps(name) for _, name in PROJECTS], dtype=object)
    groups = np.array([json.dumps(name) for _, name in GROUPS], dtype=object)
    users = per_user["user"].to_numpy()
    projects = per_user["project"].to_numpy()
    email = pd.Series(team.emails[users], index=per_user.index)
    return (
        '{"user_email":"'
        + email
        + '","user_uses":'
        + per_user["uses"].astype(str)
        + ',"user_credits":'
        + per_user["credits"].astype("int64").astype(str)
        + ',"project_reference":'
        + pd.Series(refs[projects], index=per_user.index)
        + ',"project_name":'
        + pd.Series(names[projects], index=per_user.index)
        + ',"group_name":'
        + pd.Series(groups[team.user_group[users]], index=per_user.index)
        + "}"
    )


def _bucket_start(dates: pd.Series, granularity: str) -> pd.Series:
    if granularity == "day":
        return dates
    if granularity == "week":
        monday: pd.Series = dates - pd.to_timedelta(dates.dt.day_of_week, unit="D")
        return monday
    freq = {"month": "M", "year": "Y"}[granularity]
    starts: pd.Series = dates.dt.to_period(freq).dt.start_time
    return starts


def _parse_body(body: Any, today: dt.date, dates: DateForms = "both") -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ValueError("request body must be a JSON object")
    granularity = body.get("granularity", "day")
    end = _parse_date(body.get("end_date"), "end_date", dates) if "end_date" in body else today
    start = (
        _parse_date(body.get("start_date"), "start_date", dates)
        if "start_date" in body
        else end - dt.timedelta(days=7)
    )
    lists = {}
    for name in ("project_references", "api_key_ids", "group_ids"):
        value = body.get(name, [])
        if not isinstance(value, list):
            raise ValueError(f"{name} must be an array")
        lists[name] = value
    problems = validate_query_fields(
        granularity=granularity, start_date=start, end_date=end, **lists
    )
    if problems:
        raise ValueError("; ".join(problems))
    return {"granularity": granularity, "start": start, "end": end, **lists}


_PLAIN_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_DATETIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})")


def _parse_date(value: Any, name: str, dates: DateForms = "both") -> dt.date:
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a date string")
    if dates == "date" and not _PLAIN_DATE.fullmatch(value):
        raise ValueError(f"{name} must be a date (YYYY-MM-DD), got {value!r}")
    if dates == "datetime" and not _DATETIME.fullmatch(value):
        raise ValueError(f"{name} must be an ISO 8601 date-time, got {value!r}")
    try:
        return dt.date.fromisoformat(value[:10])
    except ValueError:
        raise ValueError(f"{name} is not a date: {value!r}") from None


# --- faults ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Fault:
    """One injected misbehaviour, applied to the next request that arrives.

    kind: ``status`` (answer ``status``, with ``retry_after`` if given), ``slow``
    (sleep ``seconds`` then answer normally), ``truncate`` (drop the connection
    half-way through the body), ``invalid_json`` (a cut-off body with a
    complete Content-Length), ``malformed`` (valid JSON that breaks the schema),
    ``trickle`` (announce the whole body, send it a byte every 0.2 s for ``seconds``,
    then hang up), ``oversize`` (the normal answer padded with spaces to ``size_mb``
    MB, its length announced) and ``oversize_chunked`` (the same, chunked, with no
    length announced).
    """

    kind: str
    status: int = 503
    retry_after: str | None = None
    seconds: float = 0.0
    size_mb: float = 0.0


FAULT_KINDS = (
    "status",
    "slow",
    "truncate",
    "invalid_json",
    "malformed",
    "trickle",
    "oversize",
    "oversize_chunked",
)
TRICKLE_INTERVAL = 0.2  # seconds between the bytes of a ``trickle`` fault


def parse_fault(text: str) -> list[Fault]:
    """``503``, ``429:2`` (Retry-After 2), ``slow:1.5``, ``truncate``, ``trickle:10``,
    ``oversize:64`` (MB), with ``xN`` to repeat."""
    match = re.fullmatch(r"(.+?)(?:x(\d+))?", text.strip())
    if match is None:
        raise ValueError(f"unknown fault {text!r}")
    spec, count = match[1], int(match[2] or 1)
    head, _, arg = spec.partition(":")
    if head.isdigit():
        fault = Fault("status", status=int(head), retry_after=arg or None)
    elif head == "slow":
        fault = Fault("slow", seconds=float(arg or 1))
    elif head == "trickle":
        fault = Fault("trickle", seconds=float(arg or 10))
    elif head in ("oversize", "oversize_chunked"):
        fault = Fault(head, size_mb=float(arg or 64))
    elif head in FAULT_KINDS:
        fault = Fault(head)
    else:
        raise ValueError(
            f"unknown fault {text!r}: use a status (503, 429:RETRY_AFTER), slow:SECONDS,"
            " truncate, invalid_json, malformed, trickle:SECONDS, oversize:MB or"
            " oversize_chunked:MB, optionally followed by xCOUNT"
        )
    return [fault] * count


@dataclass
class RecordedRequest:
    path: str
    body: Any
    had_key: bool
    status: int
    bytes_sent: int | None = None  # body bytes written, for faults that may be cut short


# --- HTTP server -------------------------------------------------------------


@dataclass
class SandboxServer:
    """The stand-in API on a loopback port, served from a background thread."""

    data: SandboxData = field(default_factory=SandboxData)
    api_key: str | None = None  # None: any non-empty key is accepted
    host: str = "127.0.0.1"
    port: int = 0
    faults: collections.deque[Fault] = field(default_factory=collections.deque)
    requests: list[RecordedRequest] = field(default_factory=list)
    in_flight: int = 0
    peak_in_flight: int = 0  # most requests being answered at once, for concurrency tests
    cache_responses: bool = False  # answer a repeated body from memory (benchmarks)
    dates: DateForms = "both"  # the date spellings accepted: "date", "datetime" or "both"
    end: EndMeaning = "inclusive"  # what end_date means
    _answers: dict[str, tuple[int, bytes]] = field(default_factory=dict, init=False, repr=False)
    _server: ThreadingHTTPServer | None = field(default=None, init=False, repr=False)
    _thread: threading.Thread | None = field(default=None, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    @property
    def url(self) -> str:
        assert self._server is not None, "server not started"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def inject(self, *faults: Fault) -> None:
        with self._lock:
            self.faults.extend(faults)

    def _next_fault(self) -> Fault | None:
        with self._lock:
            return self.faults.popleft() if self.faults else None

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(request)

    def respond(self, body: Any) -> tuple[int, bytes]:
        """Status and JSON bytes for a request body, from memory if asked and seen before."""
        if not self.cache_responses:
            status, payload = self.data.answer(body, dates=self.dates, end=self.end)
            return status, dumps(payload)
        key = json.dumps(body, sort_keys=True)
        with self._lock:
            cached = self._answers.get(key)
        if cached is None:
            status, payload = self.data.answer(body, dates=self.dates, end=self.end)
            cached = status, dumps(payload)
            with self._lock:
                self._answers[key] = cached
        return cached

    def start(self) -> SandboxServer:
        handler = _make_handler(self)
        self._server = ThreadingHTTPServer((self.host, self.port), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="magnific-sandbox", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def serve_forever(self) -> None:
        """Serve in the foreground until interrupted (``reporter sandbox``); starts the
        server unless ``start`` already did (binding the port twice fails)."""
        if self._server is None:
            self.start()
        assert self._thread is not None
        try:
            while self._thread.is_alive():
                self._thread.join(0.5)
        finally:
            self.stop()

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _make_handler(sandbox: SandboxServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "MagnificSandbox/1"

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: the sandbox runs inside tests and the demo."""

        def do_POST(self) -> None:
            with sandbox._lock:
                sandbox.in_flight += 1
                sandbox.peak_in_flight = max(sandbox.peak_in_flight, sandbox.in_flight)
            try:
                self._answer()
            finally:
                with sandbox._lock:
                    sandbox.in_flight -= 1

        def _answer(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            raw = self.rfile.read(length) if length else b""
            key = self.headers.get(KEY_HEADER, "")
            try:
                body = json.loads(raw) if raw else {}
            except json.JSONDecodeError:
                body = None
            if self.path.split("?")[0] != ENDPOINT:
                return self._finish(
                    raw_body=body,
                    key=key,
                    status=404,
                    payload={"message": f"no route for POST {self.path}"},
                )
            if not key or (sandbox.api_key is not None and key != sandbox.api_key):
                return self._finish(
                    raw_body=body, key=key, status=401, payload={"message": "Invalid API key"}
                )
            fault = sandbox._next_fault()
            if fault and fault.kind == "status":
                headers = {"Retry-After": fault.retry_after} if fault.retry_after else {}
                return self._finish(
                    raw_body=body,
                    key=key,
                    status=fault.status,
                    payload={"message": HTTPStatus(fault.status).phrase},
                    headers=headers,
                )
            if fault and fault.kind == "slow":
                time.sleep(fault.seconds)
            if body is None:
                return self._finish(
                    raw_body=raw,
                    key=key,
                    status=400,
                    payload={"message": "request body is not valid JSON"},
                )
            try:
                status, content = sandbox.respond(body)
            except Exception as exc:  # a stand-in must answer like a server: 500, not a hang-up
                return self._finish(
                    raw_body=body,
                    key=key,
                    status=500,
                    payload={"message": f"internal error: {type(exc).__name__}"},
                )
            if fault and fault.kind == "trickle" and status == 200:
                return self._trickle(body, key, content, fault.seconds)
            if fault and fault.kind in ("oversize", "oversize_chunked") and status == 200:
                return self._oversize(body, key, content, fault)
            if fault and fault.kind == "malformed" and status == 200:
                content = _break_schema(content)
            if fault and fault.kind in ("truncate", "invalid_json") and status == 200:
                cut = content[: max(1, len(content) // 2)]
                if fault.kind == "invalid_json":
                    content = cut
                else:
                    sandbox._record(RecordedRequest(self.path, body, bool(key), status))
                    self._send_head(status, len(content), {})
                    self.wfile.write(cut)
                    self.wfile.flush()
                    self.close_connection = True
                    return None
            return self._finish(raw_body=body, key=key, status=status, content=content)

        def _finish(
            self,
            *,
            raw_body: Any,
            key: str,
            status: int,
            payload: Any = None,
            content: bytes | None = None,
            headers: Mapping[str, str] | None = None,
        ) -> None:
            sandbox._record(RecordedRequest(self.path, raw_body, bool(key), status))
            body = content if content is not None else json.dumps(payload).encode()
            self._send_head(status, len(body), headers or {})
            self.wfile.write(body)

        def _trickle(self, raw_body: Any, key: str, content: bytes, seconds: float) -> None:
            """The whole body announced, then a byte at a time until ``seconds`` pass."""
            sandbox._record(RecordedRequest(self.path, raw_body, bool(key), 200))
            self._send_head(200, len(content), {})
            until = time.monotonic() + seconds
            try:
                for sent in range(len(content)):
                    if time.monotonic() >= until:
                        break
                    self.wfile.write(content[sent : sent + 1])
                    self.wfile.flush()
                    time.sleep(TRICKLE_INTERVAL)
            except OSError:  # the client gave up
                pass
            self.close_connection = True

        def _oversize(self, raw_body: Any, key: str, content: bytes, fault: Fault) -> None:
            """The answer padded with spaces (still valid JSON) to ``fault.size_mb`` MB,
            written 64 KB at a time; records how much got out before the client hung up."""
            piece = b" " * 65536
            pieces = max(0, -(-(int(fault.size_mb * 1024 * 1024) - len(content)) // len(piece)))
            chunked = fault.kind == "oversize_chunked"
            self._send_head(200, None if chunked else len(content) + pieces * len(piece), {})
            sent = 0
            try:
                for data in itertools.chain([content], itertools.repeat(piece, pieces)):
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data) if chunked else data)
                    sent += len(data)
                if chunked:
                    self.wfile.write(b"0\r\n\r\n")
            except OSError:  # the client gave up
                self.close_connection = True
            sandbox._record(RecordedRequest(self.path, raw_body, bool(key), 200, sent))

        def _send_head(self, status: int, length: int | None, headers: Mapping[str, str]) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            if length is None:
                self.send_header("Transfer-Encoding", "chunked")
            else:
                self.send_header("Content-Length", str(length))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()

    return Handler


def _break_schema(content: bytes) -> bytes:
    """Valid JSON that breaks the contract: the first tool total becomes negative."""
    payload = json.loads(content)
    for bucket in payload.get("data", []):
        for consumption in bucket.get("consumptions", []):
            consumption["user_credits"] = -abs(consumption["user_credits"]) - 1
            return json.dumps(payload).encode()
    return b'{"data": "not a list"}'
