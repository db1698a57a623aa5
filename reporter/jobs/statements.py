"""Personal statements through the outbox and the ledger: once per (user, period).

After a run's reports are built, each report with statements leaves one
``ReportStatements``; they are gathered into one statement per mailbox, and
each mailbox that has not had one this period (``--force``: every one) is
claimed in the ledger, under every report its statement covers, before
anything is written. A statement is written to the outbox named by what it
says: an unchanged statement is the same file and Message-ID on every run (a
copy a mail server already took is dropped by the mailbox), a changed one is
a new message and the old file is never sent. All of them go out over one
SMTP connection (``SmtpSender.session``).

Statements are held back, all of them, when a report with statements could not
be fetched in this run: a user in that report and another would otherwise get
a statement without it, and a statement is sent only once a period.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reporter.config import Config
from reporter.jobs.build import RunOptions
from reporter.jobs.deliver import deliver, send_preview
from reporter.jobs.messages import mail_path
from reporter.jobs.records import MailFile, Sent
from reporter.ledger import DELIVERED, Ledger
from reporter.mail import Attachment, build_message, message_id
from reporter.outbox import identity, write_message
from reporter.periods import Period, last_complete_day, matching_span
from reporter.printer import PrintJob, print_job
from reporter.render import Formatter, render_template, translations
from reporter.statements import PREVIEW_STATEMENTS, STATEMENT, ReportStatements, Statement, gather
from reporter.usage import pct_change, per_use

log = logging.getLogger(__name__)


@dataclass
class Tally:
    """What one report's statements came to in this run."""

    sent: int = 0
    failed: int = 0
    unconfirmed: int = 0
    skipped: int = 0  # outside the domains, opted out, not an address
    already: int = 0  # had theirs this period
    taken: int = 0  # another live run is sending them
    written: int = 0  # dry run: written, not sent
    previewed: int = 0
    held: str = ""  # why none were sent, when they were held back

    def text(self) -> str:
        """``statements: 41 sent, 2 skipped``: what the summary shows."""
        if self.held:
            return f"statements held back: {self.held}"
        parts = [
            f"{count} {label}"
            for count, label in (
                (self.sent, "sent"),
                (self.written, "written"),
                (self.previewed, "previewed"),
                (self.failed, "FAILED"),
                (self.unconfirmed, "UNCONFIRMED"),
                (self.already, "already sent"),
                (self.taken, "taken by another run"),
                (self.skipped, "skipped"),
            )
            if count
        ]
        return "statements: " + (", ".join(parts) if parts else "nobody had usage")

    @property
    def ok(self) -> bool:
        return not (self.failed or self.unconfirmed or self.held)


@dataclass
class StatementRun:
    tallies: dict[str, Tally] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)


def statement_context(
    statement: Statement,
    period: Period,
    today: dt.date,
    fmt: Formatter,
    gettext: Callable[[str], str],
) -> dict[str, Any]:
    """What a statement's templates show: its own figures, formatted; pure."""
    before = period.previous()
    if period.is_complete(today):
        compared = (
            fmt.span(before.start, before.end, within=period)
            if period.is_cycle
            else fmt.period(before, gettext)
        )
    else:
        through = last_complete_day(period, today)
        compared = fmt.span(*matching_span(period, before, through), within=period)
    parts = []
    for part in statement.parts:
        currency = part.currency
        tools = [
            {
                "tool": line.tool,
                "uses": fmt.number(line.uses),
                "credits": fmt.number(line.credits),
                "per_use": fmt.per_use(per_use(line.credits, line.uses)),
                "change": fmt.change(pct_change(line.credits, line.previous_credits)),
                "previous": fmt.number(line.previous_credits),
                "amount": fmt.money(line.amount, currency) if currency else None,
            }
            for line in part.tools
        ]
        change = pct_change(part.credits, part.previous_credits)
        parts.append(
            {
                "title": part.title,
                "credits": fmt.number(part.credits),
                "uses": fmt.number(part.uses),
                "per_use": fmt.per_use(per_use(part.credits, part.uses)),
                "previous_per_use": fmt.per_use(per_use(part.previous_credits, part.previous_uses)),
                "change": fmt.change(change) if change is not None else None,
                "previous": fmt.number(part.previous_credits),
                "amount": fmt.money(part.amount, currency) if currency else None,
                "tools": tools,
                "team": (fmt.number(part.team_credits) if part.team_credits is not None else None),
                "team_amount": (
                    fmt.money(part.team_amount, currency)
                    if currency and part.team_amount is not None
                    else None
                ),
            }
        )
    return {
        "period_name": fmt.period(period, gettext),
        "compared": compared,
        "parts": parts,
        "priced": any(p["amount"] for p in parts),
    }


def compose_statement(
    statement: Statement,
    config: Config,
    options: RunOptions,
    *,
    to: str | None = None,
) -> MailFile:
    """One statement's message for ``to`` (the user; a ``--to`` address for previews),
    with its copy under ``--out`` and, for a delivery, its outbox file."""
    period = options.period
    locale = statement.locale
    catalog = translations(options.templates_dir, locale)
    fmt = Formatter(locale)
    context = statement_context(statement, period, options.now.date(), fmt, catalog.gettext)
    subject = catalog.gettext("Your Magnific credit usage, %(period)s") % {
        "period": context["period_name"]
    }
    if options.preview_to:
        subject = catalog.gettext("Preview: %(subject)s") % {"subject": subject}
    context["subject"] = subject
    recipient = to or statement.address
    digest = statement.digest(period.key)
    variant = f"statement {digest}"
    if options.preview_to:
        variant += f" preview {options.now.isoformat()}"
    msg_id = message_id(
        statement.reports, period.key, [recipient], config.email.from_, variant=variant
    )
    stem = f"statement-{identity(statement.mailbox, period.key)}"
    folder = options.out_dir / period.key / "statements"
    attachments = []
    if statement.pdf:
        page = render_template(
            options.templates_dir, "statement.html.j2", locale, {**context, "for_pdf": True}
        )
        pdf = print_job(
            PrintJob(page, options.templates_dir, folder / f"{stem}.pdf", identifier=stem)
        )
        attachments.append(
            Attachment(f"credit-usage-{period.key}.pdf", pdf.read_bytes(), "application/pdf")
        )
    text = render_template(options.templates_dir, "statement.txt.j2", locale, context)
    html = render_template(
        options.templates_dir, "statement.html.j2", locale, {**context, "for_pdf": False}
    )
    message = build_message(
        sender=config.email.from_,
        recipients=[recipient],
        subject=subject,
        text=text,
        html=html,
        attachments=attachments,
        msg_id=msg_id,
        date=options.now,
        reply_to=config.email.reply_to,
    )
    path = write_message(
        options.outbox,
        mail_path(options, f"statements/{stem}"),
        period.key,
        f"{identity(msg_id)}.eml",
        bytes(message),
    )
    return MailFile(statement.reports, [recipient], path, msg_id, kinds=(STATEMENT,))


def send_statements(
    sets: Sequence[ReportStatements],
    held: Sequence[str],
    config: Config,
    options: RunOptions,
    *,
    ledger: Ledger | None,
    sender: Any,
    progress: Callable[[str], None] = lambda line: log.info("%s", line),
) -> StatementRun:
    """Statements for the reports in ``sets`` (in run order); ``held``: reports with
    statements whose data this run could not get, which holds every
    statement back. ``ledger`` None: a dry run or a preview. ``sender`` None: write only."""
    result = StatementRun({s.report: Tally(skipped=s.skipped_count) for s in sets})
    for name in held:
        result.tallies[name] = Tally(held="its usage could not be fetched in this run")
    if held:
        names = ", ".join(held)
        for tally in result.tallies.values():
            tally.held = tally.held or f"run again once {names} can be fetched"
        return result
    statements = gather(sets)
    period = options.period.key
    if options.preview_to:
        for statement in statements[:PREVIEW_STATEMENTS]:
            mail = compose_statement(statement, config, options, to=options.preview_to)
            result.files.append(mail.path)
            sent = send_preview(mail, sender) if sender is not None else Sent()
            for name in mail.reports:
                result.tallies[name].previewed += bool(sent.delivered)
                result.tallies[name].failed += bool(sent.failed)
        return result
    if ledger is None or sender is None:
        for statement in statements:
            mail = compose_statement(statement, config, options)
            result.files.append(mail.path)
            for name in mail.reports:
                result.tallies[name].written += 1
        return result
    _record_skipped(ledger, sets, period)
    due = _claim(statements, ledger, period, options.force, result.tallies)
    mails = []
    for statement in due:
        mail = compose_statement(statement, config, options)
        ledger.mark(
            mail.reports,
            period,
            mail.recipients,
            "rendered",
            message_id=mail.message_id,
            artifact=str(mail.path),
            message=STATEMENT,
        )
        mails.append(mail)
    progress(f"statements: sending {len(mails)}")
    with sender.session():
        for mail in mails:
            sent = deliver(mail, sender, ledger, period)
            for name in mail.reports:
                tally = result.tallies[name]
                tally.sent += bool(sent.delivered)
                tally.failed += bool(sent.failed)
                tally.unconfirmed += bool(sent.unconfirmed)
    return result


def _claim(
    statements: Sequence[Statement],
    ledger: Ledger,
    period: str,
    force: bool,
    tallies: dict[str, Tally],
) -> list[Statement]:
    """The statements this run sends: a mailbox that had one this period (under any
    report) gets no other, unless ``force``; one another live run holds is left to it.
    Rows a statement would cover are claimed under each of its reports at once."""
    had = (
        set()
        if force
        else {
            row.recipient
            for row in ledger.rows(period, message=STATEMENT)
            if row.status in DELIVERED
        }
    )
    fresh = [s for s in statements if s.mailbox not in had]
    for statement in statements:
        if statement.mailbox in had:
            for name in statement.reports:
                tallies[name].already += 1
    by_report: dict[str, list[str]] = {}
    for statement in fresh:
        for name in statement.reports:
            by_report.setdefault(name, []).append(statement.mailbox)
    mine: dict[str, set[str]] = {}
    blocked: set[str] = set()
    for name, mailboxes in by_report.items():
        claim = ledger.claim(name, period, mailboxes, force=force, message=STATEMENT)
        mine[name] = set(claim.mine)
        blocked |= set(claim.taken) | set(claim.done)
    due = []
    for statement in fresh:
        if statement.mailbox in blocked or any(
            statement.mailbox not in mine[n] for n in statement.reports
        ):
            for name in statement.reports:
                tallies[name].taken += 1
            claimed = [n for n in statement.reports if statement.mailbox in mine[n]]
            if claimed:  # not ours to send after all: leave nothing in flight
                ledger.mark(
                    claimed,
                    period,
                    [statement.mailbox],
                    "failed",
                    error="another run was sending this user's statement; the next run"
                    " checks again",
                    message=STATEMENT,
                )
            continue
        due.append(statement)
    return due


def _record_skipped(ledger: Ledger, sets: Sequence[ReportStatements], period: str) -> None:
    """Users left out (outside the domains, opted out, not an address) as ``skipped``
    rows, so ``history`` counts them; a later run sends to one that now qualifies."""
    for report in sets:
        for why, who in report.skipped.items():
            rows = [w for w in who if w.strip()]
            if rows:
                ledger.mark([report.report], period, rows, "skipped", error=why, message=STATEMENT)
