"""Deciding what a run does for each report, before any request: claim, skip or resend.

The ledger is settled first (what dead runs left), then each report's owners
are claimed in one transaction: owners who have it are skipped, owners another
live run holds are left to it, and a report whose every pending owner and chat
channel has a message a previous run wrote is sent from those files instead of
being rebuilt.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from reporter.config import Config, ReportConfig
from reporter.files import write_atomic
from reporter.jobs.build import MailFile, Progress, RunOptions
from reporter.jobs.chat import ChatFile, platform_file, stored_chat_files
from reporter.jobs.deliver import record_written, stored_mails
from reporter.ledger import REPORT, Ledger, recipient_key
from reporter.summary import Outcome

log = logging.getLogger(__name__)


@dataclass
class Plan:
    outcomes: dict[str, Outcome]
    pending: dict[str, list[str]] = field(default_factory=dict)  # report -> owners to send to
    chat: dict[str, list[str]] = field(default_factory=dict)  # report -> channels to post to
    taken: dict[str, dict[str, int]] = field(default_factory=dict)  # report -> owner -> pid
    to_build: list[ReportConfig] = field(default_factory=list)
    stored: list[MailFile] = field(default_factory=list)  # written earlier, sent as they are
    stored_chat: list[ChatFile] = field(default_factory=list)  # likewise, posted as they are
    resent: set[str] = field(default_factory=set)  # reports sent from a stored message


def plural(count: int, word: str) -> str:
    return f"{count} {word}{'s' if count != 1 else ''}"


def taken_detail(taken: dict[str, int]) -> str:
    pids = ", ".join(sorted({str(p) for p in taken.values()}))
    return f"another run (pid {pids}) is sending it to {plural(len(taken), 'owner')}"


def plan_run(
    config: Config,
    reports: Sequence[ReportConfig],
    options: RunOptions,
    ledger: Ledger | None,
    progress: Progress,
) -> Plan:
    """Who gets what in this run; ``ledger`` is None for dry runs and previews."""
    plan = Plan({r.name: Outcome(r.name, "pending") for r in reports})
    period = options.period.key
    rows = []
    if ledger is not None:
        ledger.start_run()
        recovered = ledger.recover()
        if any(recovered.values()):
            log.warning("settled what an interrupted run left: %s", recovered)
        if not options.force:
            rows = ledger.rows(period)
    for report in reports:
        owners = [str(o) for o in report.owners]
        # A preview never posts to chat; channels are claimed like owners.
        channels = [] if options.preview_to else config.chat_channels_for(report)
        if options.preview_to:
            pending, chat = [options.preview_to], []
        elif ledger is None:
            pending, chat = owners, channels
        else:
            claim = ledger.claim(report.name, period, owners + channels, force=options.force)
            pending = [o for o in claim.mine if o in owners]
            chat = [c for c in claim.mine if c in channels]
            plan.taken[report.name] = claim.taken
        plan.pending[report.name] = pending
        plan.chat[report.name] = chat
        if not pending and not chat:
            taken = plan.taken.get(report.name)
            outcome = (
                Outcome(report.name, "taken", taken_detail(taken))
                if taken
                else Outcome(
                    report.name,
                    "already_delivered",
                    "every owner already has it",
                    recipients=owners,
                )
            )
            plan.outcomes[report.name] = outcome
            progress(report.name, outcome.line(), done=True)

    plan.stored = stored_mails(plan.pending, rows)
    plan.stored_chat = stored_chat_files(plan.chat, rows)
    again = {
        (name, recipient_key(owner))
        for mail in plan.stored
        for name in mail.reports
        for owner in mail.recipients
    }
    again |= {(f.report, f.recipient) for f in plan.stored_chat}
    for report in reports:
        name = report.name
        if not plan.pending[name] and not plan.chat[name]:
            continue
        rest = [o for o in plan.pending[name] if (name, recipient_key(o)) not in again]
        channels = [c for c in plan.chat[name] if (name, c) not in again]
        if len(rest) + len(channels) < len(plan.pending[name]) + len(plan.chat[name]):
            progress(name, "sending the message a previous run wrote")
            plan.resent.add(name)
        plan.pending[name] = rest
        plan.chat[name] = channels
        if rest or channels:
            plan.to_build.append(report)
    if ledger is not None:
        _keep_from_rebuild(plan, options, ledger)
    return plan


def _keep_from_rebuild(plan: Plan, options: RunOptions, ledger: Ledger) -> None:
    """A report rebuilt for its other recipients writes its message, payloads and PDF
    again, over the files a stored message or post is to send: such a message or payload
    is copied aside first (and the ledger pointed at the copy), and a stored upload, whose
    PDF is rewritten, is rebuilt."""
    rebuilt = {r.name for r in plan.to_build}
    mails = []
    for mail in plan.stored:
        # The rebuild writes ``<name>.eml`` (or an owner's mail) where the stored one is.
        if not rebuilt & set(mail.reports) or mail.path.name.endswith(".resend.eml"):
            mails.append(mail)
            continue
        try:
            aside = write_atomic(mail.path.with_suffix(".resend.eml"), mail.path.read_bytes())
        except OSError:
            mails.append(mail)  # left where it is: sent as the file now says
            continue
        moved = dataclasses.replace(mail, path=aside)
        record_written(ledger, moved, options.period.key)
        mails.append(moved)
    plan.stored = mails
    kept = []
    for file in plan.stored_chat:
        if file.report not in rebuilt:
            kept.append(file)
            continue
        if file.pdf_path is not None:
            plan.chat[file.report].append(file.recipient)
            continue
        folder = options.out_dir / options.period.key
        path = file.path
        if path.resolve() == platform_file(folder, file.report, file.recipient).resolve():
            try:
                path = write_atomic(path.with_suffix(".resend.json"), file.path.read_bytes())
            except OSError:
                plan.chat[file.report].append(file.recipient)
                continue
            ledger.mark(
                [file.report],
                options.period.key,
                [file.recipient],
                "rendered",
                artifact=str(path),
                message=REPORT,
            )
        kept.append(ChatFile(file.report, file.recipient, path))
    plan.stored_chat = kept
