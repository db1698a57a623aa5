"""From API responses to the tables a report shows. Pure: data in, data out.

Tool-level numbers are the truth; ``user_usages`` is a breakdown that may be
missing or fall short. So the tidy frame keeps, for each bucket and tool, the
part no user accounts for as its own "unattributed" row, and every table built
from it (per tool, user, project, group, day) adds up to the tool totals.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from reporter.magnific import USER_COLUMNS, UsageResponse
from reporter.magnific.response import utc_day
from reporter.periods import Granularity, Period, last_complete_day, matching_span

# The tidy frame has the user rows' columns; unattributed usage is a row with no user.
TIDY_COLUMNS = USER_COLUMNS
_KEYS = ["date", "tool"]


def tidy_frame(response: UsageResponse) -> pd.DataFrame:
    """One row per bucket, tool, user and project; unattributed usage has user NaN."""
    filled = [bucket for bucket in response.data if bucket.consumptions]
    if not filled:
        return _empty_tidy()
    consumptions = [c for bucket in filled for c in bucket.consumptions]
    days = _utc_midnights([bucket.date for bucket in filled])
    totals = _ToolTotals(
        np.repeat(days, [len(bucket.consumptions) for bucket in filled]),
        np.array([c.tool for c in consumptions], dtype=object),
        np.array([c.user_uses for c in consumptions], dtype=np.int64),
        np.array([c.user_credits for c in consumptions], dtype=np.float64),
    )
    return _with_unattributed(totals, response.users)


BREAKDOWN_EXCESS = "breakdown_excess_credits"
"""``frame.attrs`` key of a tidy frame: credits its user breakdowns claimed beyond
their tool totals (0 when none did), for the report to state."""


@dataclass(frozen=True, slots=True)
class _ToolTotals:
    """A response's tool totals as columns: one entry per bucket and tool as sent."""

    dates: np.ndarray  # datetime64[ns], naive UTC midnights
    tools: np.ndarray  # object (str)
    uses: np.ndarray  # int64
    credits: np.ndarray  # float64


def _with_unattributed(sent: _ToolTotals, users: pd.DataFrame) -> pd.DataFrame:
    named = users
    # Users' dates and tools come from a few hundred buckets: each distinct one is
    # converted and coded once, then spread over its rows.
    date_codes = tool_codes = np.empty(0, dtype=np.intp)
    days = np.empty(0, dtype="datetime64[ns]")
    distinct_tools: np.ndarray = np.empty(0, dtype=object)
    if not users.empty:
        has_user = users["user"].notna()
        if not has_user.all():
            users = users[has_user]
        date_codes, distinct_dates = pd.factorize(users["date"])
        days = _utc_midnights(list(distinct_dates))
        tool_codes, tool_values = pd.factorize(users["tool"])
        distinct_tools = np.asarray(tool_values, dtype=object)
        named = users.assign(date=days[date_codes])
    # (date, tool) as one integer in their sorted order, shared by the totals and the users:
    # the groupbys and index alignments of a tidy frame become numpy on these codes.
    day_codes, _ = pd.factorize(np.concatenate([sent.dates, days]), sort=True)
    tools_seen = np.unique(np.concatenate([sent.tools, distinct_tools]))
    sent_keys = day_codes[: len(sent.dates)] * len(tools_seen) + np.searchsorted(
        tools_seen, sent.tools
    )
    named_keys = (day_codes[len(sent.dates) :] * len(tools_seen))[date_codes] + np.searchsorted(
        tools_seen, distinct_tools
    )[tool_codes]
    totals_keys, first, totals_ids = np.unique(sent_keys, return_index=True, return_inverse=True)
    total_uses = _group_sums(totals_ids, len(totals_keys), sent.uses)
    total_credits = _group_sums(totals_ids, len(totals_keys), sent.credits)
    excess = 0.0
    if named.empty:
        named_uses = np.zeros(len(totals_keys), dtype="int64")
        named_credits = np.zeros(len(totals_keys))
    else:
        claimed_ids, claimed_keys = pd.factorize(named_keys, sort=True)
        claimed_uses = _group_sums(claimed_ids, len(claimed_keys), named["uses"].to_numpy())
        claimed_credits = _group_sums(claimed_ids, len(claimed_keys), named["credits"].to_numpy())
        claimed_at = _positions(totals_keys, claimed_keys)
        named_uses = _aligned(claimed_uses, claimed_at, len(totals_keys))
        named_credits = _aligned(claimed_credits, claimed_at, len(totals_keys))
        found = claimed_at >= 0
        over = (claimed_credits > np.where(found, total_credits[claimed_at], 0.0)) | (
            claimed_uses > np.where(found, total_uses[claimed_at], 0)
        )
        if over.any():
            index = pd.MultiIndex.from_arrays([sent.dates[first], sent.tools[first]], names=_KEYS)
            totals = pd.DataFrame({"uses": total_uses, "credits": total_credits}, index=index)
            named, attributed, excess = _fit_to_totals(named, totals)
            if attributed is not None:  # always, for user rows to fit
                aligned = attributed.reindex(totals.index, fill_value=0)
                named_uses = aligned["uses"].to_numpy()
                named_credits = aligned["credits"].to_numpy()
    # Never negative: the breakdown now fits inside its totals; what is left over after
    # scaling it down is float rounding, not usage.
    uses_left = np.clip(total_uses - named_uses, 0, None).astype("int64")
    credits_left = total_credits - named_credits
    credits_left = np.where(credits_left > _ROUNDING * total_credits, credits_left, 0.0)
    left = (uses_left > 0) | (credits_left > 0)
    parts = [] if named.empty else [named]
    if left.any():
        # Unattributed user rows (no email) are folded into this residual.
        at = first[left]
        parts.append(
            pd.DataFrame(
                {
                    "date": sent.dates[at],
                    "tool": sent.tools[at],
                    "user": None,
                    "project": None,
                    "project_reference": None,
                    "group": None,
                    "uses": uses_left[left],
                    "credits": credits_left[left],
                }
            )
        )
    frame = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0] if parts else None
    if frame is None:
        return _with_excess(_empty_tidy(), excess)
    if list(frame.columns) != list(TIDY_COLUMNS):
        frame = frame[list(TIDY_COLUMNS)]
    if frame["uses"].dtype != "int64" or frame["credits"].dtype != "float64":
        frame = frame.astype({"uses": "int64", "credits": "float64"})
    # By date, tool and credits, largest first (ties as they came): sort_values' order.
    row_keys = np.concatenate([named_keys, totals_keys[left]])
    order = np.lexsort((-frame["credits"].to_numpy(), row_keys))
    frame = frame.take(order)
    frame.index = pd.RangeIndex(len(frame))
    return _with_excess(frame, excess)


def _positions(keys: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """Where each of ``wanted`` is in the sorted ``keys``; -1 where it is not."""
    at = np.searchsorted(keys, wanted)
    inside = at < len(keys)
    found = inside & (keys[np.where(inside, at, 0)] == wanted)
    return np.where(found, at, -1)


def _taken(values: np.ndarray, at: np.ndarray) -> np.ndarray:
    """``values[at]``, with 0 where ``at`` is -1 (what a reindex with 0 for missing gives)."""
    out = np.zeros(len(at), dtype=values.dtype)
    found = at >= 0
    out[found] = values[at[found]]
    return out


def _aligned(values: np.ndarray, at: np.ndarray, size: int) -> np.ndarray:
    """``values`` moved to positions ``at`` (-1: nowhere) of a zero array of ``size``."""
    out = np.zeros(size, dtype=values.dtype)
    found = at >= 0
    out[at[found]] = values[found]
    return out


_EXACT = 2.0**53  # every whole number up to this is a float64


def _group_sums(ids: np.ndarray, groups: int, values: np.ndarray) -> np.ndarray:
    """``values`` summed by group (``ids`` from 0, in the keys' sorted order), added up
    exactly as pandas' groupby sum adds them, so every figure stays the same to the last
    bit: integers in any order; floats by ``np.add.reduceat`` when the ids are sorted, else
    by pandas' compensated sum (whole numbers by a plain one: none of their sums rounds).
    Without the frame, key factorisation and index a groupby builds, which are most of
    its cost on a report's few hundred rows."""
    out = np.zeros(groups, dtype=np.int64 if values.dtype.kind in "iub" else values.dtype)
    if not len(ids):
        return out
    if values.dtype.kind in "iub":
        np.add.at(out, ids, values)
        return out
    if (ids[1:] >= ids[:-1]).all() and not np.isnan(values).any():
        starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
        out[ids[starts]] = np.add.reduceat(values, starts)
        return out
    if (values == np.trunc(values)).all() and np.abs(values).sum() <= _EXACT:
        # Whole numbers whose sum a float64 holds exactly: no addition rounds, so the
        # compensated sum is the plain one (the contract's credits are whole numbers).
        return np.bincount(ids, weights=values, minlength=groups)
    sums = pd.Series(values, copy=False).groupby(ids).sum()
    out[sums.index.to_numpy()] = sums.to_numpy()
    return out


def _with_excess(frame: pd.DataFrame, excess: float) -> pd.DataFrame:
    frame.attrs[BREAKDOWN_EXCESS] = excess
    return frame


_ROUNDING = 1e-9  # relative: a residual this small is what scaling left, not usage


def _fit_to_totals(
    named: pd.DataFrame, totals: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame | None, float]:
    """The user rows, scaled down where a bucket's breakdown claims more than its tool
    total; their sums by date and tool (None when there are none); and the credits
    claimed beyond the totals.

    The tool totals are the documented truth and every headline, table and chart adds
    up to them; a breakdown that exceeds them is the API's error. Scaling keeps each
    user's share of the tool (uses stay whole numbers, by largest remainder), so the
    ranking still holds, and the report states the excess instead of counting it.
    """
    if named.empty:
        return named, None, 0.0
    claimed = named.groupby(_KEYS)[["uses", "credits"]].sum()
    against = totals.reindex(claimed.index, fill_value=0)
    claimed_uses = claimed["uses"].to_numpy()
    claimed_credits = claimed["credits"].to_numpy()
    total_uses = against["uses"].to_numpy()
    total_credits = against["credits"].to_numpy()
    over_credits = claimed_credits > total_credits
    over_uses = claimed_uses > total_uses
    if not (over_credits.any() or over_uses.any()):
        return named, claimed, 0.0
    excess = float((claimed_credits - total_credits)[over_credits].sum())
    # A factor is only taken where the claim is over, and so not zero; elsewhere a claim
    # of zero would warn of a division no row uses.
    with np.errstate(divide="ignore", invalid="ignore"):
        credit_factor = np.where(over_credits, total_credits / claimed_credits, 1.0)
        use_factor = np.where(over_uses, total_uses / claimed_uses, 1.0)
    factors = claimed.index.to_frame(index=False).assign(
        credit_factor=credit_factor,
        use_factor=use_factor,
        uses_total=total_uses,
        over_uses=over_uses,
    )
    fitted = named.reset_index(drop=True).merge(factors, on=_KEYS, how="left")
    fitted["credits"] = fitted["credits"] * fitted["credit_factor"]
    exact = fitted["uses"] * fitted["use_factor"]
    whole = exact.floordiv(1)
    # Largest remainder: the uses lost to flooring go to the rows that lost the most.
    short = fitted["uses_total"] - whole.groupby([fitted[k] for k in _KEYS]).transform("sum")
    rank = (exact - whole).groupby([fitted[k] for k in _KEYS]).rank(method="first", ascending=False)
    fitted["uses"] = np.where(fitted["over_uses"], whole + (rank <= short), fitted["uses"])
    fitted["uses"] = fitted["uses"].astype("int64")
    fitted = fitted[named.columns]
    return fitted, fitted.groupby(_KEYS)[["uses", "credits"]].sum(), excess


def _empty_tidy() -> pd.DataFrame:
    frame = pd.DataFrame({c: pd.Series(dtype=object) for c in TIDY_COLUMNS})
    return frame.astype({"date": "datetime64[ns]", "uses": "int64", "credits": "float64"})


# Days whose midnight a datetime64[ns] surely holds (pandas' range is 1677-09-22..2262-04-11).
_NS_DAYS = (np.datetime64("1678-01-01", "D"), np.datetime64("2262-01-01", "D"))


def _utc_midnights(starts: list[dt.datetime]) -> np.ndarray:
    """Bucket starts as naive UTC midnights (datetime64[ns]), as ``_naive_dates`` makes
    them: a response has a few hundred distinct starts, and one Python call each costs
    less than pandas' datetime parsing of a short column. A day outside what nanoseconds
    hold goes to ``_naive_dates``, to fail as it does."""
    days = np.array([utc_day(start) for start in starts], dtype="datetime64[D]")
    if ((days < _NS_DAYS[0]) | (days > _NS_DAYS[1])).any():
        return _naive_dates(pd.Series(starts)).to_numpy()
    return days.astype("datetime64[ns]")


def _naive_dates(dates: pd.Series) -> pd.Series:
    """Bucket starts as naive UTC midnights (the API sends ``...T00:00:00.000Z``)."""
    converted = pd.to_datetime(dates, utc=True).dt.tz_localize(None)
    return converted.dt.normalize().astype("datetime64[ns]")


# --- report tables -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class InProgress:
    """How a period that is not over is compared: its complete days so far against the
    same days of the earlier periods, and its forecast against the whole previous period."""

    through: dt.date  # the last complete day; before the period's start when none is
    days: int  # complete days compared (0 when the period started today)
    previous_span: tuple[dt.date, dt.date] | None  # the previous period's matching days
    forecast: float | None  # the period's end at the run rate so far
    previous_period_credits: float  # the whole previous period, to set beside the forecast
    forecast_change_pct: float | None


@dataclass(frozen=True, slots=True)
class Totals:
    credits: float
    uses: int
    previous_credits: float  # the previous period's; only its matching days when in progress
    previous_uses: int
    change_pct: float | None  # against the previous period; None when it had none
    history_average: float  # mean credits of the periods before this one (matching days)
    change_vs_average_pct: float | None
    active_users: int
    in_progress: InProgress | None = None  # None: a complete period, compared whole

    @property
    def per_use(self) -> float | None:
        return per_use(self.credits, self.uses)

    @property
    def per_use_change_pct(self) -> float | None:
        return per_use_change(self.credits, self.uses, self.previous_credits, self.previous_uses)


@dataclass(frozen=True, slots=True)
class Budget:
    limit: float
    used: float
    used_pct: float
    forecast: float | None  # month-end projection at the current run rate; None when complete
    status: str  # "ok" | "at_risk" | "over"


@dataclass(frozen=True, slots=True)
class Row:
    """One line of a breakdown; ``key`` None is usage not attributed to anyone."""

    key: str | None
    uses: int
    credits: float
    share: float
    previous_credits: float
    change_pct: float | None
    previous_uses: int = 0

    @property
    def delta(self) -> float:
        return self.credits - self.previous_credits

    @property
    def per_use(self) -> float | None:
        """Credits per use; None without uses (never a division by zero or ``inf``)."""
        return per_use(self.credits, self.uses)

    @property
    def previous_per_use(self) -> float | None:
        return per_use(self.previous_credits, self.previous_uses)

    @property
    def per_use_change_pct(self) -> float | None:
        return per_use_change(self.credits, self.uses, self.previous_credits, self.previous_uses)


def per_use(credits: float, uses: int) -> float | None:
    return credits / uses if uses > 0 else None


def per_use_change(
    credits: float, uses: int, previous_credits: float, previous_uses: int
) -> float | None:
    """Change in credits per use against the comparison period; None if either has no uses."""
    now, before = per_use(credits, uses), per_use(previous_credits, previous_uses)
    return None if now is None or before is None else pct_change(now, before)


@dataclass(frozen=True, slots=True)
class Breakdown:
    """A table of credits by some key (tool, user, project, group), largest first."""

    rows: pd.DataFrame  # key, uses, credits, share, previous_credits, change_pct, previous_uses

    def records(self) -> list[Row]:
        return [
            Row(
                key=None if pd.isna(key) else str(key),
                uses=int(uses),
                credits=float(credits),
                share=float(share),
                previous_credits=float(previous),
                change_pct=None if pd.isna(change) else float(change),
                previous_uses=int(previous_uses),
            )
            for key, uses, credits, share, previous, change, previous_uses in zip(
                self.rows["key"],
                self.rows["uses"],
                self.rows["credits"],
                self.rows["share"],
                self.rows["previous_credits"],
                self.rows["change_pct"],
                self.rows["previous_uses"],
                strict=True,
            )
        ]


@dataclass(frozen=True)
class ReportTables:
    period: Period
    totals: Totals
    tools: Breakdown
    users: Breakdown  # top N, then "others", then unattributed
    projects: Breakdown | None
    groups: Breakdown | None
    daily: pd.DataFrame  # date, tool, credits: every bucket of the period, zeros filled
    history: pd.DataFrame  # period (str), tool, credits: the period and the ones before
    history_totals: pd.DataFrame  # period, credits, uses
    tool_order: list[str]  # every tool seen, largest first; fixes colours and legends
    new_users: list[str]
    spikes: pd.DataFrame  # date, credits, ratio to the usual day
    budget: Budget | None
    user_count: int
    others_count: int
    detail: pd.DataFrame = field(repr=False)  # the tidy rows of the period
    # Tools used in the comparison period and not in this one: (tool, credits then).
    discontinued: list[tuple[str, float]] = field(default_factory=list)
    # The comparison period's tidy rows (its matching days when in progress): what a
    # personal statement sets each user's period against.
    previous_detail: pd.DataFrame | None = field(default=None, repr=False)

    @property
    def empty(self) -> bool:
        return self.totals.credits == 0 and self.totals.uses == 0

    @property
    def breakdown_excess(self) -> float:
        """Credits the period's user breakdowns claimed beyond their tool totals."""
        return float(self.detail.attrs.get(BREAKDOWN_EXCESS, 0.0))


def build_tables(
    detail: pd.DataFrame,
    history: pd.DataFrame,
    period: Period,
    *,
    top_users: int = 10,
    budget: float | None = None,
    today: dt.date | None = None,
    history_granularity: Granularity | None = None,
) -> ReportTables:
    """Every table of a report from the period's tidy rows and the history's.

    A period still in progress on ``today`` is compared like with like: its complete
    days against the same days of each earlier period, which needs the history by day
    (``history_granularity``). Coarser history cannot be cut that way, so such a period
    then gets no change at all rather than a part set against a whole. ``budget`` is the
    period's, in credits (``Config.budget_for``)."""
    history = history.assign(period=_period_keys(history["date"], period))
    history_periods = [p.key for p in period.history()]
    previous_key = period.previous().key
    running = today is not None and not period.is_complete(today)
    through = last_complete_day(period, today) if today is not None and running else period.end
    if running:
        # A partial today (a live API has one) is not set against a whole day.
        detail = detail[detail["date"] <= pd.Timestamp(through)]
    spans = {
        p.key: matching_span(period, p, through) if running else (p.start, p.end)
        for p in period.history()[:-1]
    }
    comparable = not running or (
        (history_granularity or period.history_granularity) == "day" and through >= period.start
    )
    compared = _within_spans(history, spans) if comparable else history.iloc[:0]
    previous = compared[compared["period"] == previous_key]

    credits = float(detail["credits"].sum())
    uses = int(detail["uses"].sum())
    prev_credits = float(previous["credits"].sum())
    prev_uses = int(previous["uses"].sum())
    # The history's own figure for this period may lag the detail fetch; the
    # detail is what the report is about, so it wins.
    history_totals = _totals_by_period(history, history_periods, credits, uses)
    span_totals = (
        history_totals
        if compared is history
        else _totals_by_period(compared, history_periods, credits, uses)
    )
    average = _earlier_average(span_totals["credits"].to_numpy())

    totals = Totals(
        credits=credits,
        uses=uses,
        previous_credits=prev_credits,
        previous_uses=prev_uses,
        change_pct=pct_change(credits, prev_credits) if comparable else None,
        history_average=average,
        change_vs_average_pct=pct_change(credits, average) if comparable else None,
        active_users=int(detail["user"].nunique()),
        in_progress=(
            _in_progress(period, through, credits, history, spans, comparable) if running else None
        ),
    )
    by_tool = _key_sums(detail, "tool")
    tools = _breakdown(detail, previous, "tool", credits, by_tool)
    tool_order = list(tools.rows["key"])
    tool_order += [t for t in sorted(history["tool"].dropna().unique()) if t not in tool_order]
    users, others = _top_users(detail, previous, credits, top_users)
    projects = (
        _breakdown(detail, previous, "project", credits)
        if detail["project"].notna().any()
        else None
    )
    groups = (
        _breakdown(detail, previous, "group", credits) if detail["group"].notna().any() else None
    )

    hist_by_tool = history.groupby(["period", "tool"], as_index=False)["credits"].sum()
    hist_by_tool = hist_by_tool[hist_by_tool["period"] != period.key]
    named_tools = by_tool.keys.notna()  # as a groupby by tool would drop a missing one
    current_by_tool = pd.DataFrame(
        {
            "tool": by_tool.keys[named_tools],
            "credits": by_tool.credits[named_tools],
            "period": period.key,
        }
    )
    hist_by_tool = pd.concat([hist_by_tool, current_by_tool], ignore_index=True)

    earlier_users = set(history.loc[history["period"] != period.key, "user"].dropna().unique())
    current_users = detail["user"].dropna().unique()
    new_users = sorted(set(current_users) - earlier_users) if earlier_users else []

    daily = daily_series(detail, period)
    return ReportTables(
        period=period,
        totals=totals,
        tools=tools,
        users=users,
        projects=projects,
        groups=groups,
        daily=daily,
        history=hist_by_tool[["period", "tool", "credits"]],
        history_totals=history_totals,
        tool_order=tool_order,
        new_users=new_users,
        spikes=find_spikes(daily),
        budget=budget_status(credits, budget, period, today) if budget else None,
        user_count=len(current_users),
        others_count=others,
        detail=detail,
        discontinued=_discontinued(previous, by_tool),
        previous_detail=previous,
    )


def _discontinued(previous: pd.DataFrame, current: _KeySums) -> list[tuple[str, float]]:
    """Named tools of the comparison period that this period did not use, largest first."""
    before = _key_sums(previous, "tool")
    used = set(current.keys)
    gone = [
        (str(tool), float(credits))
        for tool, credits in zip(before.keys, before.credits, strict=True)
        if isinstance(tool, str) and credits > 0 and tool not in used
    ]
    return sorted(gone, key=lambda item: -item[1])


def _within_spans(history: pd.DataFrame, spans: dict[str, tuple[dt.date, dt.date]]) -> pd.DataFrame:
    """The history's rows that fall in their period's span (every bucket, for whole periods)."""
    if not spans:
        return history.iloc[:0]
    bounds = np.array(
        [[np.datetime64(start, "ns"), np.datetime64(end, "ns")] for start, end in spans.values()]
    )
    at = pd.Index(list(spans)).get_indexer(pd.Index(history["period"]))
    known = at >= 0
    at = np.where(known, at, 0)
    dates = history["date"].to_numpy()
    inside = known & (dates >= bounds[at, 0]) & (dates <= bounds[at, 1])
    return history if inside.all() else history[inside]


def _totals_by_period(
    rows: pd.DataFrame, periods: list[str], credits: float, uses: int
) -> pd.DataFrame:
    """Credits and uses of each of ``periods``; the last (the report's) gets ``credits``
    and ``uses``."""
    sums = _key_sums(rows, "period")
    at = sums.keys.get_indexer(pd.Index(periods))
    period_credits = _taken(sums.credits, at).astype("float64")
    period_uses = _taken(sums.uses, at).astype("int64")
    period_credits[-1], period_uses[-1] = credits, uses
    return pd.DataFrame({"period": periods, "credits": period_credits, "uses": period_uses})


def _in_progress(
    period: Period,
    through: dt.date,
    credits: float,
    history: pd.DataFrame,
    spans: dict[str, tuple[dt.date, dt.date]],
    comparable: bool,
) -> InProgress:
    days = max(0, (through - period.start).days + 1)
    previous_key = period.previous().key
    whole = float(history.loc[history["period"] == previous_key, "credits"].sum())
    forecast = credits / days * period.days if days else None
    return InProgress(
        through=through,
        days=days,
        previous_span=spans[previous_key] if comparable else None,
        forecast=forecast,
        previous_period_credits=whole,
        forecast_change_pct=pct_change(forecast, whole) if forecast is not None else None,
    )


def _period_keys(dates: pd.Series, period: Period) -> pd.Series:
    """The period key ("2026-10", "2026-W43", ...) each date falls in."""
    # Worked out once per distinct bucket date: a history has a few hundred at most.
    codes, distinct = pd.factorize(dates)
    if period.is_cycle:  # no pandas frequency for a billing cycle
        names = np.array(
            [period.containing(day.date()).key for day in pd.DatetimeIndex(distinct)] + [None],
            dtype=object,
        )
        return pd.Series(names[codes], index=dates.index, dtype=object)
    if (codes < 0).any():  # NaT has no period
        keys: pd.Series = dates.dt.to_period(period.freq).map(
            lambda p: type(period).from_pandas(p, period.kind).key
        )
        return keys.astype(object)
    periods = pd.DatetimeIndex(distinct).to_period(period.freq)
    names = np.array([type(period).from_pandas(p, period.kind).key for p in periods], dtype=object)
    return pd.Series(names[codes], index=dates.index, dtype=object)


def _earlier_average(credits: np.ndarray) -> float:
    """Mean credits of the periods before the last (the report's), from the first with
    usage on: a team that started later is not averaged against empty months it did not
    exist in."""
    used = np.flatnonzero(credits > 0)
    earlier = credits[used[0] if len(used) else len(credits) - 1 : -1]
    return float(earlier.sum() / len(earlier)) if len(earlier) else 0.0


def pct_change(current: float, previous: float) -> float | None:
    if previous <= 0:
        return None
    return (current - previous) / previous * 100.0


@dataclass(frozen=True, slots=True)
class _KeySums:
    """Uses and credits by one column's values, sorted, a missing value last: what
    ``groupby(key, dropna=False)[["uses", "credits"]].sum()`` gives, to the last bit."""

    keys: pd.Index
    uses: np.ndarray
    credits: np.ndarray


def _key_sums(rows: pd.DataFrame, key: str) -> _KeySums:
    column = rows[key]
    ids, keys = pd.factorize(column, sort=True, use_na_sentinel=False)
    # The index a groupby makes of object keys is typed from their values, as a list's is.
    index = pd.Index(list(keys)) if column.dtype == object and len(keys) else pd.Index(keys)
    return _KeySums(
        index,
        _group_sums(ids, len(keys), rows["uses"].to_numpy()),
        _group_sums(ids, len(keys), rows["credits"].to_numpy()),
    )


def _breakdown(
    detail: pd.DataFrame,
    previous: pd.DataFrame,
    key: str,
    total: float,
    current: _KeySums | None = None,
) -> Breakdown:
    # Sorted by key, the unattributed row (key NaN) last: _finish relies on both.
    current = current or _key_sums(detail, key)
    before = _key_sums(previous, key)
    keys = current.keys
    uses = current.uses
    credits = current.credits
    found = before.keys.get_indexer(keys)
    previous_credits = _taken(before.credits, found).astype("float64")
    previous_uses = _taken(before.uses, found).astype("int64")
    # Named rows by credits (a stable sort keeps ties by key); the unattributed row last,
    # where readers look for it.
    named = np.flatnonzero(keys.notna())
    order = np.concatenate(
        [named[np.argsort(-credits[named], kind="stable")], np.flatnonzero(keys.isna())]
    )
    return Breakdown(
        _finish(
            keys.take(order),
            uses[order],
            credits[order],
            previous_credits[order],
            total,
            previous_uses[order],
        )
    )


def _finish(
    keys: pd.Index | pd.Series,
    uses: np.ndarray,
    credits: np.ndarray,
    previous: np.ndarray,
    total: float,
    previous_uses: np.ndarray,
) -> pd.DataFrame:
    """A breakdown's rows, in the order given, with their shares and changes."""
    known = previous > 0
    return pd.DataFrame(
        {
            "key": keys,
            "uses": uses,
            "credits": credits,
            "share": (credits / total * 100.0) if total else np.zeros(len(credits)),
            "previous_credits": previous,
            "change_pct": np.where(
                known, (credits - previous) / np.where(known, previous, 1) * 100.0, np.nan
            ),
            "previous_uses": previous_uses,
        }
    )


OTHERS = "__others__"


def _top_users(
    detail: pd.DataFrame, previous: pd.DataFrame, total: float, top: int
) -> tuple[Breakdown, int]:
    """The ``top`` users by credits, one "others" row for the rest, and unattributed."""
    table = _breakdown(detail, previous, "user", total).rows
    named = int(table["key"].notna().sum())  # named rows come first
    if named <= top:
        return Breakdown(table), 0
    head, tail, rest = table.iloc[:top], table.iloc[top:named], table.iloc[named:]
    sums = tail[["uses", "credits", "previous_credits", "previous_uses"]].sum()
    keys = pd.concat([head["key"], pd.Series([OTHERS]), rest["key"]], ignore_index=True)

    def column(name: str, dtype: str) -> np.ndarray:
        return np.concatenate(
            [head[name].to_numpy(), np.array([sums[name]], dtype=dtype), rest[name].to_numpy()]
        ).astype(dtype)

    rows = _finish(
        keys,
        column("uses", "int64"),
        column("credits", "float64"),
        column("previous_credits", "float64"),
        total,
        column("previous_uses", "int64"),
    )
    return Breakdown(rows), named - top


def daily_series(detail: pd.DataFrame, period: Period) -> pd.DataFrame:
    """Credits per bucket and tool over the whole period, buckets without usage as 0."""
    freq = {"day": "D", "month": "MS"}[period.detail_granularity]
    dates = pd.date_range(period.start, period.end, freq=freq)
    tools = sorted(detail["tool"].dropna().unique())
    if not tools:
        return pd.DataFrame(
            {
                "date": pd.Series(dtype="datetime64[ns]"),
                "tool": pd.Series(dtype=object),
                "credits": pd.Series(dtype="float64"),
            }
        )
    grid = pd.MultiIndex.from_product([dates, tools], names=["date", "tool"])
    series = (
        detail.groupby(["date", "tool"])["credits"]
        .sum()
        .reindex(grid, fill_value=0.0)
        .reset_index()
    )
    return series


def find_spikes(daily: pd.DataFrame) -> pd.DataFrame:
    """Days far above the period's usual day: above median + 3 robust deviations,
    and at least 1.5x the median. Quiet days (weekends) do not drag the median."""
    per_day = daily.groupby("date", as_index=False)["credits"].sum()
    busy = per_day[per_day["credits"] > 0]
    if len(busy) < 7:
        none: pd.DataFrame = per_day.iloc[:0].assign(ratio=pd.Series(dtype="float64"))
        return none
    median = float(busy["credits"].median())
    mad = float((busy["credits"] - median).abs().median()) * 1.4826
    threshold = max(median + 3 * mad, median * 1.5)
    spikes = per_day[per_day["credits"] > threshold]
    found: pd.DataFrame = spikes.assign(ratio=spikes["credits"] / median).reset_index(drop=True)
    return found


def budget_status(used: float, limit: float, period: Period, today: dt.date | None) -> Budget:
    """Used against the budget, and where the run rate ends the period if it is not over."""
    forecast = None
    if today is not None and not period.is_complete(today):
        elapsed = period.elapsed_days(today)
        forecast = used / elapsed * period.days if elapsed else None
    projected = forecast if forecast is not None else used
    status = "over" if used > limit else ("at_risk" if projected > limit else "ok")
    return Budget(
        limit=limit,
        used=used,
        used_pct=used / limit * 100.0 if limit else 0.0,
        forecast=forecast,
        status=status,
    )


def csv_frame(detail: pd.DataFrame) -> pd.DataFrame:
    """The tidy rows as written to ``<name>.csv``: one line per bucket, tool, user, project."""
    out = detail.rename(
        columns={"user": "user_email", "project": "project_name", "group": "group_name"}
    )
    out = out.assign(date=out["date"].dt.strftime("%Y-%m-%d"))
    text = ["tool", "user_email", "project_reference", "project_name", "group_name"]
    out = out.assign(**{column: _inert(out[column]) for column in text})
    # Empty where a line has no uses: never a division error or "inf" in a spreadsheet.
    uses = out["uses"].to_numpy()
    per_use_column = np.divide(
        out["credits"].to_numpy(), uses, out=np.full(len(out), np.nan), where=uses > 0
    )
    out = out.assign(credits_per_use=np.round(per_use_column, 4))
    return out[["date", *text, "uses", "credits", "credits_per_use"]]


# A spreadsheet reads a cell starting with one of these as a formula (OWASP, "CSV Injection").
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _inert(column: pd.Series) -> pd.Series:
    """Text cells a spreadsheet would run as a formula, prefixed with ``'`` (OWASP).

    Names come from the API, so anyone who can name a project or a tool could put
    ``=HYPERLINK(...)`` in a manager's spreadsheet. Only text is touched: the numeric
    columns are never passed here, so a negative number stays a number.
    """
    formula = column.str.startswith(_FORMULA_START, na=False)
    if not formula.any():  # the usual case: nothing to build
        return column
    return column.where(~formula, "'" + column.astype(str))


def movers(table: Breakdown, limit: int = 3) -> list[Row]:
    """Named rows with the largest change in credits, for the "what changed" lines."""
    named = [row for row in table.records() if row.key is not None and row.key != OTHERS]
    return sorted(named, key=lambda row: abs(row.delta), reverse=True)[:limit]
