"""Chat beside email: a report's (or alert's) payloads on disk, and posting them
through the ledger's marks.

As with email, each payload is written first (``<name>.slack.json`` beside the
``.eml``) and read back to be posted, so ``--dry-run`` shows exactly what would
go out and the ledger's ``artifact`` points at it. A post that failed or was never
confirmed is posted again from that file, as it was (``stored_chat_files``): the
channel gets what the first attempt tried to post, not a rebuild from newer data.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reporter.chat.message import ChatMessage, report_message
from reporter.chat.post import ChatPostError, ChatSender
from reporter.chat.slack import slack_payload
from reporter.chat.teams import teams_payload
from reporter.config import Config
from reporter.files import write_atomic
from reporter.jobs.build import BuiltReport, RunOptions
from reporter.jobs.deliver import Sent, stored_row
from reporter.ledger import Delivery, Ledger
from reporter.render import translations

log = logging.getLogger(__name__)

UNCONFIRMED_DETAIL = (
    "the connection dropped after the message was sent, before the platform answered;"
    " the next run posts it again"
)


@dataclass(frozen=True, slots=True)
class ChatFile:
    """One channel's payload on disk, ready to post: small and picklable."""

    report: str
    recipient: str  # slack:<VARIABLE>, teams:<VARIABLE> or slack-upload:<channel>
    path: Path  # the JSON payload
    pdf_path: Path | None = None  # what a slack-upload sends
    kinds: tuple[str, ...] = ("report",)  # the ledger's message rows it delivers


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
) -> list[ChatFile]:
    """``<stem>.slack.json`` and ``<stem>.teams.json`` in ``folder``, one per platform used;
    a PDF upload reuses the Slack payload (its ``text`` is the file's comment)."""
    files = []
    written: set[Path] = set()
    for recipient in recipients:
        path = platform_file(folder, stem, recipient)
        if path not in written:
            body = json.dumps(payload_for(recipient, message), ensure_ascii=False, indent=2)
            write_atomic(path, body.encode() + b"\n")
            written.add(path)
        upload = recipient.startswith("slack-upload:")
        files.append(ChatFile(report, recipient, path, pdf_path if upload else None, kinds))
    return files


def deliver_chat(file: ChatFile, sender: ChatSender, ledger: Ledger, period: str) -> Sent:
    """Post one payload with the ledger's marks: ``sending``, ``committing`` just before
    the request that may make it visible, then ``sent``, ``failed`` or ``unconfirmed``."""
    reports, recipients, kind = [file.report], [file.recipient], file.kinds
    ledger.mark(reports, period, recipients, "sending", artifact=str(file.path), message=kind)
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
    chat: Mapping[str, Sequence[str]], rows: Sequence[Delivery]
) -> list[ChatFile]:
    """The payloads a previous run wrote for these channels (report -> channels) and did
    not get posted, to post again as they are; a channel whose file is gone, or is no
    longer JSON, or whose upload lost its PDF, is left to a new build."""
    by_key = {(r.report, r.recipient): r for r in rows}
    files = []
    for report, channels in chat.items():
        for channel in channels:
            stored = stored_row(by_key, report, channel)
            if stored is None:
                continue
            path = Path(stored[1])
            try:
                if not isinstance(json.loads(path.read_text(encoding="utf-8")), dict):
                    continue
            except (OSError, ValueError):
                continue
            pdf = None
            if channel.startswith("slack-upload:"):
                pdf = path.with_name(f"{report}.pdf")
                if not pdf.is_file():
                    continue
            files.append(ChatFile(report, channel, path, pdf))
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
    kinds: tuple[str, ...] = ("report",),
) -> list[ChatFile]:
    """The report's payloads for each of its channels (or ``channels``), written beside
    its ``.eml``; none for a preview (``--to``), which never posts to chat."""
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
        name,
        pdf_path=built.pdf_path,
        kinds=kinds,
    )
