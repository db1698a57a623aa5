"""Chat beside email: a report's (or alert's) payloads on disk, and posting them
through the ledger's marks.

As with email, each payload is written first (into the outbox, named by its
content, with a copy ``<name>.slack.json`` beside the ``.eml`` under ``--out``)
and read back to be posted; ``--dry-run`` writes only the copy, which the outbox
never reads. A post that failed or was never confirmed is posted again from the
outbox file, as it was (``stored_chat_files``), unless a newer version of the
report superseded it.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from reporter.chat.message import ChatMessage, report_message
from reporter.chat.post import ChatPostError, ChatSender
from reporter.chat.slack import slack_payload
from reporter.chat.teams import teams_payload
from reporter.config import Config
from reporter.files import write_atomic
from reporter.jobs.build import BuiltReport, RunOptions
from reporter.jobs.deliver import stored_row
from reporter.jobs.records import ChatFile, Sent
from reporter.ledger import REPORT, Delivery, Ledger
from reporter.outbox import Outbox, identity
from reporter.render import translations

log = logging.getLogger(__name__)

UNCONFIRMED_DETAIL = (
    "the post was sent but the answer did not say whether the platform took it (no answer,"
    " or a 500, 502 or 504); the next run posts it again"
)


def payload_for(recipient: str, message: ChatMessage) -> dict[str, Any]:
    """The body a channel gets; an upload's comment is the Slack message's fallback text."""
    if recipient.startswith("teams:"):
        return teams_payload(message)
    return slack_payload(message)


def write_chat_files(
    report: str,
    recipients: Sequence[str],
    message: ChatMessage,
    folder: Path,
    stem: str,
    *,
    pdf_path: Path | None = None,
    kinds: tuple[str, ...] = ("report",),
    outbox: Outbox | None = None,
    period: str = "",
    version: int | None = None,
) -> list[ChatFile]:
    """``<stem>.slack.json`` and ``<stem>.teams.json`` in ``folder``, one per platform used,
    and with ``outbox`` each channel's payload there, named by its content (a PDF upload
    with its PDF beside it, so a later run uploads the very file); an upload's comment
    is the Slack message's fallback text."""
    files = []
    bodies: dict[Path, bytes] = {}
    for recipient in recipients:
        copy = platform_file(folder, stem, recipient)
        if copy not in bodies:
            body = json.dumps(payload_for(recipient, message), ensure_ascii=False, indent=2)
            bodies[copy] = body.encode() + b"\n"
            write_atomic(copy, bodies[copy])
        upload = pdf_path if recipient.startswith("slack-upload:") else None
        path = copy
        if outbox is not None:
            pdf = upload.read_bytes() if upload is not None else b""
            name = payload_name(report, period, kinds, version, recipient, bodies[copy] + pdf)
            path = outbox.put(period, f"{name}.json", bodies[copy])
            if upload is not None:  # named as the channel shows it
                upload = outbox.put(period, upload_name(name, report), pdf)
        files.append(ChatFile(report, recipient, path, upload, kinds, version))
    return files


def period_of(path: Path) -> str:
    """The period an outbox file belongs to: its folder's name."""
    return path.parent.name


def upload_name(stem: str, report: str) -> str:
    """An upload's PDF in the outbox: in a folder named as its payload, under the name
    the channel shows (``<report>.pdf``)."""
    return f"{stem}/{report}.pdf"


def payload_name(
    report: str,
    period: str,
    kinds: Sequence[str],
    version: int | None,
    recipient: str,
    content: bytes,
) -> str:
    """A payload's outbox name: what it is for (report, period, kinds, version, channel) and
    a digest of what it says, so a payload changed on disk no longer matches its name and
    a rebuild (a new version) never lands on an old file."""
    digest = hashlib.sha256(content).hexdigest()
    return identity(report, period, *kinds, str(version or ""), recipient, digest)


def record_payload(ledger: Ledger, file: ChatFile, period: str) -> None:
    """A payload on disk is recorded at once, with its file and version: a crash after
    this posts that very file (``record_written`` for email)."""
    ledger.mark(
        [file.report],
        period,
        [file.recipient],
        "rendered",
        artifact=str(file.path),
        message=file.kinds,
        versions=file.versions,
    )


def deliver_chat(file: ChatFile, sender: ChatSender, ledger: Ledger, period: str) -> Sent:
    """Post one payload with the ledger's marks: ``sending``, ``committing`` just before
    the request that may make it visible, then ``sent``, ``failed`` or ``unconfirmed``."""
    reports, recipients, kind = [file.report], [file.recipient], file.kinds
    ledger.mark(
        reports,
        period,
        recipients,
        "sending",
        artifact=str(file.path),
        message=kind,
        versions=file.versions,
    )
    try:
        payload = json.loads(file.path.read_text(encoding="utf-8"))
        outcome = sender.post(
            file.recipient,
            payload,
            pdf=file.pdf_path,
            on_commit=lambda: ledger.mark(reports, period, recipients, "committing", message=kind),
        )
    except ChatPostError as exc:
        # The hint goes with it: a chat failure is a line in the summary, not an Error line.
        why = f"{exc}; {exc.hint}" if exc.hint else str(exc)
        ledger.mark(reports, period, recipients, "failed", error=why, message=kind)
        return Sent(failed={file.recipient: why})
    except (OSError, ValueError) as exc:  # the payload file went missing or was damaged
        why = f"cannot read {file.path.name}: {exc}"
        ledger.mark(reports, period, recipients, "failed", error=why, message=kind)
        return Sent(failed={file.recipient: why})
    if outcome == "unconfirmed":
        ledger.mark(
            reports, period, recipients, "unconfirmed", error=UNCONFIRMED_DETAIL, message=kind
        )
        return Sent(unconfirmed=[file.recipient])
    ledger.mark(reports, period, recipients, "sent", message=kind)
    return Sent(delivered=[file.recipient])


def stored_chat_files(
    chat: Mapping[str, Sequence[str]],
    rows: Sequence[Delivery],
    latest: Mapping[str, int],
    outbox: Outbox,
) -> list[ChatFile]:
    """The payloads a previous run wrote to the outbox for these channels (report ->
    channels) and did not get posted, to post again as they are. A channel whose
    payload a newer version of the report superseded, or whose file is gone, is no
    longer JSON, or lost its upload's PDF, is left to a new build."""
    by_key = {(r.report, r.recipient): r for r in rows}
    files = []
    for report, channels in chat.items():
        for channel in channels:
            stored = stored_row(by_key, report, channel, latest, outbox)
            if stored is None:
                continue
            row, path = stored
            pdf = None
            try:
                body = path.read_bytes()
                if not isinstance(json.loads(body), dict):
                    continue
                if channel.startswith("slack-upload:"):
                    pdf = path.parent / upload_name(path.stem, report)
                    body += pdf.read_bytes()
            except (OSError, ValueError):
                continue
            # Named by its content when written: a file changed since is not posted.
            name = payload_name(report, period_of(path), (REPORT,), row.version, channel, body)
            if path.stem != name:
                continue
            files.append(ChatFile(report, channel, path, pdf, version=row.version))
    return files


def platform_file(folder: Path, stem: str, recipient: str) -> Path:
    """Where a channel's payload is written: one file per platform, shared by a Slack
    webhook and a Slack upload."""
    platform = "teams" if recipient.startswith("teams:") else "slack"
    return folder / f"{stem}.{platform}.json"


def report_chat_files(
    built: BuiltReport,
    config: Config,
    options: RunOptions,
    *,
    channels: Sequence[str] | None = None,
    version: int | None = None,
    stem: str | None = None,
) -> list[ChatFile]:
    """The report's payloads for each of its channels (or ``channels``), written beside
    its ``.eml`` (and into the outbox); none for a preview (``--to``), which never posts
    to chat."""
    if channels is None:
        channels = config.chat_channels_for(built.report)
    if not channels or options.preview_to:
        return []
    catalog = translations(options.templates_dir, built.locale)
    message = report_message(
        built.context, locale=built.locale, gettext=catalog.gettext, link=options.run_url
    )
    name = built.report.name
    return write_chat_files(
        name,
        channels,
        message,
        options.out_dir / options.period.key,
        stem or name,
        pdf_path=built.pdf_path,
        outbox=options.outbox,
        period=options.period.key,
        version=version,
    )
