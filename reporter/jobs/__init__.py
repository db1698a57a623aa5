"""One run: plan, build, deliver, with each report isolated.

The order is what makes a run safe to repeat: the ledger is settled and each
report's owners claimed first (``plan``); a report every owner already has is
not even fetched; every artefact (PDF, CSV, message) is on disk before anything
is sent (``pipeline``, ``build``, ``messages``), each message immutable in the
outbox (``reporter.outbox``); and a message that was written but not confirmed
is sent from that file on a later run, unchanged, unless a newer version of its
report superseded it (``plan``, ``deliver``).
"""

from __future__ import annotations

import dataclasses
import logging
import tempfile
from collections.abc import Sequence
from pathlib import Path

from reporter.chat.post import ChatSender
from reporter.config import Config, ReportConfig
from reporter.errors import ReporterError
from reporter.files import write_atomic
from reporter.jobs.build import (
    BuiltReport,
    Progress,
    RunOptions,
    compose_report,
    fetch_tables,
    quiet_progress,
    render_report,
)
from reporter.jobs.chat import UNCONFIRMED_DETAIL as CHAT_UNCONFIRMED
from reporter.jobs.chat import deliver_chat, record_payload
from reporter.jobs.deliver import UNCONFIRMED_DETAIL, deliver, record_written, send_preview
from reporter.jobs.messages import per_owner_mails
from reporter.jobs.pipeline import build_all, fail
from reporter.jobs.plan import Plan, plan_run, plural, taken_detail
from reporter.jobs.records import ChatFile, MailFile, Sent, Written
from reporter.jobs.statements import send_statements
from reporter.ledger import Ledger
from reporter.magnific import MagnificClient
from reporter.mail import SmtpSender
from reporter.memory import release_freed
from reporter.statement_lines import report_statements
from reporter.statements import ReportStatements
from reporter.summary import Outcome
from reporter.usage import ReportTables

__all__ = [
    "BuiltReport",
    "Progress",
    "RunOptions",
    "compose_report",
    "fetch_tables",
    "render_report",
    "run",
    "write_atomic",
]

log = logging.getLogger(__name__)


def run(
    config: Config,
    reports: Sequence[ReportConfig],
    options: RunOptions,
    *,
    client: MagnificClient,
    sender: SmtpSender | None,
    ledger: Ledger | None,
    progress: Progress = quiet_progress,
    max_in_flight: int = 4,
    chat: ChatSender | None = None,
) -> list[Outcome]:
    """Build and deliver ``reports``; a failure in one never stops the others, and a chat
    channel that fails never stops email. ``chat`` None (a dry run) posts nothing."""
    period = options.period.key
    if options.dry_run or options.preview_to:
        ledger = None
    elif ledger is not None:
        options = dataclasses.replace(options, outbox_dir=ledger.outbox.root)
    plan = plan_run(config, reports, options, ledger, progress)
    outcomes = plan.outcomes

    new_mails: list[MailFile] = []
    chat_files: list[ChatFile] = []
    # Personal statements: cut from each report's tables as they arrive.
    policies = {r.name: p for r in reports if (p := config.statements_for(r)) is not None}
    statement_sets: dict[str, ReportStatements] = {}

    def fetched(report: ReportConfig, tables: ReportTables) -> int | None:
        policy = policies.get(report.name)
        if policy is None:
            return None
        cut = report_statements(
            report.name,
            report.display_title,
            config.locale_for(report),
            tables,
            config.prices_for(report),
            policy,
        )
        statement_sets[report.name] = cut
        release_freed()  # the cut's intermediate frames
        return len(cut.parts)

    # Reports not rebuilt (every owner has them, or gets the message a previous run
    # wrote) are still fetched when they have statements: those may be due.
    fetch_only = [
        r
        for r in reports
        if r.name in policies
        and r not in plan.to_build
        and outcomes[r.name].status in ("already_delivered", "pending")
    ]

    def written(item: Written) -> None:
        outcome = outcomes[item.report]
        outcome.files = [item.pdf_path, item.csv_path]
        outcome.credits = item.credits
        outcome.amount = item.amount
        if ledger is not None and item.version is not None:
            ledger.set_version_credits(item.report, period, item.version, item.credits)
        for mail in item.mails:
            record(mail)
        for file in item.chat:
            if file.recipient not in plan.chat.get(item.report, []):
                continue  # posted before, or another run's
            chat_files.append(file)
            if file.path not in outcome.files:
                outcome.files.append(file.path)
            if ledger is not None:
                record_payload(ledger, file, period)

    def record(mail: MailFile) -> None:
        """A message on disk is recorded at once: a crash after this resends that file."""
        new_mails.append(mail)
        for name in mail.reports:
            outcomes[name].files.append(mail.path)
        if ledger is not None:
            record_written(ledger, mail, period)

    one_per_owner = config.email.one_mail_per_owner
    with tempfile.TemporaryDirectory(prefix="reporter-pieces-") as pieces:
        done = build_all(
            [*plan.to_build, *fetch_only],
            plan.pending,
            config,
            options,
            client,
            outcomes,
            progress,
            max_in_flight=max_in_flight,
            pieces_dir=Path(pieces) if one_per_owner else None,
            on_written=written,
            versions=plan.versions,
            on_fetched=fetched,
            fetch_only={r.name for r in fetch_only},
        )
        if one_per_owner:
            try:
                for mail in per_owner_mails(done, plan.pending, config, options):
                    record(mail)
            except ReporterError as exc:
                for item in done:
                    fail(outcomes[item.report], exc, progress)

    def statements(settled: Sequence[str]) -> None:
        if not policies:
            return
        held = [name for name in policies if name not in statement_sets]
        sets = [statement_sets[r.name] for r in reports if r.name in statement_sets]
        done = send_statements(
            sets,
            held,
            config,
            options,
            ledger=ledger,
            sender=None if options.dry_run else sender,
            progress=lambda line: log.info("%s", line),
        )
        for name, tally in done.tallies.items():
            outcome = outcomes[name]
            outcome.statements = tally.text()
            if not tally.ok and outcome.ok and outcome.status != "taken":
                outcome.status = "partial"
            if name not in settled:  # its final line was printed before: this follows it
                progress(name, outcome.line(), done=True)
        if done.files:  # one entry for the folder: a big team's are thousands of files
            first = next(iter(done.tallies))
            outcomes[first].files.append(options.out_dir / options.period.key / "statements")

    if options.dry_run or sender is None:
        statements([n for n, o in outcomes.items() if o.status == "pending"])
        for name in [n for m in new_mails for n in m.reports] + [f.report for f in chat_files]:
            if outcomes[name].status == "pending":
                outcomes[name].status = "written"
                outcomes[name].detail = "dry run: message written, not sent"
                progress(name, outcomes[name].line(), done=True)
        return [outcomes[r.name] for r in reports]

    results: dict[str, Sent] = {}
    # A stored message goes out even when this run could not rebuild the same report for
    # its other owners: it does not depend on this run's data.
    for mail in [*plan.stored, *new_mails]:
        sent = (
            deliver(mail, sender, ledger, period)
            if ledger is not None
            else send_preview(mail, sender)
        )
        for name in mail.reports:
            results.setdefault(name, Sent()).add(sent)
            if sent.failed:
                progress(name, "not delivered to " + ", ".join(sent.failed))
            if sent.unconfirmed:
                progress(name, "not confirmed by the server for " + ", ".join(sent.unconfirmed))
            if sent.delivered:
                progress(name, "delivered to " + ", ".join(sent.delivered))
            if outcomes[name].credits is None and ledger is not None and name in mail.versions:
                # Sent as a previous run wrote it: the total is that version's.
                outcomes[name].credits = ledger.version_credits(name, period, mail.versions[name])
    # After email: a channel that fails or hangs never holds a report's mail back.
    posted: dict[str, Sent] = {}
    for file in plan.stored_chat:
        if file.path not in outcomes[file.report].files:
            outcomes[file.report].files.append(file.path)
    for file in [*plan.stored_chat, *chat_files]:
        if chat is None or ledger is None:
            break
        result = deliver_chat(file, chat, ledger, period)
        posted.setdefault(file.report, Sent()).add(result)
        for recipient, why in result.failed.items():
            progress(file.report, f"not posted to {recipient}: {why}")
        if result.unconfirmed:
            progress(file.report, f"not confirmed by {file.recipient}")
        if result.delivered:
            progress(file.report, f"posted to {file.recipient}")
    settled = [name for name, outcome in outcomes.items() if outcome.status == "pending"]
    for name in settled:
        _settle(outcomes[name], results.get(name, Sent()), options, plan, name, posted.get(name))
    statements(settled)
    for name in settled:
        progress(name, outcomes[name].line(), done=True)
    return [outcomes[r.name] for r in reports]


def _settle(
    outcome: Outcome,
    sent: Sent,
    options: RunOptions,
    plan: Plan,
    name: str,
    posted: Sent | None = None,
) -> None:
    """A report's final status from what its mails (and chat posts) achieved; only "sent"
    is delivered."""
    posted = posted or Sent()
    outcome.recipients = sent.delivered + posted.delivered
    problems = [f"{r}: {why}" for r, why in {**sent.failed, **posted.failed}.items()]
    if sent.unconfirmed:
        problems.append(f"{', '.join(sent.unconfirmed)}: {UNCONFIRMED_DETAIL}")
    if posted.unconfirmed:
        problems.append(f"{', '.join(posted.unconfirmed)}: {CHAT_UNCONFIRMED}")
    if problems:
        if outcome.recipients:
            outcome.status = "partial"
        else:
            outcome.status = "failed" if sent.failed or posted.failed else "unconfirmed"
        outcome.detail = "; ".join(problems)
        return
    if options.preview_to:
        outcome.status = "previewed"
        outcome.detail = f"sent to {options.preview_to} only; owners were not sent it"
        return
    outcome.status = "delivered"
    outcome.detail = f"sent to {plural(len(sent.delivered), 'owner')}"
    if posted.delivered:
        posts = f"posted to {', '.join(posted.delivered)}"
        outcome.detail = f"{outcome.detail}, {posts}" if sent.delivered else posts
    if name in plan.resent:
        outcome.detail += ", the message a previous run wrote"
    if plan.taken.get(name):
        outcome.detail += f"; {taken_detail(plan.taken[name])}"
