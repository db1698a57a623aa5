"""What each answer from a chat platform means for the post, against a real webhook
stand-in on loopback and ``reporter run`` in a process of its own.

An answer that does not say whether the post was taken (a gateway's 502 or 504, a 500)
is ``unconfirmed``: not retried in that run, posted again by the next. 429 and 503 say
it was not taken: retried in the run. And a server that quotes the request back,
URL-decoded or re-encoded its own way, never gets a webhook's secret into the output,
``reporter history`` or the ledger.
"""

from __future__ import annotations

import subprocess
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from reporter.sandbox import SandboxServer
from tests.conftest import API_KEY, SmtpServer, reporter, write_config
from tests.test_chat import (
    CHANNELS,
    FAST,
    PERIOD,
    REPORTS,
    Platforms,
    TakenThen,
    ledger_rows,
    serve_platforms,
)

SLACK = "slack:SLACK_WEBHOOK_REPORTS"
TEAMS = "teams:TEAMS_WEBHOOK_REPORTS"
UPLOAD = "slack-upload:C0123ABCD"
UNCONFIRMED_LINE = "the next run posts it again"


@pytest.fixture
def platforms() -> Iterator[Platforms]:
    with serve_platforms() as state:
        yield state


def run(
    tmp_path: Path,
    api: SandboxServer,
    smtp: SmtpServer,
    platforms: Platforms,
    *extra: str,
    defaults: str = CHANNELS,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """``reporter run`` for the design report, as a user runs it."""
    config = write_config(tmp_path / "reports.toml", FAST + REPORTS, defaults=defaults)
    environment = {
        "MAGNIFIC_API_KEY": API_KEY,
        "MAGNIFIC_API_BASE_URL": api.url,
        **smtp.env(),
        **platforms.env(),
        **(env or {}),
    }
    args = ["run", "--config", str(config), "--period", PERIOD, "-q", "--report", "design"]
    args += ["--out", str(tmp_path / "out"), "--state", str(tmp_path / "state.sqlite3")]
    return reporter(*args, *extra, env=environment)


# --- answers that may mean the post was taken ----------------------------------------------


@pytest.mark.parametrize("status", [500, 502, 504])
def test_an_answer_that_may_mean_taken_is_unconfirmed_not_retried_and_posted_by_the_next_run(
    tmp_path: Path, api: SandboxServer, smtp: SmtpServer, platforms: Platforms, status: int
) -> None:
    """A gateway's 502/504 (or the platform's 500) after the post was taken: posting it
    again in the same run would show it twice for nothing."""
    platforms.faults["slack"] = [TakenThen(status)]
    first = run(tmp_path, api, smtp, platforms)
    assert first.returncode == 1, first.stdout + first.stderr
    assert UNCONFIRMED_LINE in first.stdout
    assert "Traceback" not in first.stderr
    assert len(platforms.asked("/slack/")) == 1  # one request only in that run
    rows = ledger_rows(tmp_path)
    assert rows[("design", "report", SLACK)] == "unconfirmed"
    assert rows[("design", "report", TEAMS)] == "sent"
    assert len(smtp.recorder.messages) == 1

    again = run(tmp_path, api, smtp, platforms)
    assert again.returncode == 0, again.stdout + again.stderr
    assert len(platforms.asked("/slack/")) == 2  # posted again: the documented duplicate
    assert ledger_rows(tmp_path)[("design", "report", SLACK)] == "sent"
    assert len(platforms.asked("/teams/")) == 1
    assert len(smtp.recorder.messages) == 1


@pytest.mark.parametrize("status", [429, 503])
def test_an_answer_that_says_not_taken_is_retried_in_the_run_and_posted_once(
    tmp_path: Path, api: SandboxServer, smtp: SmtpServer, platforms: Platforms, status: int
) -> None:
    platforms.faults["slack"] = [status]  # 429 comes with Retry-After: 1
    result = run(tmp_path, api, smtp, platforms)
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(platforms.asked("/slack/")) == 2
    assert len(platforms.to("/slack/")) == 1
    assert ledger_rows(tmp_path)[("design", "report", SLACK)] == "sent"


@pytest.mark.parametrize(("busy", "gateway"), [(429, 504), (503, 502)])
def test_retrying_stops_at_the_first_answer_that_may_mean_taken(
    tmp_path: Path,
    api: SandboxServer,
    smtp: SmtpServer,
    platforms: Platforms,
    busy: int,
    gateway: int,
) -> None:
    platforms.faults["teams"] = [busy, TakenThen(gateway)]
    result = run(tmp_path, api, smtp, platforms)
    assert result.returncode == 1, result.stdout + result.stderr
    assert len(platforms.asked("/teams/")) == 2  # the busy answer retried, the gateway's not
    assert len(platforms.to("/teams/")) == 1
    assert ledger_rows(tmp_path)[("design", "report", TEAMS)] == "unconfirmed"


def test_a_gateway_error_on_completing_an_upload_is_unconfirmed_and_earlier_steps_retried(
    tmp_path: Path, api: SandboxServer, smtp: SmtpServer, platforms: Platforms
) -> None:
    """Only files.completeUploadExternal makes the file appear: a 502 before it is retried
    (nothing can show twice), a 504 to it is the webhook's case."""
    platforms.faults["api"] = [502, None, TakenThen(504)]
    defaults = f'{CHANNELS}\nslack_channel = "C0123ABCD"'
    bot = platforms.env(bot=True)
    first = run(tmp_path, api, smtp, platforms, defaults=defaults, env=bot)
    assert first.returncode == 1, first.stdout + first.stderr
    assert len(platforms.asked("/api/files.getUploadURLExternal")) == 2
    assert len(platforms.asked("/api/files.completeUploadExternal")) == 1
    assert ledger_rows(tmp_path)[("design", "report", UPLOAD)] == "unconfirmed"

    again = run(tmp_path, api, smtp, platforms, defaults=defaults, env=bot)
    assert again.returncode == 0, again.stdout + again.stderr
    assert len(platforms.asked("/api/files.completeUploadExternal")) == 2
    assert ledger_rows(tmp_path)[("design", "report", UPLOAD)] == "sent"
    assert len(platforms.asked("/slack/")) == 1


# --- a server that quotes the request back ---------------------------------------------------

# A Teams Workflows URL: the signature is the credential. It holds a "+" (a space to a
# form decoder), and escapes a decoder turns into "+", "/" and "=".
SIG = "kR4+xQ%2Bs3cr3tSig%2F9w%3D%3D"
MARK = "s3cr3tSig"  # in every form of the signature
SIG_FORMS = (
    SIG,
    urllib.parse.unquote(SIG),
    urllib.parse.unquote_plus(SIG),
    urllib.parse.quote(urllib.parse.unquote_plus(SIG)),
    MARK,
)
TEAMS_PATH = (
    "/teams/workflows/4f1d2c/triggers/manual/paths/invoke"
    f"?api-version=2016-06-01&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig={SIG}"
)
ECHOES: dict[str, Callable[[str], str]] = {
    "url-decoded": urllib.parse.unquote,
    "form-decoded": urllib.parse.unquote_plus,
    "decoded-and-re-encoded": lambda path: urllib.parse.quote(
        urllib.parse.unquote_plus(path), safe="/?&="
    ),
    "partly-decoded": lambda path: path.replace("%2F", "/").replace("%2B", "%2b"),
}


@pytest.mark.parametrize("echo", list(ECHOES))
def test_a_webhook_secret_quoted_back_in_any_form_reaches_no_output_history_or_ledger(
    tmp_path: Path, api: SandboxServer, smtp: SmtpServer, platforms: Platforms, echo: str
) -> None:
    said = f"Bad Request: POST {ECHOES[echo](TEAMS_PATH)} HTTP/1.1"
    assert MARK in said
    platforms.faults["teams"] = [(400, said.replace("{", "{{").replace("}", "}}"), {})]
    env = {"TEAMS_WEBHOOK_REPORTS": platforms.url + TEAMS_PATH}
    result = run(tmp_path, api, smtp, platforms, env=env)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "the Teams webhook in TEAMS_WEBHOOK_REPORTS refused the message (HTTP 400" in (
        result.stdout
    )
    assert ledger_rows(tmp_path)[("design", "report", TEAMS)] == "failed"
    history = reporter("history", "--state", str(tmp_path / "state.sqlite3"), env=env)
    blobs = {"stdout": result.stdout, "stderr": result.stderr, "history": history.stdout}
    blobs |= {
        str(p): p.read_bytes().decode(errors="replace") for p in tmp_path.rglob("*") if p.is_file()
    }
    for form in SIG_FORMS:
        assert [name for name, text in blobs.items() if form in text] == [], form
    assert "HTTP 400: Bad Request: POST [redacted] HTTP/1.1" in history.stdout  # the note
