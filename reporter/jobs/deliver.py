"""Sending what was written, through the ledger's write-ahead marks.

Each message is read back from its outbox file just before it is sent: what an
owner receives is byte for byte the file a later run would resend. Before it
leaves, its envelope is checked against its own ``To:``: a message is only ever
sent to the people it names, whatever a bug upstream did.
"""

from __future__ import annotations

import email
import email.policy
import email.utils
from collections.abc import Mapping, Sequence
from email.message import EmailMessage
from pathlib import Path

from reporter.errors import DeliveryError, MailSetupError
from reporter.jobs.records import MailFile, Sent
from reporter.ledger import REPORT, Delivery, Ledger, recipient_key
from reporter.mail import SmtpSender
from reporter.outbox import Outbox

UNCONFIRMED_DETAIL = (
    "the connection dropped before the mail server confirmed the message;"
    " the next run sends it again with the same Message-ID"
)
RESENDABLE = ("failed", "rendered", "unconfirmed")


def read_message(path: Path) -> EmailMessage:
    message = email.message_from_bytes(path.read_bytes(), policy=email.policy.SMTP)
    assert isinstance(message, EmailMessage)
    return message


def deliver(mail: MailFile, sender: SmtpSender, ledger: Ledger, period: str) -> Sent:
    """Send one message with the ledger's marks before, at the commit point, and after."""
    kind = mail.kinds
    _mark_file(ledger, mail, period, "sending")
    try:
        message = read_message(mail.path)
        check_addressed(message, mail.recipients)
        result = sender.send(
            message,
            mail.recipients,
            on_commit=lambda: ledger.mark(
                mail.reports, period, mail.recipients, "committing", message=kind
            ),
        )
    except (DeliveryError, OSError) as exc:
        if isinstance(exc, MailSetupError):
            why = exc.with_hint()  # the same for every message: say what to set
        elif isinstance(exc, DeliveryError):
            why = str(exc)
        else:
            why = f"cannot read {mail.path}: {exc}"
        ledger.mark(mail.reports, period, mail.recipients, "failed", error=why, message=kind)
        return Sent(failed=dict.fromkeys(mail.recipients, why))
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


def check_addressed(message: EmailMessage, recipients: Sequence[str]) -> None:
    """Refuse to send ``message`` to anyone its ``To:`` does not name: the envelope is
    exactly the ledger rows a delivery settles, and each of them must be a named
    addressee, so a message can never reach a mailbox it was not written for."""
    named = {address.lower() for _, address in email.utils.getaddresses(message.get_all("To", []))}
    strangers = [r for r in recipients if r.lower() not in named]
    if strangers or not recipients:
        raise DeliveryError(
            f"refusing to send {message['Message-ID']}: its To: does not name"
            f" {', '.join(strangers) or 'anyone it is sent to'}",
            transient=False,
            hint="this is a bug in reporter; run again (the message is rebuilt) and report it",
        )


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
    by_key: Mapping[tuple[str, str], Delivery],
    report: str,
    recipient: str,
    latest: Mapping[str, int],
    outbox: Outbox,
) -> tuple[Delivery, Path] | None:
    """The row of what a previous run wrote to the outbox for ``recipient`` and did not
    get delivered, and that file, to send again as it is; None when there is none, or
    when a newer version of the report superseded it (the recipient then gets the newer
    one, never the older after it)."""
    row = by_key.get((report, recipient_key(recipient)))
    if row is None or row.status not in RESENDABLE or not row.artifact:
        return None
    if row.version is None or row.version != latest.get(report):
        return None
    path = Path(row.artifact)
    return (row, path) if outbox.holds(path) else None


def record_written(ledger: Ledger, mail: MailFile, period: str) -> None:
    """A message on disk is recorded at once: a crash after this resends that very file."""
    _mark_file(ledger, mail, period, "rendered")


def _mark_file(ledger: Ledger, mail: MailFile, period: str, status: str) -> None:
    """Mark every row of ``mail`` with its file, Message-ID and versions, so a later run
    can resend it, and knows what it carries."""
    ledger.mark(
        mail.reports,
        period,
        mail.recipients,
        status,
        message_id=mail.message_id,
        artifact=str(mail.path),
        message=mail.kinds,
        versions=mail.versions,
    )


def stored_mails(
    pending: Mapping[str, list[str]],
    rows: Sequence[Delivery],
    latest: Mapping[str, int],
    outbox: Outbox,
    owners_of: Mapping[str, Sequence[str]],
) -> list[MailFile]:
    """Messages a previous run wrote but did not get confirmed, to send again as they are.

    A pending (report, owner) whose row points at such a message gets that very file
    again, Message-ID and all: a copy the server may already have delivered is then
    recognisably the same message. A message is used only when it is still due as a
    whole: every report it carries for that owner is pending and at its newest version,
    and everyone its ``To:`` names is still an owner of those reports. Owners without
    one are left to a new build.
    """
    by_key = {(r.report, r.recipient): r for r in rows}
    due = {(report, recipient_key(o)) for report, owners in pending.items() for o in owners}
    carried: dict[tuple[str, str], set[str]] = {}  # (artifact, recipient) -> reports
    for row in rows:
        if row.artifact and row.message == REPORT:
            carried.setdefault((row.artifact, row.recipient), set()).add(row.report)
    reports: dict[Path, set[str]] = {}
    owners: dict[Path, list[str]] = {}
    ids: dict[Path, str] = {}
    versions: dict[Path, dict[str, int]] = {}
    for report, pending_owners in pending.items():
        for owner in pending_owners:
            stored = stored_row(by_key, report, owner, latest, outbox)
            if stored is None:
                continue
            row, path = stored
            with_it = carried.get((row.artifact or "", row.recipient), set())
            if any(
                (other, row.recipient) not in due
                or stored_row(by_key, other, owner, latest, outbox) is None
                for other in with_it
            ):
                continue
            if not _still_due(path, row, owner, with_it, owners_of):
                continue
            reports.setdefault(path, set()).update(with_it)
            # One mailbox is one envelope recipient, however its owners' entries spell it.
            if row.recipient not in {recipient_key(o) for o in owners.setdefault(path, [])}:
                owners[path].append(owner)
            ids[path] = row.message_id or str(read_message(path)["Message-ID"])
            for other in with_it:
                version = by_key[(other, row.recipient)].version
                if version is not None:
                    versions.setdefault(path, {})[other] = version
    return [
        MailFile(sorted(reports[p]), owners[p], p, ids[p], versions=versions.get(p, {}))
        for p in reports
    ]


def _still_due(
    path: Path,
    row: Delivery,
    owner: str,
    reports: set[str],
    owners_of: Mapping[str, Sequence[str]],
) -> bool:
    """Whether a stored message can go to ``owner`` as it is: it is the message the ledger
    recorded (its Message-ID), it names ``owner``, and everyone it names is still an owner
    of each report in it (an owner removed since must not be named in what the others
    receive). Otherwise the owner gets a new build."""
    try:
        message = read_message(path)
    except OSError:
        return False
    if any(part.defects for part in message.walk()):
        return False  # cut short or mangled: not the message as written
    if row.message_id and str(message.get("Message-ID", "")).strip() != row.message_id:
        return False  # not the file the ledger wrote: damaged or replaced
    named = {a.lower() for _, a in email.utils.getaddresses(message.get_all("To", []))}
    if recipient_key(owner) not in named:
        return False
    return all(named <= {recipient_key(o) for o in owners_of.get(report, ())} for report in reports)
