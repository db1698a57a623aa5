"""The outbox and versions: nothing stale, nothing misaddressed (issue 24, defects 1-5, 8).

Each test plays a month that goes wrong the way real months do (a mail server down on
the 1st, a dry run in between, late data, one mailbox refusing) against the real stand-in
API and a real SMTP server on loopback, and checks what each inbox holds at the end.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from reporter.cli import cli
from reporter.ledger import Ledger
from reporter.sandbox import SandboxData, SandboxServer, synthetic_team
from tests.conftest import API_KEY, SmtpServer, free_port, write_config

PERIOD = "2026-10"
OCTOBER = [dt.date(2026, 10, day) for day in range(1, 32)]
FAST = "[api]\ninitial_wait_seconds = 0.01\nmax_wait_seconds = 0.05\n"


def report(name: str, owners: list[str], group: int = 20, title: str = "Marketing") -> str:
    return f"""
[[reports]]
name = "{name}"
title = "{title}"
owners = {owners!r}
group_ids = [{group}]
"""


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


def reporter(
    tmp_path: Path,
    api: SandboxServer,
    smtp_env: dict[str, str],
    reports: str,
    *extra: str,
    email_extra: str = "",
) -> Result:
    config = write_config(tmp_path / "reports.toml", FAST + reports, email_extra=email_extra)
    env = {"MAGNIFIC_API_KEY": API_KEY, "MAGNIFIC_API_BASE_URL": api.url, **smtp_env}
    args = ["run", "--config", str(config), "--period", PERIOD, "-q"]
    args += ["--out", str(tmp_path / "out"), "--state", str(tmp_path / "state.sqlite3"), *extra]
    return CliRunner().invoke(cli, args, env=env)


def text_of(message: EmailMessage) -> str:
    body = message.get_body(("plain",))
    assert body is not None
    return str(body.get_content())


def inbox(smtp: SmtpServer, address: str) -> list[EmailMessage]:
    return smtp.recorder.by_recipient().get(address, [])


def outbox_files(tmp_path: Path) -> dict[Path, str]:
    root = tmp_path / "state.sqlite3.outbox"
    return {
        p: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in root.rglob("*")
        if p.is_file() and "tmp" not in p.relative_to(root).parts
    }


def down(smtp: SmtpServer) -> dict[str, str]:
    return {**smtp.env(), "SMTP_PORT": str(free_port())}


# --- 1. a dry run never changes what a later real run sends ------------------------------


def test_a_dry_run_in_between_does_not_change_what_the_owner_receives(
    tmp_path: Path, api: SandboxServer, smtp: SmtpServer
) -> None:
    real = report("marketing", ["lead@company.com"])
    failed = reporter(tmp_path, api, down(smtp), real)
    assert failed.exit_code == 1
    written = outbox_files(tmp_path)
    assert len(written) == 1

    # Same report name, another title and another group: a draft.
    draft = report("marketing", ["lead@company.com"], group=30, title="Draft Title")
    dry = reporter(tmp_path, api, down(smtp), draft, "--dry-run")
    assert dry.exit_code == 0, dry.output
    copy = tmp_path / "out" / PERIOD / "marketing.eml"
    assert b"Draft Title" in copy.read_bytes()  # the draft is where people look for it
    assert outbox_files(tmp_path) == written  # and nowhere the outbox reads

    sent = reporter(tmp_path, api, smtp.env(), real)
    assert sent.exit_code == 0, sent.output
    (message,) = inbox(smtp, "lead@company.com")
    assert str(message["Subject"]) == "Marketing — credit usage, October 2026"
    assert "Credits used: 31,000" in text_of(message)
    assert "Draft" not in message.as_string()
    assert outbox_files(tmp_path) == written


# --- 2. a report delivered from a stored message records what it showed -------------------


def test_a_report_sent_from_its_stored_message_is_corrected_later(
    tmp_path: Path, data: SandboxData, api: SandboxServer, smtp: SmtpServer
) -> None:
    config = report("marketing", ["lead@company.com"])
    assert reporter(tmp_path, api, down(smtp), config).exit_code == 1
    resent = reporter(tmp_path, api, smtp.env(), config)
    assert resent.exit_code == 0, resent.output
    assert "the message a previous run wrote" in resent.output

    data.script(20, dict.fromkeys(OCTOBER, 1000) | {OCTOBER[-1]: 6000})
    corrected = reporter(tmp_path, api, smtp.env(), config, "--recheck")
    assert corrected.exit_code == 0, corrected.output
    assert "no delivered report" not in corrected.output
    _first, correction = inbox(smtp, "lead@company.com")
    assert str(correction["Subject"]).startswith("Corrected: ")
    assert "31,000" in text_of(correction)
    assert "36,000" in text_of(correction)
    with Ledger(tmp_path / "state.sqlite3") as ledger:
        assert ledger.held("marketing", PERIOD)["lead@company.com"].credits == 36000.0


# --- 3. newest version last; nobody is corrected on a figure they never saw ------------------


def test_an_owner_whose_first_send_failed_gets_the_current_report_and_never_the_stale_one(
    tmp_path: Path, data: SandboxData, api: SandboxServer, smtp: SmtpServer
) -> None:
    config = report("marketing", ["lead@company.com", "cfo@company.com"])
    smtp.recorder.refuse["cfo@company.com"] = "550 5.2.2 Mailbox full"
    partly = reporter(tmp_path, api, smtp.env(), config)
    assert partly.exit_code == 1
    smtp.recorder.refuse.clear()

    data.script(20, dict.fromkeys(OCTOBER, 1000) | {OCTOBER[-1]: 6000})  # 36,000
    recheck = reporter(tmp_path, api, smtp.env(), config, "--recheck")
    assert recheck.exit_code == 0, recheck.output
    assert "sent to 2 owners (1 of them had none yet and got the current report" in recheck.output

    original, correction = inbox(smtp, "lead@company.com")
    assert "Credits used: 31,000" in text_of(original)
    assert str(correction["Subject"]).startswith("Corrected: ")
    assert "31,000" in text_of(correction)
    (current,) = inbox(smtp, "cfo@company.com")
    assert "Corrected" not in str(current["Subject"])  # no correction of what they never saw
    assert "Credits used: 36,000" in text_of(current)

    # The pending original was superseded: the next run sends nothing at all.
    again = reporter(tmp_path, api, smtp.env(), config)
    assert again.exit_code == 0, again.output
    assert len(inbox(smtp, "cfo@company.com")) == 1
    assert len(inbox(smtp, "lead@company.com")) == 2
    with Ledger(tmp_path / "state.sqlite3") as ledger:
        held = ledger.held("marketing", PERIOD)
    assert {h.credits for h in held.values()} == {36000.0}


def test_a_correction_one_owner_refused_is_sent_to_them_later_as_written(
    tmp_path: Path, data: SandboxData, api: SandboxServer, smtp: SmtpServer
) -> None:
    config = report("marketing", ["lead@company.com", "cfo@company.com"])
    assert reporter(tmp_path, api, smtp.env(), config).exit_code == 0
    data.script(20, dict.fromkeys(OCTOBER, 1000) | {OCTOBER[-1]: 6000})
    smtp.recorder.refuse["cfo@company.com"] = "452 4.2.2 Mailbox full"
    assert reporter(tmp_path, api, smtp.env(), config, "--recheck").exit_code == 1
    smtp.recorder.refuse.clear()
    data.script(20, dict.fromkeys(OCTOBER, 1000) | {OCTOBER[-1]: 6100})  # within 0.5%
    fetched = len(api.requests)
    again = reporter(tmp_path, api, smtp.env(), config)
    assert again.exit_code == 0, again.output
    assert len(api.requests) == fetched  # sent as written, not rebuilt
    _, to_lead = inbox(smtp, "lead@company.com")
    _, to_cfo = inbox(smtp, "cfo@company.com")
    assert to_cfo["Message-ID"] == to_lead["Message-ID"]
    assert str(to_cfo["Subject"]).startswith("Corrected: ")


# --- 4. a total that flips back is corrected every time -----------------------------------


def test_a_total_that_flips_back_and_forth_is_corrected_each_time(
    tmp_path: Path, data: SandboxData, api: SandboxServer, smtp: SmtpServer
) -> None:
    config = report("marketing", ["lead@company.com"])
    data.script(20, dict.fromkeys(OCTOBER, 1000) | {OCTOBER[-1]: 0})  # 30,000
    assert reporter(tmp_path, api, smtp.env(), config).exit_code == 0
    totals = ["33,000", "30,000", "33,000"]
    for total in totals:
        last = 3000 if total == "33,000" else 0
        data.script(20, dict.fromkeys(OCTOBER, 1000) | {OCTOBER[-1]: last})
        result = reporter(tmp_path, api, smtp.env(), config, "--recheck")
        assert result.exit_code == 0, result.output
        assert "corrected" in result.output
    messages = inbox(smtp, "lead@company.com")
    assert len(messages) == 4
    shown = [text_of(m) for m in messages[1:]]
    for text, (was, now) in zip(shown, zip(["30,000", *totals], totals, strict=False), strict=True):
        assert f"showed {was} credits" in text
        assert f"brings the total to {now}" in text
    assert len({m["Message-ID"] for m in messages}) == 4
    # Nothing moved since: nothing more.
    assert reporter(tmp_path, api, smtp.env(), config, "--recheck").exit_code == 0
    assert len(inbox(smtp, "lead@company.com")) == 4


# --- 5. one mail per owner: addresses a slug would merge stay two mailboxes ----------------


def test_owners_whose_addresses_differ_only_in_punctuation_each_get_their_own_reports(
    tmp_path: Path, api: SandboxServer, smtp: SmtpServer
) -> None:
    config = report("marketing", ["j.smith@company.com"]) + report(
        "engineering", ["j_smith@company.com"], group=30, title="Engineering"
    )
    per_owner = "one_mail_per_owner = true\n"
    result = reporter(tmp_path, api, smtp.env(), config, email_extra=per_owner)
    assert result.exit_code == 0, result.output
    (dot,) = inbox(smtp, "j.smith@company.com")
    (underscore,) = inbox(smtp, "j_smith@company.com")
    assert "Marketing" in str(dot["Subject"])
    assert "Engineering" not in dot.as_string()
    assert "Engineering" in str(underscore["Subject"])
    assert "Marketing" not in str(underscore["Subject"])
    assert str(dot["To"]) == "j.smith@company.com"
    assert str(underscore["To"]) == "j_smith@company.com"
    assert (tmp_path / "out" / PERIOD / "mail-j.smith@company.com.eml").is_file()
    assert (tmp_path / "out" / PERIOD / "mail-j_smith@company.com.eml").is_file()


# --- 8. a co-owner the server cannot reach never blocks the others --------------------------


def test_an_owner_that_needs_smtputf8_fails_alone(
    tmp_path: Path, api: SandboxServer, smtp_ascii: SmtpServer
) -> None:
    config = report("marketing", ["boss@company.com", "josé.núñez@company.com"])
    result = reporter(tmp_path, api, smtp_ascii.env(), config)
    assert result.exit_code == 1
    assert "PARTLY FAILED" in result.output or "partial" in result.output.lower()
    (message,) = inbox(smtp_ascii, "boss@company.com")
    assert str(message["To"]) == "boss@company.com"
    assert "josé" not in message.as_string()
    with Ledger(tmp_path / "state.sqlite3") as ledger:
        rows = {r.recipient: r.status for r in ledger.rows(PERIOD)}
    assert rows == {"boss@company.com": "sent", "josé.núñez@company.com": "failed"}


def test_a_message_is_never_sent_to_an_address_its_to_does_not_name(
    tmp_path: Path, smtp: SmtpServer
) -> None:
    """The last check before a message leaves: whatever went wrong upstream, a message for
    one owner is not handed to the server for another."""
    from reporter.environment import SmtpSettings
    from reporter.jobs.deliver import deliver
    from reporter.jobs.records import MailFile
    from reporter.mail import SmtpSender, build_message

    message = build_message(
        sender="Reports <reports@company.com>",
        recipients=["j.smith@company.com"],
        subject="Marketing — credit usage, October 2026",
        text="Credits used: 31,000",
        html="<p>Credits used: 31,000</p>",
        msg_id="<reporter.2026-10.x@company.com>",
        date=dt.datetime(2026, 11, 1, tzinfo=dt.UTC),
    )
    path = tmp_path / "m.eml"
    path.write_bytes(bytes(message))
    sender = SmtpSender(SmtpSettings("127.0.0.1", smtp.port, "none", None, None))
    with Ledger(tmp_path / "state.sqlite3") as ledger:
        wrong = MailFile(["marketing"], ["j_smith@company.com"], path, "<x>")
        ledger.claim("marketing", PERIOD, wrong.recipients, force=False)
        result = deliver(wrong, sender, ledger, PERIOD)
        (row,) = ledger.rows(PERIOD)
    assert smtp.recorder.messages == []
    assert list(result.failed) == ["j_smith@company.com"]
    assert "its To: does not name j_smith@company.com" in result.failed["j_smith@company.com"]
    assert row.status == "failed"


def test_the_outbox_never_replaces_a_message_and_clears_only_stale_leftovers(
    tmp_path: Path,
) -> None:
    import os
    import time

    from reporter.outbox import TMP_KEPT_SECONDS, Outbox

    outbox = Outbox(tmp_path / "outbox")
    first = outbox.put(PERIOD, "abc.eml", b"first")
    assert outbox.put(PERIOD, "abc.eml", b"second") == first
    assert first.read_bytes() == b"first"
    assert outbox.holds(first)
    assert not outbox.holds(tmp_path / "elsewhere.eml")
    assert list((tmp_path / "outbox" / "tmp").iterdir()) == []
    stale, fresh = tmp_path / "outbox" / "tmp" / "1.P1.h", tmp_path / "outbox" / "tmp" / "2.P2.h"
    stale.write_bytes(b"half")
    fresh.write_bytes(b"half")
    old = time.time() - TMP_KEPT_SECONDS - 60
    os.utime(stale, (old, old))
    assert outbox.clean() == 1
    assert not stale.exists()
    assert fresh.exists()


@pytest.mark.parametrize("damage", [b"garbage, not a message\r\n", b""])
def test_a_damaged_outbox_message_is_never_sent_the_owner_gets_a_new_build(
    tmp_path: Path, api: SandboxServer, smtp: SmtpServer, damage: bytes
) -> None:
    config = report("marketing", ["lead@company.com"])
    assert reporter(tmp_path, api, down(smtp), config).exit_code == 1
    (stored,) = outbox_files(tmp_path)
    stored.write_bytes(damage)
    again = reporter(tmp_path, api, smtp.env(), config)
    assert again.exit_code == 0, again.output
    (message,) = inbox(smtp, "lead@company.com")
    assert "Credits used: 31,000" in text_of(message)
    assert stored.read_bytes() == damage  # left as found; the new build is a file of its own


def test_force_sends_a_new_message_that_a_mailbox_will_not_drop_as_a_copy(
    tmp_path: Path, api: SandboxServer, smtp: SmtpServer
) -> None:
    """--force is a new build (a new version, a new Message-ID); an automatic resend after
    an unconfirmed send is the same message (see test_delivery)."""
    config = report("marketing", ["lead@company.com"])
    assert reporter(tmp_path, api, smtp.env(), config).exit_code == 0
    forced = reporter(tmp_path, api, smtp.env(), config, "--force")
    assert forced.exit_code == 0, forced.output
    first, second = inbox(smtp, "lead@company.com")
    assert first["Message-ID"] != second["Message-ID"]
    assert str(first["X-Reporter-Version"]) == "marketing=1"
    assert str(second["X-Reporter-Version"]) == "marketing=2"
    assert "Credits used: 31,000" in text_of(second)
