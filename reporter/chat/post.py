"""Posting to chat: the webhooks and Slack's three-step file upload, with retries. The edge.

Retries reuse the API client's policy ([api] in the config) through tenacity, for
answers that say the message was not taken: a 429 waits what ``Retry-After`` says, a
503 and failures to connect back off with jitter. Any other 4xx (a revoked or mistyped
webhook) fails that channel at once. A redirect is not followed, and a 2xx that is not
the platform's own answer (a proxy's sign-in page) fails too: recording it as posted
would lose the message.

Exactly once, as far as HTTP allows: a request whose body was sent but whose answer
does not say whether it was taken may have been posted. That is no answer at all (the
connection dropped, or the answer timed out), or any 5xx but 503: a gateway's 502 or
504 (the platform behind it may have posted and its answer got lost) and a 500 (the
platform failed, nobody knows how far it got). It is not retried in this run; it is
recorded ``unconfirmed`` and posted again by the next run. Chat has no Message-ID for
the platform to drop a copy by, so in that one case a channel may show the message
twice; a lost report is worse. The rule holds for the request that makes a post
visible (the webhook's POST, Slack's files.completeUploadExternal); the steps of an
upload before it are retried, as a copy of them shows nowhere.
"""

from __future__ import annotations

import logging
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import httpx
import tenacity

from reporter import __version__
from reporter.errors import DeliveryError, UsageError, one_line
from reporter.magnific import RetryPolicy, parse_retry_after
from reporter.magnific.client import Retryable, WaitRetryAfter
from reporter.redact import Redactor, url_secrets

log = logging.getLogger(__name__)

SLACK_API_URL = "https://slack.com/api"
# Answers that say the request was not taken: retried in the run. Any other 5xx leaves
# it open whether the platform took it (see the module docstring).
_NOT_TAKEN = frozenset({429, 503})
_ERROR_TEXT_LIMIT = 200
PLATFORMS = {"slack": "Slack webhook", "teams": "Teams webhook", "slack-upload": "Slack upload"}

Posted = Literal["sent", "unconfirmed"]


class ChatPostError(DeliveryError):
    """A chat platform did not take the message; it fails that channel only."""

    def __init__(self, message: str, *, recipient: str, hint: str | None = None) -> None:
        super().__init__(message, transient=False, hint=hint)
        self.recipient = recipient


class _Unanswered(Exception):
    """The request went out and no answer said whether it was taken: it may have been
    posted."""


@dataclass(frozen=True, slots=True)
class ChatSettings:
    """What posting needs from the environment: each channel's webhook URL (secret),
    the Slack bot token (secret) and the Slack Web API's address."""

    webhooks: Mapping[str, str] = field(repr=False)  # recipient -> URL
    bot_token: str | None = field(default=None, repr=False)
    slack_api_url: str = SLACK_API_URL


LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


def plain_http(url: str) -> bool:
    """A webhook URL that would carry its secret unencrypted: ``http://`` to anything but
    this machine (a loopback stand-in or relay is fine). ``run`` and ``check`` both warn."""
    if not url.startswith("http://"):
        return False
    try:
        host = urllib.parse.urlsplit(url).hostname or ""
    except ValueError:
        return True
    return host not in LOOPBACK_HOSTS and not host.startswith("127.")


def chat_settings(channels: Mapping[str, list[str]], environ: Mapping[str, str]) -> ChatSettings:
    """Read each report's channels' variables, before any request: one unset is a config
    error naming the report and the variable. ``channels``: report -> recipients."""
    webhooks: dict[str, str] = {}
    token = environ.get("SLACK_BOT_TOKEN", "").strip() or None
    for report, recipients in channels.items():
        for recipient in recipients:
            kind, _, name = recipient.partition(":")
            if kind == "slack-upload":
                if token is None:
                    raise UsageError(
                        f"report {report!r}: slack_channel = {name!r} needs SLACK_BOT_TOKEN,"
                        " which is not set",
                        hint="set SLACK_BOT_TOKEN to a bot token with files:write, or remove"
                        " slack_channel",
                    )
                continue
            setting = f"{kind}_webhook_env"
            url = environ.get(name, "").strip()
            if not url:
                raise UsageError(
                    f"report {report!r}: {setting} = {name!r}, but the environment variable"
                    f" {name} is not set",
                    hint=f"set {name} to the channel's webhook URL, or remove {setting}",
                )
            if not url.startswith(("https://", "http://")):
                raise UsageError(
                    f"report {report!r}: the environment variable {name} ({setting}) does"
                    " not hold an http(s) URL",
                    hint=f"set {name} to the webhook URL the platform gave you",
                )
            if plain_http(url) and recipient not in webhooks:
                log.warning(
                    "the environment variable %s (%s) holds a plain http:// URL: the webhook"
                    " and what is posted travel unencrypted; use the https URL the platform"
                    " gave you",
                    name,
                    setting,
                )
            webhooks[recipient] = url
    base = environ.get("SLACK_API_URL", "").strip().rstrip("/") or SLACK_API_URL
    return ChatSettings(webhooks, token, base)


class ChatSender:
    """Posts payloads to the configured channels; safe to reuse for a whole run."""

    def __init__(
        self,
        settings: ChatSettings,
        *,
        retry: RetryPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._settings = settings
        self._retry = retry or RetryPolicy()
        self._sleep = sleep
        self._http = httpx.Client(
            transport=transport,
            timeout=httpx.Timeout(self._retry.read_timeout, connect=self._retry.connect_timeout),
            headers={"user-agent": f"reporter/{__version__}"},
            follow_redirects=False,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ChatSender:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- webhooks --------------------------------------------------------------

    def post(
        self,
        recipient: str,
        payload: dict[str, Any],
        *,
        pdf: Path | None = None,
        on_commit: Callable[[], None] = lambda: None,
    ) -> Posted:
        """Deliver ``payload`` to ``recipient``; ``on_commit`` runs just before the request
        that may make it visible. Raises ``ChatPostError`` when the channel refused it."""
        if recipient.startswith("slack-upload:"):
            assert pdf is not None, "an upload needs its PDF"
            return self._upload(recipient, pdf, str(payload.get("text", "")), on_commit)
        url = self._settings.webhooks[recipient]
        on_commit()
        try:
            response = self._with_retries(
                recipient, lambda: self._attempt(recipient, "POST", url, commit=True, json=payload)
            )
        except _Unanswered:
            return "unconfirmed"
        _check_taken(recipient, response, url)
        return "sent"

    def _attempt(
        self, recipient: str, method: str, url: str, *, commit: bool, **kwargs: Any
    ) -> httpx.Response:
        """One request. ``commit``: this request is the one that makes the post visible, so
        an answer that may mean it was taken is ``_Unanswered``, never retried."""
        try:
            response = self._http.request(method, url, **kwargs)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise Retryable(f"cannot connect ({type(exc).__name__})") from None
        except (httpx.WriteError, httpx.WriteTimeout) as exc:
            # The body did not get out whole: the platform cannot have posted it.
            raise Retryable(f"the connection failed while sending ({type(exc).__name__})") from None
        except (httpx.ReadError, httpx.ReadTimeout, httpx.RemoteProtocolError) as exc:
            log.warning(
                "%s: no answer after the message was sent (%s)", recipient, type(exc).__name__
            )
            raise _Unanswered() from None
        except httpx.TransportError as exc:
            raise Retryable(type(exc).__name__) from None
        status = response.status_code
        if 200 <= status < 300:
            return response
        if status in _NOT_TAKEN or (500 <= status < 600 and not commit):
            raise Retryable(
                f"HTTP {status}", retry_after=parse_retry_after(response.headers.get("retry-after"))
            )
        if 500 <= status < 600:
            log.warning(
                "%s: HTTP %d after the message was sent: it may have been posted", recipient, status
            )
            raise _Unanswered()
        if 300 <= status < 400:
            # Following it would hand the message (and, for the Web API, the token) to
            # an address nobody configured.
            raise ChatPostError(
                f"{_describe(recipient)} answered with a redirect (HTTP {status}); a webhook's"
                " message is not sent on to another address",
                recipient=recipient,
                hint=_new_url_hint(recipient),
            )
        raise _refused(recipient, status, _scrub(response.text, url))

    def _with_retries(
        self, recipient: str, attempt: Callable[[], httpx.Response]
    ) -> httpx.Response:
        started = time.monotonic()
        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(Retryable),
            wait=WaitRetryAfter(self._retry),
            stop=tenacity.stop_after_attempt(self._retry.attempts)
            | tenacity.stop_before_delay(self._retry.total_timeout),
            sleep=self._sleep,
            before_sleep=lambda state: log.info(
                "%s: attempt %d failed (%s); retrying",
                recipient,
                state.attempt_number,
                getattr(state.outcome.exception() if state.outcome else None, "reason", "?"),
            ),
            reraise=True,
        )
        attempts = 0
        try:
            for step in retrying:
                with step:
                    attempts += 1
                    return attempt()
        except Retryable as exc:
            raise ChatPostError(
                f"{_describe(recipient)} did not take the message: {exc.reason} (gave up after"
                f" {attempts} attempt{'s' if attempts != 1 else ''}"
                f" in {time.monotonic() - started:.1f}s)",
                recipient=recipient,
                hint="the platform may be down or rate-limiting; run again later (channels"
                " that have the message are not posted to twice)",
            ) from None
        raise AssertionError("unreachable")  # pragma: no cover

    # --- Slack's file upload ------------------------------------------------------

    def _upload(
        self, recipient: str, pdf: Path, comment: str, on_commit: Callable[[], None]
    ) -> Posted:
        """files.getUploadURLExternal, POST the bytes, files.completeUploadExternal: the
        file appears in the channel only at the last step, the commit point."""
        channel = recipient.partition(":")[2]
        content = pdf.read_bytes()
        try:
            ticket = self._slack_api(
                recipient,
                "files.getUploadURLExternal",
                commit=False,
                data={"filename": pdf.name, "length": str(len(content))},
            )
            upload_url, file_id = str(ticket["upload_url"]), str(ticket["file_id"])
            self._with_retries(
                recipient,
                lambda: self._attempt(
                    recipient,
                    "POST",
                    upload_url,
                    commit=False,
                    content=content,
                    headers={"content-type": "application/octet-stream"},
                ),
            )
        except _Unanswered:
            # Nothing is in the channel before the last step: a clean failure, run again.
            raise ChatPostError(
                f"{_describe(recipient)}: no answer while uploading the PDF",
                recipient=recipient,
                hint="run again; nothing was posted",
            ) from None
        on_commit()
        try:
            self._slack_api(
                recipient,
                "files.completeUploadExternal",
                commit=True,
                json={
                    "files": [{"id": file_id, "title": pdf.name}],
                    "channel_id": channel,
                    "initial_comment": comment,
                },
            )
        except _Unanswered:
            return "unconfirmed"
        return "sent"

    def _slack_api(
        self, recipient: str, method: str, *, commit: bool, **kwargs: Any
    ) -> dict[str, Any]:
        """One Web API call; Slack answers errors as 200 with ``"ok": false``."""
        url = f"{self._settings.slack_api_url}/{method}"
        headers = {"authorization": f"Bearer {self._settings.bot_token or ''}"}
        response = self._with_retries(
            recipient,
            lambda: self._attempt(recipient, "POST", url, commit=commit, headers=headers, **kwargs),
        )
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict) or body.get("ok") is not True:
            error = body.get("error") if isinstance(body, dict) else None
            raise ChatPostError(
                f"{_describe(recipient)}: Slack refused {method}: {error or 'not a JSON answer'}",
                recipient=recipient,
                hint="check SLACK_BOT_TOKEN (scope files:write), that the bot is in the"
                " channel, and slack_channel",
            )
        return body


def _describe(recipient: str) -> str:
    """``the Slack webhook in SLACK_WEBHOOK_MARKETING``: names the variable, never the URL."""
    kind, _, name = recipient.partition(":")
    if kind == "slack-upload":
        return f"the Slack upload to channel {name}"
    return f"the {PLATFORMS.get(kind, kind)} in {name}"


def _scrub(text: str, url: str) -> str:
    """A server's text without the URL it was sent to: a webhook's URL is its credential,
    and gateways quote the request (or just its path) back in their error pages, often
    URL-decoded or re-encoded (``Redactor`` matches every form)."""
    return Redactor.of(url_secrets(url, webhook=True))(text)


def _new_url_hint(recipient: str) -> str:
    kind, _, name = recipient.partition(":")
    if kind == "slack-upload":
        return "check SLACK_API_URL (or leave it unset), SLACK_BOT_TOKEN and slack_channel"
    return f"set {name} to the exact webhook URL the platform gave you"


def _check_taken(recipient: str, response: httpx.Response, url: str) -> None:
    """A 2xx is not enough: a proxy's or portal's sign-in page answers 200 too. Slack's
    webhooks answer ``ok``; a Teams Workflows webhook answers 202 (or 200) with no page."""
    kind = recipient.partition(":")[0]
    text = response.text.strip()
    content_type = response.headers.get("content-type", "")
    if kind == "slack" and text == "ok":
        return
    if kind == "teams" and "html" not in content_type and not text.startswith("<"):
        return
    platform = "Slack" if kind == "slack" else "Teams"
    said = one_line(_scrub(text, url))[:_ERROR_TEXT_LIMIT]
    raise ChatPostError(
        f"{_describe(recipient)} answered HTTP {response.status_code} but not as {platform}"
        f" does ({said!r}); it was not posted",
        recipient=recipient,
        hint=f"a proxy or sign-in page may stand in the way, or {_new_url_hint(recipient)}",
    )


def _refused(recipient: str, status: int, text: str) -> ChatPostError:
    said = one_line(text)[:_ERROR_TEXT_LIMIT]
    kind, _, name = recipient.partition(":")
    if status in (403, 404, 410):
        hint = f"the webhook may have been revoked or deleted: create a new one and set {name}"
    elif status in (400, 413, 422):
        hint = (
            "the platform could not read the message (its payload is the .json file beside"
            " the report's .eml): please report it"
        )
    else:
        hint = "check the channel's settings"
    if kind == "slack-upload":
        hint = "check SLACK_BOT_TOKEN and slack_channel"
    return ChatPostError(
        f"{_describe(recipient)} refused the message (HTTP {status}{': ' + said if said else ''})",
        recipient=recipient,
        hint=hint,
    )
