"""The HTTP client: retries with backoff, a deadline and a size cap, date-form adaptation."""

from __future__ import annotations

import contextlib
import datetime as dt
import email.utils
import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx
import tenacity

from reporter import __version__
from reporter.environment import ApiSettings
from reporter.errors import (
    ApiAuthError,
    ApiError,
    ApiRequestError,
    ApiResponseError,
    ApiUnavailableError,
    one_line,
)
from reporter.magnific.probe import PROBE_DAYS, EndProbe, decide_end, probe_day, usage_days
from reporter.magnific.query import (
    ENDPOINT,
    KEY_HEADER,
    MB,
    DateForm,
    UsageQuery,
    end_pad_is_exact,
    names_date_field,
)
from reporter.magnific.response import (
    STREAM_ABOVE,
    Body,
    SpooledBody,
    UsageResponse,
    parse_usage_response,
)

log = logging.getLogger(__name__)

_RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})

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


class Retryable(Exception):
    """An attempt (to the API, or to a chat platform) that failed in a way worth trying
    again; ``retry_after`` is what the server's Retry-After asked for."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


@dataclass
class WaitRetryAfter(tenacity.wait.wait_base):
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
        if isinstance(exc, Retryable) and exc.retry_after is not None:
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
        body = self._fetch(query, pad_end=self._pads_end(query))
        if isinstance(body, SpooledBody):
            try:
                return body.read_all()
            finally:
                body.close()
        return bytes(body)

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

    def _fetch(self, query: UsageQuery, *, pad_end: bool) -> Body:
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
    ) -> Body:
        """The body of a successful request sent in ``form``.

        ``deadline`` covers the whole request: retries stop before a wait would cross
        it, and each attempt's timeouts and body reading are held to what is left, so a
        server trickling a byte a second cannot stretch a run indefinitely.
        """
        started = time.monotonic()
        left = max(0.0, deadline - started)
        body = query.body(dates=form, pad_end=pad_end)
        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(Retryable),
            wait=WaitRetryAfter(self._retry),
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
        except Retryable as exc:
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

    def _attempt(self, query: UsageQuery, sent: dict[str, Any], deadline: float) -> Body:
        if not self._slots.acquire(timeout=max(0.0, deadline - time.monotonic())):
            raise self._past_deadline("still waiting for a free connection")
        try:
            status, body, headers = self._exchange(query, sent, deadline)
        finally:
            self._slots.release()
        if status == 200:
            return body
        if isinstance(body, SpooledBody):  # not from an error answer's short read
            spooled, body = body, body.read_all()
            spooled.close()
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
            raise Retryable(
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
    ) -> tuple[int, Body, httpx.Headers]:
        """One POST, its body streamed in: status, body (an error's only in part), headers."""
        started = time.monotonic()
        left = deadline - started
        if left <= 0:
            raise self._past_deadline("no time was left for another attempt")
        # Each socket wait is held to what is left of the deadline as the request starts;
        # once the answer has begun, a cut-off holds every later read to the deadline
        # itself, and reading the body checks the clock again as every piece arrives.
        timeout = httpx.Timeout(
            min(self._retry.read_timeout, left), connect=min(self._retry.connect_timeout, left)
        )
        headers = {KEY_HEADER: self._settings.key.get_secret_value()}
        cutoff: _Cutoff | None = None
        try:
            with (
                self._http.stream(
                    "POST", ENDPOINT, json=sent, headers=headers, timeout=timeout
                ) as response,
                _Cutoff(response, deadline) as cutoff,
            ):
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
            raise Retryable(f"timed out ({type(exc).__name__})") from None
        except httpx.TransportError as exc:
            if cutoff is not None and cutoff.fired:
                raise self._past_deadline("the answer was still arriving") from None
            raise Retryable(f"cannot reach {self._url()}: {_reason(exc)}") from None

    def _read_body(self, response: httpx.Response, deadline: float) -> Body:
        """The whole body, refused as soon as it is known to pass the size cap or the
        deadline: a declared Content-Length before reading, then piece by piece."""
        cap = self._retry.max_response_bytes
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > cap:
            raise self._too_large(f"it announced {int(declared):,} bytes")
        # A small answer is filled in place, at its announced size, and handed on as it is
        # (a list of pieces joined at the end held it twice); a big one goes to disk.
        announced = int(declared) if declared.isdigit() else 0
        body: bytearray | SpooledBody = (
            bytearray(announced) if announced <= STREAM_ABOVE else SpooledBody()
        )
        size = 0
        for chunk in response.iter_bytes():
            if size + len(chunk) > cap:
                raise self._too_large(f"more than {cap:,} bytes arrived")
            if time.monotonic() > deadline:
                raise self._past_deadline(
                    f"the body was still arriving ({size + len(chunk):,} bytes so far)"
                )
            if isinstance(body, bytearray) and size + len(chunk) > STREAM_ABOVE:
                spooled = SpooledBody()
                spooled.write(body[:size])
                body = spooled
            if isinstance(body, SpooledBody):
                body.write(chunk)
            else:
                body[size : size + len(chunk)] = chunk  # grows it past an announced size
            size += len(chunk)
        if isinstance(body, bytearray):
            del body[size:]  # shorter than announced (a compressed answer is decoded here)
        return body

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
            exc.reason if isinstance(exc, Retryable) else exc,
            wait,
        )


class _Cutoff:
    """Ends a response's reads at ``deadline``.

    httpx gives every read of a body the whole read timeout, fixed when the request
    starts, so a server that goes silent just before the deadline would hold a read up to
    a read timeout past it. At the deadline the response's socket is shut down, which
    wakes a blocked read with the end of the stream (a transport error its caller reports
    as past the deadline); a response finished before then is left alone.
    """

    def __init__(self, response: httpx.Response, deadline: float) -> None:
        stream = response.extensions.get("network_stream")  # httpcore's, for a real socket
        sock = stream.get_extra_info("socket") if stream is not None else None
        self._socket: socket.socket | None = sock if isinstance(sock, socket.socket) else None
        self._lock = threading.Lock()
        self._over = False
        self.fired = False
        self._timer = threading.Timer(max(0.0, deadline - time.monotonic()), self._fire)
        self._timer.daemon = True

    def __enter__(self) -> _Cutoff:
        if self._socket is not None:
            self._timer.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        with self._lock:  # after this, the socket may go back to the pool: never touch it
            self._over = True
        self._timer.cancel()

    def _fire(self) -> None:
        with self._lock:
            if self._over or self._socket is None:
                return
            self.fired = True
            with contextlib.suppress(OSError):  # already closed: nothing left to wake
                self._socket.shutdown(socket.SHUT_RDWR)


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


def _api_message(body: bytes | bytearray) -> str:
    """The API's own error message, if the body carries one; never the request.

    On one line: it ends up in an ``Error:`` line and in the summary's table."""
    try:
        payload = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return one_line(body.decode("utf-8", "replace"))[:200]
    if isinstance(payload, dict):
        for key in ("message", "detail", "error", "title"):
            value = payload.get(key)
            if isinstance(value, str) and value:
                return one_line(value)[:200]
            if isinstance(value, dict | list) and value:
                return json.dumps(value)[:200]
    return ""
