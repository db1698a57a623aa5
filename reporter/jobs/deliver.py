"""Sending what was written, through the ledger's write-ahead marks.

Each message is read back from its ``.eml`` just before it is sent: what an
owner receives is byte for byte the file a later run would resend.
"""

from __future__ import annotations

import email
import email.policy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path

from reporter.errors import DeliveryError
from reporter.jobs.build import MailFile
from reporter.ledger import Delivery, Ledger, recipient_key
from reporter.mail import SmtpSender

UNCONFIRMED_DETAIL = (
    "the connection dropped before the mail server confirmed the message;"
    " the next run sends it again with the same Message-ID"
)
RESENDABLE = ("failed", "rendered", "unconfirmed")


@dataclass
class Sent:
    """What delivery achieved, per recipient."""

    delivered: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # recipient -> why
    unconfirmed: list[str] = field(default_factory=list)  # handed over, never acknowledged

    def add(self, other: Sent) -> None:
        self.delivered.extend(other.delivered)
        self.failed.update(other.failed)
        self.unconfirmed.extend(other.unconfirmed)


def read_message(path: Path) -> EmailMessage:
    message = email.message_from_bytes(path.read_bytes(), policy=email.policy.SMTP)
    assert isinstance(message, EmailMessage)
    return message


def deliver(mail: MailFile, sender: SmtpSender, ledger: Ledger, period: str) -> Sent:
    """Send one message with the ledger's marks before, at the commit point, and after."""
    kind = mail.kinds
    _mark_file(ledger, mail, period, "sending")
    try:
        result = sender.send(
            read_message(mail.path),
            mail.recipients,
            on_commit=lambda: ledger.mark(
                mail.reports, period, mail.recipients, "committing", message=kind
            ),
        )
    except DeliveryError as exc:
        ledger.mark(mail.reports, period, mail.recipients, "failed", error=str(exc), message=kind)
        return Sent(failed={r: str(exc) for r in mail.recipients})
    if result.unconfirmed:
        ledger.mark(
            mail.reports,
            period,
            result.accepted,
            "unconfirmed",
            error=UNCONFIRMED_DETAIL,
            message=kind,
        )
        return Sent(unconfirmed=list(result.accepted))
    ledger.mark(mail.reports, period, result.accepted, "sent", message=kind)
    for recipient, why in result.refused.items():
        ledger.mark(mail.reports, period, [recipient], "failed", error=why, message=kind)
    return Sent(delivered=list(result.accepted), failed=dict(result.refused))


def send_preview(mail: MailFile, sender: SmtpSender) -> Sent:
    """A preview: no ledger, so the real run still mails every owner."""
    try:
        result = sender.send(read_message(mail.path), mail.recipients)
    except DeliveryError as exc:
        return Sent(failed={r: str(exc) for r in mail.recipients})
    if result.unconfirmed:
        return Sent(unconfirmed=list(result.accepted))
    return Sent(delivered=list(result.accepted), failed=dict(result.refused))


def stored_row(
    by_key: Mapping[tuple[str, str], Delivery], report: str, recipient: str
) -> tuple[Delivery, str] | None:
    """The row of what a previous run wrote for ``recipient`` and did not get delivered,
    and the file it names to send again."""
    row = by_key.get((report, recipient_key(recipient)))
    if row is None or row.status not in RESENDABLE or not row.artifact:
        return None
    return row, row.artifact


def record_written(ledger: Ledger, mail: MailFile, period: str) -> None:
    """A message on disk is recorded at once: a crash after this resends that very file."""
    _mark_file(ledger, mail, period, "rendered")


def _mark_file(ledger: Ledger, mail: MailFile, period: str, status: str) -> None:
    """Mark every row of ``mail`` with its file and Message-ID, so a later run can resend it."""
    ledger.mark(
        mail.reports,
        period,
        mail.recipients,
        status,
        message_id=mail.message_id,
        artifact=str(mail.path),
        message=mail.kinds,
    )


def stored_mails(pending: Mapping[str, list[str]], rows: Sequence[Delivery]) -> list[MailFile]:
    """Messages a previous run wrote but did not get confirmed, to send again as they are.

    Every pending (report, owner) whose row points at such a message gets that very
    file again, Message-ID and all: a copy the server may already have delivered is then
    recognisably the same message. Owners without one are left to a new build.
    """
    by_key = {(r.report, r.recipient): r for r in rows}
    reports: dict[str, set[str]] = {}
    owners: dict[str, list[str]] = {}
    ids: dict[str, str] = {}
    for report, pending_owners in pending.items():
        for owner in pending_owners:
            stored = stored_row(by_key, report, owner)
            if stored is None or not Path(stored[1]).is_file():
                continue
            row, artifact = stored
            reports.setdefault(artifact, set()).add(report)
            if owner not in owners.setdefault(artifact, []):
                owners[artifact].append(owner)
            ids[artifact] = row.message_id or str(read_message(Path(artifact))["Message-ID"])
    return [
        MailFile(sorted(reports[path]), owners[path], Path(path), ids[path]) for path in reports
    ]
