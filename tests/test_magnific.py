"""The API client against the stand-in API over real HTTP: faults, validation, secrecy."""

from __future__ import annotations

import concurrent.futures
import dataclasses
import datetime as dt
import email.utils
import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from pydantic import SecretStr

from reporter.environment import ApiSettings
from reporter.errors import (
    ApiAuthError,
    ApiRequestError,
    ApiResponseError,
    ApiUnavailableError,
)
from reporter.magnific import (
    MAX_PLAUSIBLE,
    MagnificClient,
    RetryPolicy,
    UsageQuery,
    UsageResponse,
    decide_end,
    end_pad_is_exact,
    names_date_field,
    parse_retry_after,
    parse_usage_response,
    probe_day,
)
from reporter.periods import Granularity
from reporter.sandbox import (
    DATE_FORMS,
    END_MEANINGS,
    DateForms,
    EndMeaning,
    Fault,
    SandboxData,
    SandboxServer,
    synthetic_team,
)
from tests.conftest import API_KEY, TODAY, free_port

OCTOBER = UsageQuery("day", dt.date(2026, 10, 1), dt.date(2026, 10, 31))
FAST = RetryPolicy(
    attempts=4, initial_wait=0.01, max_wait=5, total_timeout=30, connect_timeout=2, read_timeout=2
)


class Sleeps(list[float]):
    """Records the waits the client asked for instead of sleeping them."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def client_for(
    url: str,
    *,
    key: str = API_KEY,
    retry: RetryPolicy = FAST,
    sleeps: Sleeps | None = None,
    max_in_flight: int = 4,
) -> MagnificClient:
    return MagnificClient(
        ApiSettings(SecretStr(key), url),
        retry=retry,
        max_in_flight=max_in_flight,
        sleep=sleeps if sleeps is not None else Sleeps(),
    )


def totals(client: MagnificClient, query: UsageQuery = OCTOBER) -> dict[str, float]:
    out: dict[str, float] = {}
    for bucket in client.fetch_usage(query).data:
        for c in bucket.consumptions:
            out[c.tool] = out.get(c.tool, 0) + c.user_credits
    return out


def test_request_carries_key_header_documented_dates_and_filters(api: SandboxServer) -> None:
    query = UsageQuery(
        "month",
        dt.date(2026, 1, 1),
        dt.date(2026, 3, 31),
        project_references=("a1b2c3d4-1111-4000-8000-000000000001",),
        api_key_ids=("api-key-1",),
        group_ids=(10, 20),
    )
    # An end pinned as inclusive is sent as it is (``auto`` pads it: see test_end_*).
    with client_for(api.url, retry=dataclasses.replace(FAST, end_inclusive=True)) as client:
        client.fetch_usage(query)
    (request,) = api.requests
    assert request.had_key
    assert request.body == {
        "granularity": "month",
        "start_date": "2026-01-01T00:00:00.000Z",
        "end_date": "2026-03-31T00:00:00.000Z",
        "project_references": ["a1b2c3d4-1111-4000-8000-000000000001"],
        "api_key_ids": ["api-key-1"],
        "group_ids": [10, 20],
    }


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_server_errors_are_retried_and_give_the_same_figures(
    api: SandboxServer, status: int
) -> None:
    with client_for(api.url) as client:
        clean = totals(client)
        api.inject(Fault("status", status=status), Fault("status", status=status))
        sleeps = Sleeps()
        with client_for(api.url, sleeps=sleeps) as retried:
            assert totals(retried) == clean
    assert len(sleeps) == 2
    assert [r.status for r in api.requests[-3:]] == [status, status, 200]


@pytest.mark.parametrize(
    ("retry_after", "expected"),
    [("2", 2.0), (None, None)],
)
def test_429_honours_retry_after_seconds(
    api: SandboxServer, retry_after: str | None, expected: float | None
) -> None:
    api.inject(Fault("status", status=429, retry_after=retry_after))
    sleeps = Sleeps()
    with client_for(api.url, sleeps=sleeps) as client:
        client.fetch_usage(OCTOBER)
    assert len(sleeps) == 1
    if expected is not None:
        assert sleeps[0] == expected
    else:  # exponential backoff with jitter, within the policy's cap
        assert 0 <= sleeps[0] <= FAST.max_wait


def test_429_retry_after_as_http_date(api: SandboxServer) -> None:
    when = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=3)
    api.inject(
        Fault("status", status=429, retry_after=email.utils.format_datetime(when, usegmt=True))
    )
    sleeps = Sleeps()
    with client_for(api.url, sleeps=sleeps) as client:
        client.fetch_usage(OCTOBER)
    assert 1.0 <= sleeps[0] <= 3.0


def test_retry_after_is_capped_by_the_policy(api: SandboxServer) -> None:
    api.inject(Fault("status", status=429, retry_after="3600"))
    sleeps = Sleeps()
    with client_for(api.url, sleeps=sleeps) as client:
        client.fetch_usage(OCTOBER)
    assert sleeps == [FAST.max_wait]


def test_parse_retry_after() -> None:
    now = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC)
    assert parse_retry_after("120", now=now) == 120.0
    assert parse_retry_after("Wed, 25 Nov 2026 12:00:30 GMT", now=now) == 30.0
    assert parse_retry_after("Wed, 25 Nov 2026 11:00:00 GMT", now=now) == 0.0
    assert parse_retry_after("soon", now=now) is None
    assert parse_retry_after(None) is None


def test_retries_are_capped_and_then_reported_in_one_line(api: SandboxServer) -> None:
    api.inject(*[Fault("status", status=503)] * 10)
    with client_for(api.url) as client, pytest.raises(ApiUnavailableError) as caught:
        client.fetch_usage(OCTOBER)
    assert len(api.requests) == FAST.attempts
    message = str(caught.value)
    assert message.startswith("the Magnific API did not answer successfully: HTTP 503")
    assert "(gave up after 4 attempts" in message
    assert "\n" not in message


@pytest.mark.parametrize("status", [400, 404, 422])
def test_rejected_requests_are_not_retried_and_carry_the_api_message(
    api: SandboxServer, status: int
) -> None:
    api.inject(Fault("status", status=status))
    with client_for(api.url) as client, pytest.raises(ApiRequestError) as caught:
        client.fetch_usage(OCTOBER)
    assert len(api.requests) == 1
    assert caught.value.status == status
    assert f"the Magnific API refused the request ({status})" in str(caught.value)


def test_validation_message_of_the_api_is_shown(api: SandboxServer) -> None:
    import httpx

    response = httpx.post(
        f"{api.url}/v1/analytics/team-credit-usage",
        json={"granularity": "hour"},
        headers={"x-magnific-api-key": API_KEY},
    )
    assert response.status_code == 422
    assert "granularity must be one of day, week, month, year" in response.json()["message"]


def test_rejected_key_is_one_clear_line_without_the_key(
    api: SandboxServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "sk-live-wrong-key-123456"
    with client_for(api.url, key=wrong) as client, pytest.raises(ApiAuthError) as caught:
        client.fetch_usage(OCTOBER)
    assert (
        str(caught.value)
        == "the Magnific API rejected the key in MAGNIFIC_API_KEY (401): Invalid API key"
    )
    assert len(api.requests) == 1
    assert wrong not in repr(client)
    assert wrong not in caplog.text
    assert wrong not in repr(caught.value) + str(caught.value.__dict__)


def test_key_never_appears_in_logs_or_errors(
    api: SandboxServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    api.inject(Fault("status", status=503), *[Fault("status", status=500)] * 5)
    with client_for(api.url) as client:
        with pytest.raises(ApiUnavailableError) as caught:
            client.fetch_usage(OCTOBER)
        assert API_KEY not in repr(client)
    assert API_KEY not in caplog.text
    assert API_KEY not in str(caught.value)
    assert "retrying" in caplog.text  # the retries were logged, just not the key


def test_malformed_body_names_the_field(api: SandboxServer) -> None:
    api.inject(Fault("malformed"))
    with client_for(api.url) as client, pytest.raises(ApiResponseError) as caught:
        client.fetch_usage(OCTOBER)
    assert "data[0].consumptions[0].user_credits" in str(caught.value)
    assert "greater than or equal to 0" in str(caught.value)
    assert len(api.requests) == 1


def test_cut_off_json_body_is_reported(api: SandboxServer) -> None:
    api.inject(Fault("invalid_json"))
    with client_for(api.url) as client, pytest.raises(ApiResponseError) as caught:
        client.fetch_usage(OCTOBER)
    assert "not valid JSON" in str(caught.value)


def test_dropped_connection_mid_body_is_retried(api: SandboxServer) -> None:
    with client_for(api.url) as client:
        clean = totals(client)
    api.inject(Fault("truncate"))
    sleeps = Sleeps()
    with client_for(api.url, sleeps=sleeps) as client:
        assert totals(client) == clean
    assert len(sleeps) == 1


def test_slow_response_times_out_and_is_retried(api: SandboxServer) -> None:
    api.inject(Fault("slow", seconds=1.5))
    policy = RetryPolicy(attempts=3, initial_wait=0.01, max_wait=1, read_timeout=0.5)
    sleeps = Sleeps()
    with client_for(api.url, retry=policy, sleeps=sleeps) as client:
        assert totals(client)
    assert len(sleeps) == 1


def test_unreachable_server() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with client_for(url) as client, pytest.raises(ApiUnavailableError) as caught:
        client.fetch_usage(OCTOBER)
    assert f"cannot reach {url}/v1/analytics/team-credit-usage" in str(caught.value)


@pytest.mark.parametrize(
    ("kwargs", "problem"),
    [
        ({"project_references": ("nope",)}, "project reference 'nope' is not a UUID"),
        ({"group_ids": (0,)}, "group id 0 must be an integer >= 1"),
        (
            {"start_date": dt.date(2026, 11, 1)},
            "start_date 2026-11-01 is after end_date 2026-10-31",
        ),
        ({"granularity": "hour"}, "granularity must be one of day, week, month, year"),
        ({"api_key_ids": ("",)}, "api key id '' must be a non-empty string"),
    ],
)
def test_invalid_queries_are_refused_before_sending(
    kwargs: dict[str, object], problem: str
) -> None:
    fields: dict[str, object] = {
        "granularity": "day",
        "start_date": dt.date(2026, 10, 1),
        "end_date": dt.date(2026, 10, 31),
        **kwargs,
    }
    with pytest.raises(ApiRequestError) as caught:
        UsageQuery(**fields)  # type: ignore[arg-type]
    assert problem in str(caught.value)


def test_concurrent_fetches_stay_within_the_in_flight_bound(api: SandboxServer) -> None:
    api.inject(*[Fault("slow", seconds=0.3)] * 12)
    with (
        client_for(api.url, max_in_flight=2) as client,
        concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool,
    ):
        results = list(pool.map(lambda _: totals(client), range(12)))
    assert all(r == results[0] for r in results)
    assert api.peak_in_flight == 2


def _body(usages: object) -> bytes:
    """Two buckets; the second's first consumption carries ``user_usages``."""
    ok = {"user_email": "a@x.com", "user_uses": 1, "user_credits": 10}
    return json.dumps(
        {
            "data": [
                {
                    "date": "2026-10-01T00:00:00.000Z",
                    "consumptions": [
                        {"tool": "T", "user_uses": 1, "user_credits": 10, "user_usages": [ok]}
                    ],
                },
                {
                    "date": "2026-10-02T00:00:00.000Z",
                    "consumptions": [
                        {"tool": "T", "user_uses": 9, "user_credits": 90, "user_usages": usages}
                    ],
                },
            ]
        }
    ).encode()


GOOD_ROW = {"user_email": "b@x.com", "user_uses": 2, "user_credits": 20.5}


@pytest.mark.parametrize(
    ("usages", "where", "message"),
    [
        (
            [GOOD_ROW, GOOD_ROW, {**GOOD_ROW, "user_credits": -1}],
            "data[1].consumptions[0].user_usages[2].user_credits",
            "greater than or equal to 0",
        ),
        (
            [GOOD_ROW, {**GOOD_ROW, "user_uses": "2"}],
            "data[1].consumptions[0].user_usages[1].user_uses",
            "valid number",
        ),
        (
            [{**GOOD_ROW, "user_uses": 1.5}],
            "data[1].consumptions[0].user_usages[0].user_uses",
            "valid integer",
        ),
        (
            [GOOD_ROW, {"user_email": "c@x.com", "user_uses": 1}],
            "data[1].consumptions[0].user_usages[1].user_credits",
            "Field required",
        ),
        ([GOOD_ROW, "row"], "data[1].consumptions[0].user_usages[1]", "valid dictionary"),
        (
            [{**GOOD_ROW, "user_email": 7}],
            "data[1].consumptions[0].user_usages[0].user_email",
            "valid string",
        ),
        ({"rows": []}, "data[1].consumptions[0].user_usages", "valid list"),
    ],
)
def test_a_bad_user_row_is_named_exactly(usages: object, where: str, message: str) -> None:
    with pytest.raises(ApiResponseError) as caught:
        parse_usage_response(_body(usages))
    assert f"unexpected response: {where}: " in str(caught.value)
    assert message in str(caught.value)


def test_user_rows_flatten_to_columns_with_their_bucket_and_tool() -> None:
    rows = [GOOD_ROW, {"user_email": "", "user_uses": 3, "user_credits": 1, "group_name": "G"}]
    users = parse_usage_response(_body(rows)).users
    assert list(users["user"].fillna("-")) == ["a@x.com", "b@x.com", "-"]
    assert [d.day for d in users["date"]] == [1, 2, 2]
    assert list(users["tool"]) == ["T", "T", "T"]
    assert list(users["uses"]) == [1, 2, 3]
    assert list(users["credits"]) == [10.0, 20.5, 1.0]
    assert list(users["group"].fillna("-")) == ["-", "-", "G"]
    assert str(users["uses"].dtype) == "int64"


def test_a_number_with_hundreds_of_digits_is_a_contract_error_naming_it() -> None:
    body = _body([GOOD_ROW]).replace(b'"user_uses": 2', b'"user_uses": 1' + b"0" * 400)
    with pytest.raises(ApiResponseError) as caught:
        parse_usage_response(body)
    assert str(caught.value).endswith(
        "data[1].consumptions[0].user_usages[0].user_uses:"
        f" Input should be less than or equal to {MAX_PLAUSIBLE}"
    )


# --- buckets the query did not ask for ----------------------------------------------------


def _buckets(*days: str) -> bytes:
    return json.dumps(
        {
            "data": [
                {
                    "date": f"{day}T00:00:00.000Z",
                    "consumptions": [
                        {
                            "tool": "T",
                            "user_uses": 1,
                            "user_credits": 10,
                            "user_usages": [
                                {"user_email": "a@x.com", "user_uses": 1, "user_credits": 10}
                            ],
                        }
                    ],
                }
                for day in days
            ]
        }
    ).encode()


@pytest.mark.parametrize(
    ("granularity", "days", "kept"),
    [
        ("day", ["2026-10-01", "2026-10-31", "2026-11-01", "2026-09-30"], [0, 1]),
        # A week that starts before the range still overlaps it (the week start is
        # undocumented); one that ends before it does not.
        ("week", ["2026-09-28", "2026-09-21", "2026-10-26", "2026-11-02"], [0, 2]),
        ("month", ["2026-10-01", "2026-09-01", "2026-11-01"], [0]),
        ("year", ["2026-01-01", "2025-01-01", "2027-01-01"], [0]),
        # Dates no calendar library of the pipeline can hold are dropped, not crashed on.
        ("day", ["0001-01-01", "2026-10-02", "9999-12-31"], [1]),
    ],
)
def test_buckets_outside_the_query_are_dropped_and_listed(
    granularity: Granularity, days: list[str], kept: list[int]
) -> None:
    query = UsageQuery(granularity, dt.date(2026, 10, 1), dt.date(2026, 10, 31))
    response = parse_usage_response(_buckets(*days), query)
    assert [b.date.date().isoformat() for b in response.data] == [days[i] for i in kept]
    assert [d.isoformat() for d in response.dropped] == [
        d for i, d in enumerate(days) if i not in kept
    ]
    assert sorted({d.date().isoformat() for d in response.users["date"]}) == sorted(
        days[i] for i in kept
    )


# --- the deadline and the size cap ------------------------------------------------------


def test_a_trickling_body_is_cut_off_at_the_whole_request_deadline(api: SandboxServer) -> None:
    api.inject(Fault("trickle", seconds=10))
    policy = RetryPolicy(attempts=3, initial_wait=0.01, total_timeout=2, read_timeout=5)
    started = time.monotonic()
    with client_for(api.url, retry=policy) as client, pytest.raises(ApiUnavailableError) as caught:
        client.fetch_usage(OCTOBER)
    elapsed = time.monotonic() - started
    # A correctness bound, not a speed test: without the deadline this takes 10 s or more.
    assert elapsed < 2 + 5
    assert str(caught.value).startswith(
        "the Magnific API did not answer within the deadline of 2s ([api] total_timeout_seconds)"
    )
    assert "[api] total_timeout_seconds" in (caught.value.hint or "")
    assert len(api.requests) == 1


@contextmanager
def silent_mid_body(speaks_for: float) -> Iterator[str]:
    """An API on loopback that answers 200 with a long body, sends a piece of it every
    0.2 s for ``speaks_for`` seconds, then says nothing more with the connection open."""
    listener = socket.create_server(("127.0.0.1", 0))
    done = threading.Event()

    def serve() -> None:
        conn, _ = listener.accept()
        with conn, conn.makefile("rb") as request:
            length = 0
            for line in request:
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
                if line == b"\r\n":
                    break
            request.read(length)
            head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            conn.sendall(head + b"Content-Length: 1000000\r\n\r\n" + b'{"data": [')
            until = time.monotonic() + speaks_for
            while time.monotonic() < until and not done.wait(0.2):
                conn.sendall(b" ")
            done.wait(60)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        done.set()
        thread.join()
        listener.close()


def test_a_body_that_goes_silent_near_the_deadline_does_not_outlast_it() -> None:
    """Each read of the body waits no longer than what is left of the whole request's
    deadline: a server silent from just before it cannot add a read timeout on top."""
    policy = RetryPolicy(attempts=3, initial_wait=0.01, total_timeout=2, read_timeout=3)
    with silent_mid_body(speaks_for=1.8) as url, client_for(url, retry=policy) as client:
        started = time.monotonic()
        with pytest.raises(ApiUnavailableError) as caught:
            client.fetch_usage(OCTOBER)
        elapsed = time.monotonic() - started
    # A correctness bound, not a speed test: reads held to the read timeout alone end
    # near 1.8 + 2 s.
    assert elapsed <= 2 + 1, f"took {elapsed:.2f} s"
    assert str(caught.value).startswith(
        "the Magnific API did not answer within the deadline of 2s ([api] total_timeout_seconds)"
    )


def test_a_retry_wait_that_would_cross_the_deadline_is_not_waited(api: SandboxServer) -> None:
    api.inject(*[Fault("status", status=503, retry_after="5")] * 4)
    policy = RetryPolicy(attempts=4, initial_wait=0.01, max_wait=10, total_timeout=2)
    sleeps = Sleeps()
    with (
        client_for(api.url, retry=policy, sleeps=sleeps) as client,
        pytest.raises(ApiUnavailableError, match="gave up after 1 attempt "),
    ):
        client.fetch_usage(OCTOBER)
    assert sleeps == []


@pytest.mark.parametrize(
    ("kind", "detail"),
    [
        ("oversize", "it announced 67,"),  # refused on its Content-Length, before any byte
        ("oversize_chunked", "more than 1,048,576 bytes arrived"),
    ],
)
def test_a_body_over_the_size_cap_is_refused_without_reading_it_all(
    api: SandboxServer, kind: str, detail: str
) -> None:
    api.inject(Fault(kind, size_mb=64))
    policy = RetryPolicy(attempts=3, initial_wait=0.01, max_response_bytes=1024 * 1024)
    with client_for(api.url, retry=policy) as client, pytest.raises(ApiResponseError) as caught:
        client.fetch_usage(OCTOBER)
    assert str(caught.value).startswith(
        "the Magnific API's response is larger than the cap of 1 MB ([api] max_response_mb): "
        + detail
    )
    assert "[api] max_response_mb" in (caught.value.hint or "")
    assert bytes_sent(api) < 64 * 1024 * 1024
    assert len(api.requests) == 1  # not retried: the same request would be as large


def bytes_sent(api: SandboxServer) -> int:
    """What the server wrote of an oversize body before the client hung up.

    The server notes it once its next write fails, a moment after the client has left."""
    for _ in range(600):
        sent = [r.bytes_sent for r in api.requests if r.bytes_sent is not None]
        if sent:
            return sent[0]
        time.sleep(0.05)
    raise AssertionError("the server never recorded the oversize answer")


def test_a_body_under_the_cap_is_read_whole(api: SandboxServer) -> None:
    with client_for(api.url) as client:
        clean = totals(client)
    api.inject(Fault("oversize_chunked", size_mb=2))
    policy = RetryPolicy(max_response_bytes=3 * 1024 * 1024)
    with client_for(api.url, retry=policy) as client:
        assert totals(client) == clean


# --- what the documentation leaves open: date form and end_date ---------------------------

D = dt.date


@pytest.mark.parametrize(
    ("long_days", "short_days", "inclusive", "day"),
    [
        # The long answer ended on the 24th; the latest day with usage before it is the 23rd.
        (
            {D(2026, 11, 21), D(2026, 11, 22), D(2026, 11, 23)},
            {D(2026, 11, 22), D(2026, 11, 23)},
            True,
            D(2026, 11, 23),
        ),
        (
            {D(2026, 11, 21), D(2026, 11, 22), D(2026, 11, 23)},
            {D(2026, 11, 22)},
            False,
            D(2026, 11, 23),
        ),
        # The 22nd had no usage: the short answer is empty when exclusive.
        ({D(2026, 11, 23), D(2026, 11, 24)}, set(), False, D(2026, 11, 23)),
        # Usage only on the long answer's end day: nothing before it to compare.
        ({D(2026, 11, 24)}, set(), None, None),
        (set(), set(), None, None),
    ],
)
def test_end_probe_decides_from_the_day_before_the_long_answers_end(
    long_days: set[dt.date], short_days: set[dt.date], inclusive: bool | None, day: dt.date | None
) -> None:
    long_end = D(2026, 11, 24)
    short_end = probe_day(long_end, long_days)
    assert short_end == day
    assert decide_end(long_end, long_days, short_end, short_days).inclusive is inclusive


@pytest.mark.parametrize(
    "short_days",
    [
        {D(2026, 11, 22), D(2026, 11, 23), D(2026, 11, 24)},  # a day after its end
        {D(2026, 11, 23)},  # the 22nd had usage in the long answer, not in this one
    ],
)
def test_end_probe_concludes_nothing_from_answers_that_disagree(short_days: set[dt.date]) -> None:
    long_days = {D(2026, 11, 22), D(2026, 11, 23)}
    probe = decide_end(D(2026, 11, 24), long_days, D(2026, 11, 23), short_days)
    assert probe.inclusive is None
    assert probe.reason


@pytest.mark.parametrize(
    ("granularity", "end", "exact"),
    [
        ("day", D(2026, 10, 14), True),
        ("month", D(2026, 10, 31), True),
        ("month", D(2026, 10, 30), False),
        ("week", D(2026, 10, 25), True),  # a Sunday: the next bucket starts on Monday
        ("week", D(2026, 10, 14), False),
        ("year", D(2026, 12, 31), True),
        ("year", D(2026, 10, 31), False),
    ],
)
def test_padding_the_end_is_exact_when_the_next_day_starts_a_bucket(
    granularity: Granularity, end: dt.date, exact: bool
) -> None:
    assert end_pad_is_exact(UsageQuery(granularity, D(2026, 1, 1), end)) is exact


@pytest.mark.parametrize(
    ("status", "body", "named"),
    [
        (422, b'{"message": "start_date must be a date (YYYY-MM-DD)"}', True),
        (400, b'{"detail": [{"loc": ["body", "end_date"], "msg": "invalid"}]}', True),
        (422, b'{"message": "group id 0 must be an integer >= 1"}', False),
        (503, b'{"message": "end_date service down"}', False),
        (422, b'{"message": "bad start_dates"}', False),
    ],
)
def test_a_date_refusal_is_a_400_or_422_naming_a_date_field(
    status: int, body: bytes, named: bool
) -> None:
    assert names_date_field(status, body) is named


def sandbox_for(sandbox_data: SandboxData, dates: DateForms, end: EndMeaning) -> SandboxServer:
    return SandboxServer(sandbox_data, api_key=API_KEY, dates=dates, end=end)


def adapting_client(url: str, **policy: Any) -> MagnificClient:
    return MagnificClient(
        ApiSettings(SecretStr(API_KEY), url),
        retry=dataclasses.replace(FAST, **policy),
        sleep=Sleeps(),
        today=lambda: TODAY,
    )


def credits_from_data(sandbox_data: SandboxData, start: dt.date, end: dt.date) -> int:
    """The stand-in's own rows for those days, summed: no HTTP, no end semantics."""
    return int(sandbox_data.rows(start, end)["credits"].sum())


def credits_of(response: UsageResponse) -> int:
    return int(sum(c.user_credits for b in response.data for c in b.consumptions))


@pytest.mark.parametrize("end", END_MEANINGS)
@pytest.mark.parametrize("dates", DATE_FORMS)
def test_auto_covers_exactly_the_asked_days_against_every_api_reading(
    sandbox_data: SandboxData,
    dates: DateForms,
    end: EndMeaning,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """October by day, the months of a year by month, and weeks ending on a Wednesday
    (where padding the end is not exact, so the probe decides) all match the data."""
    weeks = UsageQuery("week", D(2026, 9, 28), D(2026, 10, 14))
    assert credits_from_data(sandbox_data, D(2026, 10, 14), D(2026, 10, 14)) > 0
    history = UsageQuery("month", D(2026, 1, 1), D(2026, 10, 31))
    with sandbox_for(sandbox_data, dates, end) as api, adapting_client(api.url) as client:
        october = client.fetch_usage(OCTOBER)
        by_month = client.fetch_usage(history)
        by_week = client.fetch_usage(weeks)
        again = client.fetch_usage(weeks)
        assert client.date_form == ("date" if dates == "date" else "datetime")
    assert credits_of(october) == credits_from_data(sandbox_data, D(2026, 10, 1), D(2026, 10, 31))
    assert [b.date.date() for b in october.data][-1] <= D(2026, 10, 31)
    assert credits_of(by_month) == credits_from_data(sandbox_data, D(2026, 1, 1), D(2026, 10, 31))
    assert [b.date.month for b in by_month.data] == list(range(1, 11))
    assert credits_of(by_week) == credits_of(again)
    assert credits_of(by_week) == credits_from_data(sandbox_data, D(2026, 9, 28), D(2026, 10, 14))
    refused = [r for r in api.requests if r.status == 422]
    # One refused request per run at most, and said once; the end probe is two requests.
    assert len(refused) == (1 if dates == "date" else 0)
    assert caplog.text.count("sending plain (YYYY-MM-DD) dates from now on") == len(refused)
    assert len(api.requests) == 4 + 2 + len(refused)
    assert "dropped" not in caplog.text


@pytest.mark.parametrize("end", END_MEANINGS)
@pytest.mark.parametrize("dates", DATE_FORMS)
def test_the_end_probe_names_what_the_api_does(
    sandbox_data: SandboxData, dates: DateForms, end: EndMeaning
) -> None:
    with sandbox_for(sandbox_data, dates, end) as api, adapting_client(api.url) as client:
        probe = client.probe_end()
        forms = {form: client.accepts_dates(form) for form in ("datetime", "date")}
    assert probe.inclusive is (end == "inclusive")
    assert probe.day is not None
    assert probe.day < TODAY - dt.timedelta(days=1)
    assert forms == {"datetime": dates != "date", "date": dates != "datetime"}


def test_a_pinned_date_format_the_api_refuses_is_a_clear_error_sent_once(
    sandbox_data: SandboxData,
) -> None:
    with (
        sandbox_for(sandbox_data, "date", "inclusive") as api,
        adapting_client(api.url, date_format="datetime") as client,
        pytest.raises(ApiRequestError) as caught,
    ):
        client.fetch_usage(OCTOBER)
    assert str(caught.value) == (
        "the Magnific API refused the request's dates (422): end_date must be a date"
        " (YYYY-MM-DD), got '2026-11-01T00:00:00.000Z'"
    )
    assert caught.value.hint is not None
    assert "[api] date_format" in caught.value.hint
    assert len(api.requests) == 1


def test_refused_dates_that_no_form_fixes_give_the_first_refusal(
    sandbox_data: SandboxData,
) -> None:
    """A period after its end names end_date in both forms: not a form problem."""
    backwards = UsageQuery.__new__(UsageQuery)
    for name, value in {
        "granularity": "day",
        "start_date": D(2026, 10, 31),
        "end_date": D(2026, 10, 1),
        "project_references": (),
        "api_key_ids": (),
        "group_ids": (),
    }.items():
        object.__setattr__(backwards, name, value)
    with (
        sandbox_for(sandbox_data, "both", "inclusive") as api,
        adapting_client(api.url, end_inclusive=True) as client,
        pytest.raises(ApiRequestError) as caught,
    ):
        client.fetch_usage(backwards)
    assert "start_date 2026-10-31 is after end_date 2026-10-01" in str(caught.value)
    assert [r.body["end_date"] for r in api.requests] == ["2026-10-01T00:00:00.000Z", "2026-10-01"]
    assert client.date_form == "datetime"


@pytest.mark.parametrize(("pinned", "sent_end"), [(True, "2026-10-14"), (False, "2026-10-15")])
def test_a_pinned_end_is_obeyed_without_probing(
    sandbox_data: SandboxData, pinned: bool, sent_end: str
) -> None:
    weeks = UsageQuery("week", D(2026, 9, 28), D(2026, 10, 14))
    with (
        sandbox_for(sandbox_data, "date", "exclusive") as api,
        adapting_client(api.url, end_inclusive=pinned, date_format="date") as client,
    ):
        client.fetch_usage(weeks)
    assert [r.body["end_date"] for r in api.requests] == [sent_end]


def test_an_inconclusive_probe_sends_ends_as_they_are_and_says_so_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A team with no usage in the last days: the probe cannot tell."""
    quiet = SandboxData(synthetic_team(users=48, seed=7), today=D(2023, 12, 20))
    weeks = UsageQuery("week", D(2023, 11, 27), D(2023, 12, 13))
    with (
        SandboxServer(quiet, api_key=API_KEY, end="exclusive") as api,
        MagnificClient(
            ApiSettings(SecretStr(API_KEY), api.url), retry=FAST, today=lambda: D(2023, 12, 20)
        ) as client,
    ):
        client.fetch_usage(weeks)
        client.fetch_usage(weeks)
    probes, sent = api.requests[:1], api.requests[1:]
    assert [r.body["end_date"][:10] for r in probes] == ["2023-12-19"]
    assert [r.body["end_date"][:10] for r in sent] == ["2023-12-13", "2023-12-13"]
    assert caplog.text.count("cannot tell whether the API's end_date is inclusive") == 1
