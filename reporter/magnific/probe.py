"""Whether the API's ``end_date`` is inclusive, told from two answers (the docs never say)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from reporter.magnific.response import UsageResponse, utc_day

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
        utc_day(bucket.date)
        for bucket in response.data
        if any(c.user_uses > 0 or c.user_credits > 0 for c in bucket.consumptions)
    }
