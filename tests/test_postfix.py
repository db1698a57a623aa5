"""End to end through a real Postfix (tests/postfix.py): STARTTLS with the company's own
CA trusted through SMTP_CA_FILE, SMTPUTF8 for an owner who needs it (and only there, as
Postfix's Received header tells), bare newlines forbidden. Every report reaches every
owner once, byte for byte as written, a re-run sends nothing, and Postfix logs no
warning."""

from __future__ import annotations

import email
import email.policy
import re
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest

from reporter.mail import needs_smtputf8
from reporter.sandbox import SandboxServer
from tests.conftest import API_KEY, reporter, write_config
from tests.postfix import Postfix, running_postfix

OWNERS = {
    "marketing": ["manager@company.com", "finance@company.com"],
    "design": ["josé@company.com"],
    "team": ["lead@company.com"],
}
REPORTS = "\n".join(
    f'[[reports]]\nname = "{name}"\nowners = {owners!r}\n'.replace("'", '"')
    for name, owners in OWNERS.items()
)


@pytest.fixture
def postfix() -> Iterator[Postfix]:
    with running_postfix() as server:
        yield server


def read(path: Path) -> EmailMessage:
    # Headers may be UTF-8 (SMTPUTF8); the bodies are 7-bit, so the whole file decodes.
    # (Not message_from_bytes: it keeps UTF-8 in headers as surrogate escapes, so
    # josé@company.com would read 'jos\udcc3\udca9@company.com'.)
    message = email.message_from_string(path.read_text("utf-8"), policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def test_a_run_through_postfix_delivers_every_report_once_as_written(
    tmp_path: Path, api: SandboxServer, postfix: Postfix
) -> None:
    config = write_config(tmp_path / "reports.toml", REPORTS)
    out, state = tmp_path / "out", tmp_path / "state.sqlite3"
    env = {"MAGNIFIC_API_KEY": API_KEY, "MAGNIFIC_API_BASE_URL": api.url, **postfix.env()}
    args = ["run", "--config", str(config), "--out", str(out), "--state", str(state), "-q"]

    first = reporter(*args, env=env)
    assert first.returncode == 0, first.stdout + first.stderr
    postfix.settle()
    delivered = postfix.delivered()
    got: dict[tuple[str, str], EmailMessage] = {}
    for path in delivered:
        message = read(path)
        recipient = str(message["Delivered-To"])
        report = str(message["X-Reporter-Version"]).partition("=")[0]  # "marketing=1"
        assert (report, recipient) not in got, f"{recipient} got {report} twice"
        got[(report, recipient)] = message
    wanted = sorted((r, o) for r, owners in OWNERS.items() for o in owners)
    assert sorted(got) == wanted, postfix.log()

    for (report, _), message in got.items():
        (written,) = out.glob(f"*/{report}.eml")
        sent = read(written)
        assert message["Message-ID"] == sent["Message-ID"]
        assert sorted(a.addr_spec for a in message["To"].addresses) == sorted(OWNERS[report])
        (pdf,) = out.glob(f"*/{report}.pdf")
        (attachment,) = [
            p for p in message.iter_attachments() if p.get_content_type() == "application/pdf"
        ]
        assert attachment.get_payload(decode=True) == pdf.read_bytes()
        # Postfix's Received header names the protocol (RFC 3848): S for STARTTLS, UTF8 for
        # SMTPUTF8, which the reporter asks for only when an address needs it.
        protocol = re.search(r"\bwith (\S+) id\b", str(message["Received"]))
        expected = "UTF8SMTPS" if any(needs_smtputf8([o]) for o in OWNERS[report]) else "ESMTPS"
        assert protocol, message["Received"]
        assert protocol[1] == expected, message["Received"]

    again = reporter(*args, env=env)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "already delivered" in again.stdout
    postfix.settle()
    assert postfix.delivered() == delivered

    log = postfix.log()
    assert re.search(r"status=sent \(delivered to maildir\)", log)
    problems = [
        line
        for line in log.splitlines()
        if re.search(r"\b(warning|error|fatal|panic|reject):|status=(?!sent\b)", line)
    ]
    assert problems == [], "\n".join(problems)
