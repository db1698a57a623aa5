"""Delivery you can trust: exactly once per owner, nothing lost, whatever fails."""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from reporter.cli import cli
from reporter.sandbox import SandboxServer
from tests.conftest import API_KEY, HISTORY_HEADER, SmtpServer, free_port, pdf_text, write_config

PERIOD = "2026-10"

TWO_REPORTS = """
[[reports]]
name = "marketing"
title = "Marketing Campaign"
owners = ["manager@company.com", "cfo@company.com"]
project_references = ["a1b2c3d4-1111-4000-8000-000000000001"]

[[reports]]
name = "design"
owners = ["design.lead@company.com", "cfo@company.com"]
group_ids = [10]
"""


def run_args(config: Path, tmp_path: Path) -> list[str]:
    """``run`` for the test period, with its files and ledger under ``tmp_path``."""
    files = ["--out", str(tmp_path / "out"), "--state", str(tmp_path / "state.sqlite3")]
    return ["run", "--config", str(config), "--period", PERIOD, *files]


def cli_run(
    tmp_path: Path,
    api: SandboxServer,
    smtp_env: dict[str, str],
    *extra: str,
    reports: str = TWO_REPORTS,
    email_extra: str = "",
) -> tuple[int, str, str]:
    config = write_config(tmp_path / "reports.toml", reports, email_extra=email_extra)
    env = {"MAGNIFIC_API_KEY": API_KEY, "MAGNIFIC_API_BASE_URL": api.url, **smtp_env}
    args = [*run_args(config, tmp_path), *extra]
    result = CliRunner().invoke(cli, args, env=env, catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def copies(smtp: SmtpServer) -> dict[tuple[str, str], int]:
    """(recipient, subject) -> how many copies the server accepted."""
    out: dict[tuple[str, str], int] = {}
    for received in smtp.recorder.messages:
        for rcpt in received.recipients:
            key = (rcpt, str(received.message["Subject"]))
            out[key] = out.get(key, 0) + 1
    return out


def ledger(tmp_path: Path) -> list[tuple[str, str, str]]:
    with sqlite3.connect(tmp_path / "state.sqlite3") as db:
        return sorted(db.execute("SELECT report, recipient, status FROM deliveries"))


def test_mail_server_down_keeps_artefacts_and_the_next_run_sends_them(
    tmp_path: Path, api: SandboxServer, smtp: SmtpServer
) -> None:
    down = {**smtp.env(), "SMTP_PORT": str(free_port())}
    code, stdout, stderr = cli_run(tmp_path, api, down)
    assert code == 1
    assert "FAILED" in stdout
    assert "did not take the message: cannot connect" in stdout
    out = tmp_path / "out" / PERIOD
    for name in ("marketing", "design"):
        assert (out / f"{name}.pdf").stat().st_size > 0
        assert (out / f"{name}.csv").stat().st_size > 0
        assert (out / f"{name}.eml").stat().st_size > 0
    assert {status for *_, status in ledger(tmp_path)} == {"failed"}
    api_calls = len(api.requests)

    code, stdout, stderr = cli_run(tmp_path, api, smtp.env())
    assert code == 0, stderr
    assert (
        "marketing: delivered, 114,440 credits (sent to 2 owners, the message a previous run wrote)"
        in stderr
    )
    assert len(api.requests) == api_calls  # sent from disk, not rebuilt
    assert set(copies(smtp).values()) == {1}
    assert len(copies(smtp)) == 4
    assert {status for *_, status in ledger(tmp_path)} == {"sent"}


def test_refused_owner_is_named_others_get_it_and_only_they_get_the_retry(
    tmp_path: Path, api: SandboxServer, smtp: SmtpServer
) -> None:
    smtp.recorder.refuse["cfo@company.com"] = "550 5.2.2 Mailbox full"
    code, stdout, _ = cli_run(tmp_path, api, smtp.env())
    assert code == 1
    assert "PARTLY FAILED" in stdout
    assert "cfo@company.com: 550 5.2.2 Mailbox full" in stdout
    assert ("manager@company.com", "Marketing Campaign — credit usage, October 2026") in copies(
        smtp
    )

    smtp.recorder.refuse.clear()
    code, _, _ = cli_run(tmp_path, api, smtp.env())
    assert code == 0
    assert set(copies(smtp).values()) == {1}
    assert sorted(r for r, _ in copies(smtp)) == [
        "cfo@company.com",
        "cfo@company.com",
        "design.lead@company.com",
        "manager@company.com",
    ]
    last_two = [m.recipients for m in smtp.recorder.messages[-2:]]
    assert last_two == [["cfo@company.com"], ["cfo@company.com"]]


def _set_status(tmp_path: Path, report: str, status: str) -> None:
    with sqlite3.connect(tmp_path / "state.sqlite3") as db:
        db.execute("UPDATE deliveries SET status=? WHERE report=?", (status, report))


def test_a_run_killed_after_the_final_dot_sends_again_with_the_same_message_id(
    tmp_path: Path, api: SandboxServer, smtp: SmtpServer
) -> None:
    """Killed between the final dot and the server's reply ('committing'): the report may
    have arrived or not, so the next run sends the same message again, never drops it."""
    assert cli_run(tmp_path, api, smtp.env())[0] == 0
    first = {
        str(m.message["Subject"]): str(m.message["Message-ID"]) for m in smtp.recorder.messages
    }
    _set_status(tmp_path, "marketing", "committing")
    code, stdout, _ = cli_run(tmp_path, api, smtp.env())
    assert code == 0
    assert len(smtp.recorder.messages) == 3
    again = smtp.recorder.messages[-1].message
    assert str(again["Message-ID"]) == first[str(again["Subject"])]
    assert ("marketing", "manager@company.com", "sent") in ledger(tmp_path)
    assert re.search(r"marketing .* delivered", stdout)


def test_a_run_killed_before_the_final_dot_sends_on_the_next_run(
    tmp_path: Path, api: SandboxServer, smtp: SmtpServer
) -> None:
    """Killed mid-transaction, before the server could accept: 'sending' is resent."""
    down = {**smtp.env(), "SMTP_PORT": str(free_port())}
    cli_run(tmp_path, api, down)
    _set_status(tmp_path, "design", "sending")
    assert cli_run(tmp_path, api, smtp.env())[0] == 0
    assert set(copies(smtp).values()) == {1}
    assert len(copies(smtp)) == 4


@pytest.mark.parametrize("delay_point", ["between messages", "awaiting the final reply"])
def test_sigkill_mid_batch_then_rerun_gives_every_owner_each_report(
    tmp_path: Path, api: SandboxServer, smtp: SmtpServer, delay_point: str
) -> None:
    names = [f"team-{i}" for i in range(6)]
    reports = "".join(
        f'\n[[reports]]\nname = "{n}"\nowners = ["{n}@company.com", "boss@company.com"]\n'
        f"group_ids = [{10 * (i % 4 + 1)}]\n"
        for i, n in enumerate(names)
    )
    config = write_config(tmp_path / "reports.toml", reports)
    env = {
        **os.environ,
        "MAGNIFIC_API_KEY": API_KEY,
        "MAGNIFIC_API_BASE_URL": api.url,
        **smtp.env(),
    }
    args = [str(Path(sys.executable).parent / "reporter"), *run_args(config, tmp_path)]
    smtp.recorder.data_delay = 0.4 if delay_point == "awaiting the final reply" else 0.0
    process = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while len(smtp.recorder.messages) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(process.pid, signal.SIGKILL)
    process.communicate(timeout=30)
    killed_after = len(smtp.recorder.messages)
    assert 2 <= killed_after < len(names)
    time.sleep(max(0.5, smtp.recorder.data_delay * 2))  # let the server finish what it holds
    smtp.recorder.data_delay = 0.0

    rerun = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert rerun.returncode == 0, rerun.stderr
    got = copies(smtp)
    assert {r for r, _ in got} == {f"{n}@company.com" for n in names} | {"boss@company.com"}
    assert sum(1 for r, _ in got if r == "boss@company.com") == len(names)
    # Killed after the server took a message but before the ledger heard its answer, that
    # one message is sent again, as the very same message: a mailbox drops the copy.
    twice = {subject for (_, subject), n in got.items() if n > 1}
    assert len(twice) <= 1, got
    assert max(got.values()) <= 2, got
    for subject in twice:
        ids = {
            str(m.message["Message-ID"])
            for m in smtp.recorder.messages
            if m.message["Subject"] == subject
        }
        assert len(ids) == 1, ids


def test_one_mail_per_owner_groups_their_reports(
    tmp_path: Path, api: SandboxServer, smtp: SmtpServer
) -> None:
    code, _, stderr = cli_run(tmp_path, api, smtp.env(), email_extra="one_mail_per_owner = true")
    assert code == 0, stderr
    by_rcpt = smtp.recorder.by_recipient()
    assert {k: len(v) for k, v in by_rcpt.items()} == {
        "manager@company.com": 1,
        "cfo@company.com": 1,
        "design.lead@company.com": 1,
    }
    cfo = by_rcpt["cfo@company.com"][0]
    pdfs = sorted(
        p.get_filename()
        for p in cfo.iter_attachments()
        if p.get_content_type() == "application/pdf"
    )
    assert pdfs == ["design-2026-10.pdf", "marketing-2026-10.pdf"]
    assert cfo["Subject"] == "Credit usage, October 2026: Marketing Campaign, design"
    assert cfo["To"] == "cfo@company.com"
    assert cli_run(tmp_path, api, smtp.env(), email_extra="one_mail_per_owner = true")[0] == 0
    assert len(smtp.recorder.messages) == 3


def test_hostile_names_cannot_break_headers_or_markup(
    tmp_path: Path, api: SandboxServer, smtp: SmtpServer
) -> None:
    title = "<script>alert(1)</script> Launch 🚀\\r\\nBcc: attacker@evil.example"
    reports = f'\n[[reports]]\nname = "launch"\ntitle = "{title}"\nowners = ["pm@company.com"]\n'
    code, _, stderr = cli_run(tmp_path, api, smtp.env(), reports=reports)
    assert code == 0, stderr
    (received,) = smtp.recorder.messages
    assert received.recipients == ["pm@company.com"]
    message = received.message
    assert message["Bcc"] is None
    assert message["Subject"] == (
        "<script>alert(1)</script> Launch 🚀 Bcc: attacker@evil.example"
        " — credit usage, October 2026"
    )
    html = message.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert "<script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt; Launch 🚀" in html
    assert "<script>alert(1)</script> Launch 🚀" in pdf_text(
        tmp_path / "out" / PERIOD / "launch.pdf"
    )


def test_history_prints_the_ledger(tmp_path: Path, api: SandboxServer, smtp: SmtpServer) -> None:
    cli_run(tmp_path, api, smtp.env())
    result = CliRunner().invoke(
        cli, ["history", "--state", str(tmp_path / "state.sqlite3"), "--period", PERIOD]
    )
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0].split() == HISTORY_HEADER
    assert len(lines) == 5
    assert all(" report:v1 " in line and " sent " in line for line in lines[1:])
