"""What each answer from a chat platform means for the post, against a real webhook
stand-in on loopback and ``reporter run`` in a process of its own.

An answer that does not say whether the post was taken (a gateway's 502 or 504, a 500)
is ``unconfirmed``: not retried in that run, posted again by the next. 429 and 503 say
it was not taken: retried in the run.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
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
