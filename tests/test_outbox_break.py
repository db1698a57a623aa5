"""Trying to break the outbox (issue 24) from outside: damaged files, an outbox that
cannot be made, addresses that differ in case, runs racing and killed mid-send.

Every scenario runs the CLI (in-process through Click, or as real processes where
signals and concurrency matter) against the stand-in API and a real SMTP server on
loopback, and checks what the inboxes and the ledger hold at the end.
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest

from reporter.ledger import Ledger
from reporter.sandbox import SandboxData, SandboxServer, synthetic_team
from tests.conftest import API_KEY, SmtpServer, write_config
from tests.test_exactly_once import REPORTER, assert_one_error_line, env_for
from tests.test_outbox import FAST, OCTOBER, PERIOD, down, inbox, report, reporter, text_of

PER_OWNER = "one_mail_per_owner = true\n"


@pytest.fixture
def data() -> SandboxData:
    data = SandboxData(synthetic_team(users=48, seed=7), today=dt.date(2026, 11, 10))
    data.script(20, dict.fromkeys(OCTOBER, 1000))  # 31,000 credits in October
    data.script(30, dict.fromkeys(OCTOBER, 200))  # 6,200
    return data


@pytest.fixture
def api(data: SandboxData) -> Iterator[SandboxServer]:
    with SandboxServer(data, api_key=API_KEY) as server:
        yield server


def pdf_of(message: EmailMessage) -> bytes:
    (pdf,) = [p for p in message.iter_attachments() if p.get_content_type() == "application/pdf"]
    content = pdf.get_content()
    assert isinstance(content, bytes)
    return content


def cli(tmp_path: Path, config: Path, *extra: str) -> list[str]:
    files = ["--out", str(tmp_path / "out"), "--state", str(tmp_path / "state.sqlite3")]
    return [REPORTER, "run", "--config", str(config), "--period", PERIOD, "-q", *files, *extra]


def arrivals(smtp: SmtpServer) -> dict[str, list[EmailMessage]]:
    """recipient (lower case) -> what reached their mailbox, in order of arrival."""
    out: dict[str, list[EmailMessage]] = {}
    for received in smtp.recorder.messages:
        for rcpt in received.recipients:
            out.setdefault(rcpt.lower(), []).append(received.message)
    return out


def version_of(message: EmailMessage, name: str) -> int:
    shown = dict(p.split("=") for p in str(message["X-Reporter-Version"]).split(", "))
    return int(shown[name])


# --- a stored message that is no longer what was written ----------------------------------


@pytest.mark.parametrize("damage", ["empty", "garbage", "truncated"])
def test_a_damaged_stored_message_is_rebuilt_never_sent_half_nor_refused_every_run(
    tmp_path: Path, api: SandboxServer, smtp: SmtpServer, damage: str
) -> None:
    """Mail server down on the 1st, then the outbox file is emptied, overwritten or cut in
    half (a full disk, a restore, a careless hand). It was sent as it was: half a message
    (a PDF cut in two) reported as delivered, or, empty, refused by the To: check on
    every run for ever with the hint "run again (the message is rebuilt)"."""
    config = report("marketing", ["lead@company.com"])
    assert reporter(tmp_path, api, down(smtp), config).exit_code == 1
    with Ledger(tmp_path / "state.sqlite3") as ledger:
        (row,) = ledger.rows(PERIOD)
    assert row.artifact is not None
    stored = Path(row.artifact)
    whole = stored.read_bytes()
    written = email.message_from_bytes(whole, policy=email.policy.SMTP)
    assert isinstance(written, EmailMessage)
    stored.write_bytes(
        {
            "empty": b"",
            "garbage": b"\x00\xff not a message\n",
            "truncated": whole[: len(whole) // 2],
        }[damage]
    )

    again = reporter(tmp_path, api, smtp.env(), config)
    assert again.exit_code == 0, again.output
    (message,) = inbox(smtp, "lead@company.com")
    pdf = pdf_of(message)  # the whole report (a new version of it), never half of one
    assert pdf.rstrip().endswith(b"%%EOF")
    assert abs(len(pdf) - len(pdf_of(written))) < len(pdf) // 10
    assert "Credits used: 31,000" in text_of(message)
    assert reporter(tmp_path, api, smtp.env(), config).exit_code == 0
    assert len(inbox(smtp, "lead@company.com")) == 1


# --- an outbox that cannot be made --------------------------------------------------------


def test_an_outbox_that_cannot_be_created_is_one_error_before_any_request(
    tmp_path: Path, api: SandboxServer, smtp: SmtpServer
) -> None:
    """``<state>.outbox`` is a file (or sits where nothing can be created): the run
    fetched every report, then failed each with "internal error: NotADirectoryError",
    exit 1. Like an unusable ledger, it is one Error: line, exit 2, before any request."""
    config = write_config(tmp_path / "reports.toml", FAST + report("marketing", ["a@company.com"]))
    (tmp_path / "state.sqlite3.outbox").write_text("not a directory")
    result = subprocess.run(
        cli(tmp_path, config),
        env=env_for(api.url, smtp),
        capture_output=True,
        check=False,
        text=True,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert_one_error_line(result.stderr, "outbox")
    assert api.requests == []
    assert smtp.recorder.messages == []


# --- one mail per owner: an owner is a mailbox, whatever the case of its address ------------


def test_one_mail_per_owner_is_one_mail_for_addresses_differing_only_in_case(
    tmp_path: Path, api: SandboxServer, smtp: SmtpServer
) -> None:
    """``Ann@company.com`` owns one report and ``ann@company.com`` another: one mailbox (the
    ledger stores both as ``ann@company.com``), which got two messages."""
    config = report("marketing", ["Ann@company.com"]) + report(
        "engineering", ["ann@company.com"], group=30, title="Engineering"
    )
    result = reporter(tmp_path, api, smtp.env(), config, email_extra=PER_OWNER)
    assert result.exit_code == 0, result.output
    (message,) = arrivals(smtp)["ann@company.com"]
    assert "Marketing" in str(message["Subject"])
    assert "Engineering" in str(message["Subject"])
    assert len(smtp.recorder.messages[0].recipients) == 1


def test_a_stored_bundle_for_an_address_in_two_cases_goes_to_its_mailbox_once(
    tmp_path: Path, api: SandboxServer, smtp: SmtpServer
) -> None:
    """The same owner spelt two ways, the server down on the 1st: the next run sends the
    stored bundle with the mailbox named once in the envelope, not once per spelling."""
    config = report("marketing", ["Ann@company.com"]) + report(
        "engineering", ["ann@company.com"], group=30, title="Engineering"
    )
    assert reporter(tmp_path, api, down(smtp), config, email_extra=PER_OWNER).exit_code == 1
    again = reporter(tmp_path, api, smtp.env(), config, email_extra=PER_OWNER)
    assert again.exit_code == 0, again.output
    ((received),) = smtp.recorder.messages
    assert [r.lower() for r in received.recipients] == ["ann@company.com"]
    with Ledger(tmp_path / "state.sqlite3") as ledger:
        assert {(r.report, r.status) for r in ledger.rows(PERIOD)} == {
            ("marketing", "sent"),
            ("engineering", "sent"),
        }


# --- runs racing, runs killed ---------------------------------------------------------------


def test_runs_and_rechecks_racing_never_send_anyone_an_older_version_or_a_copy(
    tmp_path: Path, data: SandboxData, api: SandboxServer, smtp: SmtpServer
) -> None:
    """One owner refused on the 1st; late data; then two runs and two re-checks at once
    against a slow server, in whatever order they happen to take the rows. Each version is
    allocated once, each mailbox gets versions in order and no message twice, and whoever
    does not hold today's figure has a ledger row saying why."""
    owners = ["lead@company.com", "cfo@company.com", "ops@company.com"]
    config = write_config(
        tmp_path / "reports.toml",
        FAST + report("marketing", owners) + report("eng", ["lead@company.com"], group=30),
    )
    smtp.recorder.refuse["cfo@company.com"] = "450 4.2.1 Try later"
    first = subprocess.run(
        cli(tmp_path, config), env=env_for(api.url, smtp), capture_output=True, check=False
    )
    assert first.returncode == 1
    smtp.recorder.refuse.clear()
    data.script(20, dict.fromkeys(OCTOBER, 1000) | {OCTOBER[-1]: 6000})  # 36,000
    smtp.recorder.data_delay = 0.3
    runs = []
    for extra in ([], ["--recheck"], [], ["--recheck"]):
        runs.append(
            subprocess.Popen(
                cli(tmp_path, config, *extra),
                env=env_for(api.url, smtp),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
        )
        time.sleep(0.15)
    for process in runs:
        _, err = process.communicate(timeout=120)
        assert process.returncode in (0, 1), err.decode()
        assert b"Traceback" not in err
    for mailbox, messages in arrivals(smtp).items():
        ids = [m["Message-ID"] for m in messages]
        assert len(ids) == len(set(ids)), (mailbox, ids)
        for name in ("marketing", "eng"):
            got = [version_of(m, name) for m in messages if name in str(m["X-Reporter-Version"])]
            assert got == sorted(got), (mailbox, name, got)
    with sqlite3.connect(tmp_path / "state.sqlite3") as db:
        allocated = list(db.execute("SELECT report, version FROM versions"))
        credits = dict(db.execute("SELECT version, credits FROM versions WHERE report='marketing'"))
        rows = dict(db.execute("SELECT recipient, status FROM deliveries WHERE report='marketing'"))
    assert len(allocated) == len(set(allocated))
    # Each mailbox's newest marketing message shows today's 36,000 (a correction to it, or
    # the report as it is now), unless its row says it is not delivered.
    for owner in owners:
        newest = [m for m in arrivals(smtp)[owner] if "marketing" in str(m["X-Reporter-Version"])]
        assert credits[version_of(newest[-1], "marketing")] == 36000 or rows[owner] != "sent"


def test_a_run_killed_at_the_final_dot_is_resent_as_written_and_history_says_so(
    tmp_path: Path, api: SandboxServer, smtp: SmtpServer
) -> None:
    """SIGKILL while the server holds the final dot: the next run settles the row as
    unconfirmed and sends the very file the killed run wrote (same Message-ID, same
    bytes), once; ``history`` then shows it sent, with no traceback."""
    config = write_config(
        tmp_path / "reports.toml", FAST + report("marketing", ["lead@company.com"])
    )
    smtp.recorder.data_delay = 2.0
    process = subprocess.Popen(
        cli(tmp_path, config), env=env_for(api.url, smtp), stderr=subprocess.DEVNULL
    )
    state = tmp_path / "state.sqlite3"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with sqlite3.connect(state) as db:
                if db.execute("SELECT 1 FROM deliveries WHERE status='committing'").fetchone():
                    break
        except sqlite3.Error:
            pass
        time.sleep(0.05)
    else:
        pytest.fail("the run never reached the final dot")
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)
    smtp.recorder.data_delay = 0
    with Ledger(state) as ledger:
        ledger.recover()
        (row,) = ledger.rows(PERIOD)
    assert row.status == "unconfirmed"
    assert row.artifact is not None
    stored = Path(row.artifact).read_bytes()
    again = subprocess.run(
        cli(tmp_path, config), env=env_for(api.url, smtp), capture_output=True, check=False
    )
    assert again.returncode == 0, again.stderr
    received = [r for r in smtp.recorder.messages if r.message["Message-ID"] == row.message_id]
    assert len(received) == len(smtp.recorder.messages) >= 1
    written = email.message_from_bytes(stored, policy=email.policy.SMTP)
    assert isinstance(written, EmailMessage)
    assert pdf_of(received[-1].message) == pdf_of(written)
    history = subprocess.run(
        [REPORTER, "history", "--state", str(state)], capture_output=True, check=False, text=True
    )
    assert history.returncode == 0, history.stderr
    assert "Traceback" not in history.stderr
    (line,) = [x for x in history.stdout.splitlines() if "lead@company.com" in x]
    assert " sent " in f" {line} "
