"""Trying to break chat delivery on loopback: webhooks that drop the connection, stall,
answer in ways no platform should, redirect or are gone; two runs at once; a run killed
mid-post. Each channel must end up posted once (or, where a post may have landed, once
more, as documented), with one clear line, and no webhook URL anywhere."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from reporter.cli import cli
from reporter.sandbox import SandboxServer
from tests.conftest import API_KEY, SmtpServer, write_config
from tests.test_chat import (
    CHANNELS,
    PERIOD,
    REPORTS,
    SLACK_SECRET,
    TEAMS_SECRET,
    Platforms,
    ledger_rows,
    run,
    serve_platforms,
)

SLACK = "slack:SLACK_WEBHOOK_REPORTS"
TEAMS = "teams:TEAMS_WEBHOOK_REPORTS"


@pytest.fixture
def platforms() -> Iterator[Platforms]:
    with serve_platforms() as state:
        yield state


# --- a webhook URL in the platform's answer ----------------------------------------------


def test_a_webhook_url_echoed_by_the_platform_never_reaches_output_ledger_or_files(
    tmp_path: Path, api: SandboxServer, smtp: SmtpServer, platforms: Platforms
) -> None:
    """Proxies and gateways quote the request line back; the URL is the credential."""
    platforms.faults["slack"] = [(404, "no_service: POST {url}", {})]
    platforms.faults["teams"] = [(400, "Bad Request: no trigger at {path}", {})]
    result = run(tmp_path, api, smtp, platforms, "--report", "design")
    assert result.exit_code == 1
    assert "the Slack webhook in SLACK_WEBHOOK_REPORTS refused the message (HTTP 404" in (
        result.stdout
    )
    assert "the Teams webhook in TEAMS_WEBHOOK_REPORTS refused the message (HTTP 400" in (
        result.stdout
    )
    history = CliRunner().invoke(cli, ["history", "--state", str(tmp_path / "state.sqlite3")])
    assert "HTTP 400" in history.output  # the stored note was read back
    blobs = {"stdout": result.stdout, "stderr": result.stderr, "history": history.output}
    blobs |= {
        str(p): p.read_bytes().decode(errors="replace") for p in tmp_path.rglob("*") if p.is_file()
    }
    for secret in (SLACK_SECRET, TEAMS_SECRET, "slackHookSecret", "teamsHookSecret"):
        assert [name for name, text in blobs.items() if secret in text] == [], secret


# --- answers no platform should give ---------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "line"),
    [
        (
            (200, "<html><body>Sign in to continue</body></html>", {"content-type": "text/html"}),
            "the Slack webhook in SLACK_WEBHOOK_REPORTS answered HTTP 200 but not as Slack"
            " does ('<html><body>Sign in to continue</body></html>'); it was not posted",
        ),
        (
            (200, "invalid_payload", {}),
            "the Slack webhook in SLACK_WEBHOOK_REPORTS answered HTTP 200 but not as Slack"
            " does ('invalid_payload'); it was not posted",
        ),
        (
            (400, "invalid_payload", {}),
            "the Slack webhook in SLACK_WEBHOOK_REPORTS refused the message"
            " (HTTP 400: invalid_payload)",
        ),
        (
            (400, "no_text", {}),
            "the Slack webhook in SLACK_WEBHOOK_REPORTS refused the message (HTTP 400: no_text)",
        ),
        (
            (302, "", {"location": "https://elsewhere.example/login"}),
            "the Slack webhook in SLACK_WEBHOOK_REPORTS answered with a redirect (HTTP 302);"
            " a webhook's message is not sent on to another address",
        ),
        (
            (410, "gone", {}),
            "the Slack webhook in SLACK_WEBHOOK_REPORTS refused the message (HTTP 410: gone)",
        ),
    ],
)
def test_an_answer_no_platform_gives_fails_only_that_channel_with_one_line(
    tmp_path: Path,
    api: SandboxServer,
    smtp: SmtpServer,
    platforms: Platforms,
    fault: tuple[int, str, dict[str, str]],
    line: str,
) -> None:
    platforms.faults["slack"] = [fault]
    result = run(tmp_path, api, smtp, platforms, "--report", "design")
    assert result.exit_code == 1
    assert line in result.stdout
    assert "Traceback" not in result.output
    rows = ledger_rows(tmp_path)
    assert rows[("design", "report", SLACK)] == "failed"
    assert rows[("design", "report", TEAMS)] == "sent"
    assert len(smtp.recorder.messages) == 1
    assert platforms.to("/slack/") == []  # none of those answers took the message

    again = run(tmp_path, api, smtp, platforms, "--report", "design")
    assert again.exit_code == 0, again.output
    assert len(platforms.to("/slack/")) == 1
    assert len(platforms.to("/teams/")) == 1
    assert len(smtp.recorder.messages) == 1


def test_hints_tell_a_revoked_webhook_from_a_payload_the_platform_cannot_read(
    tmp_path: Path, api: SandboxServer, smtp: SmtpServer, platforms: Platforms
) -> None:
    platforms.faults["slack"] = [(400, "invalid_payload", {})]
    platforms.faults["teams"] = [(410, "gone", {})]
    result = run(tmp_path, api, smtp, platforms, "--report", "design")
    assert result.exit_code == 1
    slack, teams = _status(tmp_path, "design", SLACK)[1], _status(tmp_path, "design", TEAMS)[1]
    assert "revoked" not in slack
    assert "could not read the message" in slack
    assert "could not read the message" not in teams
    assert "revoked or deleted: create a new one and set TEAMS_WEBHOOK_REPORTS" in teams
    assert slack in result.stdout  # the hint is in the run's summary too
    assert teams in result.stdout


# --- no answer -----------------------------------------------------------------------------


def test_a_connection_dropped_before_the_body_was_read_is_posted_by_the_next_run(
    tmp_path: Path, api: SandboxServer, smtp: SmtpServer, platforms: Platforms
) -> None:
    platforms.faults["slack"] = ["drop-early"]
    result = run(tmp_path, api, smtp, platforms, "--report", "design")
    assert result.exit_code == 1
    assert ledger_rows(tmp_path)[("design", "report", SLACK)] == "unconfirmed"
    again = run(tmp_path, api, smtp, platforms, "--report", "design")
    assert again.exit_code == 0, again.output
    assert len(platforms.to("/slack/")) == 1
    assert ledger_rows(tmp_path)[("design", "report", SLACK)] == "sent"


def test_an_answer_slower_than_the_timeout_is_unconfirmed_not_retried(
    tmp_path: Path, api: SandboxServer, smtp: SmtpServer, platforms: Platforms
) -> None:
    platforms.faults["teams"] = [3.0]  # the read timeout below is 1 s
    reports = "read_timeout_seconds = 1\n" + REPORTS  # in run()'s [api] table
    result = run(tmp_path, api, smtp, platforms, "--report", "design", reports=reports)
    assert result.exit_code == 1
    assert "TEAMS_WEBHOOK_REPORTS" in result.stdout
    assert len(platforms.to("/teams/")) == 1  # taken, never answered: not posted twice now
    assert ledger_rows(tmp_path)[("design", "report", TEAMS)] == "unconfirmed"
    again = run(tmp_path, api, smtp, platforms, "--report", "design", reports=reports)
    assert again.exit_code == 0, again.output
    assert len(platforms.to("/teams/")) == 2  # the documented duplicate: better than none
    assert len(platforms.to("/slack/")) == 1


# --- real processes ------------------------------------------------------------------------


def _environ(api: SandboxServer, smtp: SmtpServer, platforms: Platforms) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}
    return {
        **base,
        "MAGNIFIC_API_KEY": API_KEY,
        "MAGNIFIC_API_BASE_URL": api.url,
        **smtp.env(),
        **platforms.env(),
    }


def _args(tmp_path: Path, *extra: str) -> list[str]:
    config = write_config(
        tmp_path / "reports.toml",
        "[api]\ninitial_wait_seconds = 0.01\nmax_wait_seconds = 0.05\n" + REPORTS,
        defaults=CHANNELS,
    )
    return [
        str(Path(sys.executable).parent / "reporter"),
        "run",
        "--config",
        str(config),
        "--period",
        PERIOD,
        "-q",
        "--out",
        str(tmp_path / "out"),
        "--state",
        str(tmp_path / "state.sqlite3"),
        *extra,
    ]


def test_two_runs_at_once_post_each_report_once_to_each_channel(
    tmp_path: Path, api: SandboxServer, smtp: SmtpServer, platforms: Platforms
) -> None:
    env = _environ(api, smtp, platforms)
    runs = [
        subprocess.Popen(
            _args(tmp_path), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    outputs = [process.communicate(timeout=180) for process in runs]
    for process, (out, err) in zip(runs, outputs, strict=True):
        assert process.returncode == 0, out + err
        assert "Traceback" not in err
    for prefix in ("/slack/", "/teams/"):
        titles = sorted(p.json().get("text", "")[:12] for p in platforms.to(prefix))
        assert len(titles) == 2, prefix  # one per report, whichever run posted it
    slack_headers = sorted(p.json()["blocks"][0]["text"]["text"] for p in platforms.to("/slack/"))
    assert slack_headers == [
        "Marketing Campaign — credit usage, October 2026",
        "design — credit usage, October 2026",
    ]
    assert len(smtp.recorder.messages) == 2
    assert set(ledger_rows(tmp_path).values()) == {"sent"}


def _status(tmp_path: Path, report: str, recipient: str) -> Any:
    with sqlite3.connect(tmp_path / "state.sqlite3") as db:
        row = db.execute(
            "SELECT status, error FROM deliveries WHERE report=? AND recipient=?",
            (report, recipient),
        ).fetchone()
    return row


def test_a_run_killed_mid_post_is_settled_and_posted_again_by_the_next_run(
    tmp_path: Path, api: SandboxServer, smtp: SmtpServer, platforms: Platforms
) -> None:
    platforms.faults["teams"] = ["hang"]
    env = _environ(api, smtp, platforms)
    process = subprocess.Popen(
        _args(tmp_path, "--report", "design"),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert platforms.hanging.wait(120), "the run never posted to Teams"
        # The request is out and its answer held: the ledger says so before the kill.
        deadline = time.monotonic() + 30
        while _status(tmp_path, "design", TEAMS)[0] != "committing":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    platforms.release.set()

    history = CliRunner().invoke(cli, ["history", "--state", str(tmp_path / "state.sqlite3")])
    assert TEAMS in history.output

    again = subprocess.run(
        _args(tmp_path, "--report", "design", "-v"),
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert again.returncode == 0, again.stdout + again.stderr
    assert "settled what an interrupted run left: {'failed': 0, 'unconfirmed': 1}" in (again.stderr)
    assert len(platforms.to("/teams/")) == 2  # may have shown; posted again, as documented
    assert len(platforms.to("/slack/")) == 1
    assert len(smtp.recorder.messages) == 1
    assert _status(tmp_path, "design", TEAMS)[0] == "sent"
