"""Deciding what a run does for each report, before any request: claim, skip or resend.

The ledger is settled first (what dead runs left), then each report's owners
are claimed in one transaction: owners who have it are skipped, owners another
live run holds are left to it, and a report whose every pending owner and chat
channel has a message a previous run wrote to the outbox, of the report's
newest version, is sent from those files instead of being rebuilt. A report
that is rebuilt becomes a new version, which supersedes every pending message
of an older one.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from reporter.config import Config, ReportConfig
from reporter.jobs.build import Progress, RunOptions
from reporter.jobs.chat import stored_chat_files
from reporter.jobs.deliver import stored_mails
from reporter.jobs.records import ChatFile, MailFile
from reporter.ledger import Ledger, recipient_key
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
    versions: dict[str, int] = field(default_factory=dict)  # report -> the version it builds


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
        ledger.rename(config.renames)
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

    if ledger is not None and not options.force:
        latest = ledger.latest_versions(period)
        owners_of = {r.name: [str(o) for o in r.owners] for r in reports}
        plan.stored = stored_mails(plan.pending, rows, latest, ledger.outbox, owners_of)
        plan.stored_chat = stored_chat_files(plan.chat, rows, latest, ledger.outbox)
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
                plan.versions[name] = ledger.new_version(name, period)
    return plan
