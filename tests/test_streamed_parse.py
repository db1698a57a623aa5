"""A big answer is read a tool at a time (ijson), from disk, a small one whole: they must agree.

Hypothesis writes answers the contract allows and many it does not (wrong types,
negative or huge numbers, missing fields, buckets outside the query, broken JSON);
each is parsed both ways and must give the same buckets and user rows, or the same
error, word for word.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reporter.errors import ApiResponseError
from reporter.magnific import UsageQuery, parse_usage_response
from reporter.magnific.response import SpooledBody
from reporter.sandbox import SandboxData, SandboxServer, synthetic_team

QUERY = UsageQuery("day", dt.date(2026, 10, 1), dt.date(2026, 10, 5))
WHOLE = 10**12  # never streamed
STREAMED = 0  # always streamed

texts = st.one_of(st.none(), st.sampled_from(["ann@company.com", "ANN@company.com", "", "x"]))
numbers = st.one_of(
    st.integers(0, 10**6),
    st.floats(0, 1e6, allow_nan=False),
    st.sampled_from([-1, 10**16, "12", None, True, 1.5]),
)
rows = st.fixed_dictionaries(
    {"user_email": texts, "user_uses": numbers, "user_credits": numbers},
    optional={"project_name": texts, "group_name": texts, "project_reference": texts},
)
consumptions = st.fixed_dictionaries(
    {
        "tool": st.sampled_from(["Video Generation", "AI Image Models"]),
        "user_uses": st.integers(0, 10**6),
        "user_credits": st.one_of(st.integers(0, 10**6), st.just(-5)),
    },
    optional={"user_usages": st.one_of(st.none(), st.lists(rows, max_size=4), st.just("x"))},
)
buckets = st.fixed_dictionaries(
    {
        "date": st.sampled_from(
            ["2026-10-01T00:00:00.000Z", "2026-10-03T00:00:00.000Z", "2019-01-01T00:00:00Z", "x"]
        ),
        "consumptions": st.lists(consumptions, max_size=3),
    }
)
answers = st.one_of(
    st.fixed_dictionaries({"data": st.lists(buckets, max_size=4)}),
    st.just({"data": "x"}),
    st.just({}),
    st.just([]),
)


def outcome(content: bytes, stream_above: int) -> Any:
    try:
        response = parse_usage_response(content, QUERY, stream_above=stream_above)
    except ApiResponseError as exc:
        return ("error", exc.message)
    return ("ok", response.data, response.dropped, response.users)


def same(content: bytes) -> None:
    whole, streamed = outcome(content, WHOLE), outcome(content, STREAMED)
    assert whole[0] == streamed[0], (whole, streamed)
    if whole[0] == "error":
        assert whole == streamed
        return
    assert whole[1:3] == streamed[1:3]
    pd.testing.assert_frame_equal(whole[3], streamed[3])


@settings(max_examples=300, deadline=None)
@given(answers)
def test_both_readings_agree_on_any_answer(answer: Any) -> None:
    same(json.dumps(answer).encode())


@given(answers, st.integers(1, 40))
@settings(max_examples=100, deadline=None)
def test_both_readings_agree_on_a_body_cut_short(answer: Any, cut: int) -> None:
    content = json.dumps(answer).encode()
    same(content[: max(0, len(content) - cut)])


def test_a_real_teams_month_reads_the_same_both_ways_and_as_a_bytearray() -> None:
    data = SandboxData(synthetic_team(users=300, seed=2), today=dt.date(2026, 11, 25))
    query = UsageQuery("day", dt.date(2026, 10, 1), dt.date(2026, 10, 31))
    status, content = SandboxServer(data).respond(query.body())  # not started: no socket
    assert status == 200
    whole = parse_usage_response(content, query, stream_above=WHOLE)
    streamed = parse_usage_response(bytearray(content), query, stream_above=STREAMED)
    spooled = SpooledBody()
    for start in range(0, len(content), 65536):  # as the client writes it, piece by piece
        spooled.write(content[start : start + 65536])
    from_disk = parse_usage_response(spooled, query)
    assert len(whole.users) > 5_000
    for other in (streamed, from_disk):
        assert whole.data == other.data
        pd.testing.assert_frame_equal(whole.users, other.users)


def test_a_spooled_body_that_is_not_an_answer_gets_the_usual_error() -> None:
    spooled = SpooledBody()
    spooled.write(b'{"data": [{"date": "2026-10-01T00:00:00Z", "consumptions": [')
    with pytest.raises(ApiResponseError, match="not valid JSON"):
        parse_usage_response(spooled, QUERY)
    with pytest.raises(ValueError, match="closed file"):  # read once, then closed
        spooled.read_all()
