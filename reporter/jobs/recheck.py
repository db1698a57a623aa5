"""``reporter run --recheck``: correct delivered reports that late usage data has changed.

Usage arrives late, so a report delivered on the 1st can be wrong by the 3rd.
The ledger knows, per recipient, which version of the report they hold and the
total it showed; a re-check fetches the period again and, when the total moved
by more than ``correction_threshold_percent`` from what a recipient holds,
builds a new version and sends that recipient a correction ("Corrected",
showing what they had and what is true now). A recipient who holds no version
yet (their first send failed) gets the new version as a plain report, never a
correction of a figure they never saw, and their pending older message is
superseded. A total that moves back and forth is compared each time with what
each recipient last received, so every move past the threshold is corrected.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence

from reporter.chat.post import ChatSender
from reporter.config import Config, ReportConfig
from reporter.errors import ApiAuthError
from reporter.jobs.build import Progress, RunOptions, fetch_tables, quiet_progress, render_report
from reporter.jobs.chat import deliver_chat, record_payload, report_chat_files
from reporter.jobs.deliver import deliver, record_written
from reporter.jobs.messages import compose_each, email_piece
from reporter.jobs.pipeline import as_reporter_error, fail
from reporter.jobs.plan import plural, taken_detail
from reporter.jobs.records import ChatFile, MailFile, Sent
from reporter.ledger import Held, Ledger, recipient_key
from reporter.magnific import MagnificClient
from reporter.mail import SmtpSender
from reporter.summary import Outcome
from reporter.usage import ReportTables

log = logging.getLogger(__name__)


def changed_by(sent: float, current: float) -> float:
    """The change in percent of what was sent; any change from 0 counts as 100%."""
    if sent == 0:
        return 0.0 if current == 0 else 100.0
    return abs(current - sent) / sent * 100.0


def due_corrections(
    recipients: Sequence[str],
    held: dict[str, Held],
    current: float,
    limit: float,
) -> dict[str, float | None]:
    """recipient -> the total their correction corrects (None: they hold no version and get
    the current report as it is). Recipients within ``limit`` percent are not due; nobody
    is due unless someone's figure moved past it."""
    moved: dict[str, float | None] = {}
    fresh: dict[str, float | None] = {}
    for recipient in recipients:
        had = held.get(recipient_key(recipient))
        if had is None:
            fresh[recipient] = None
        elif had.credits is None or changed_by(had.credits, current) > limit:
            moved[recipient] = had.credits
    return {**moved, **fresh} if moved else {}


def recheck(
    config: Config,
    reports: Sequence[ReportConfig],
    options: RunOptions,
    *,
    client: MagnificClient,
    sender: SmtpSender | None,
    ledger: Ledger,
    progress: Progress = quiet_progress,
    chat: ChatSender | None = None,
) -> list[Outcome]:
    """Re-fetch ``options.period`` for each delivered report; send corrections where due,
    to its owners and (with ``chat``) its chat channels.

    With ``options.dry_run`` (``sender`` None) the corrected report, message and chat
    payloads are written and nothing is claimed, sent or recorded."""
    period = options.period.key
    if not options.dry_run:
        options = dataclasses.replace(options, outbox_dir=ledger.outbox.root)
        ledger.start_run()
        recovered = ledger.recover()
        if any(recovered.values()):
            log.warning("settled what an interrupted run left: %s", recovered)
        ledger.rename(config.renames)
    else:
        sender, chat = None, None
    outcomes = []
    for report in reports:
        outcome = Outcome(report.name, "pending")
        outcomes.append(outcome)
        held = ledger.held(report.name, period)
        if not held:
            outcome.status = "not_delivered"
            outcome.detail = f"no delivered report for {period} to re-check"
            progress(report.name, outcome.line(), done=True)
            continue
        try:
            _recheck_one(report, held, config, options, client, sender, ledger, chat, outcome)
        except ApiAuthError as exc:
            fail(outcome, exc, progress)
            raise
        except Exception as exc:
            fail(outcome, as_reporter_error(exc, report), progress)
            continue
        progress(report.name, outcome.line(), done=True)
    return outcomes


def _recheck_one(
    report: ReportConfig,
    held: dict[str, Held],
    config: Config,
    options: RunOptions,
    client: MagnificClient,
    sender: SmtpSender | None,
    ledger: Ledger,
    chat: ChatSender | None,
    outcome: Outcome,
) -> None:
    period = options.period.key
    tables = fetch_tables(client, report, config, options)
    current = float(tables.totals.credits)
    outcome.credits = current
    owners = [str(o) for o in report.owners]
    channels = config.chat_channels_for(report) if chat or options.dry_run else []
    shown = sorted({h.credits for h in held.values() if h.credits is not None})
    was = " / ".join(f"{c:,.0f}" for c in shown) or "?"
    due = due_corrections(owners + channels, held, current, config.correction_threshold_for(report))
    if not due:
        outcome.status = "unchanged"
        outcome.detail = f"{was} sent, {current:,.0f} now"
        return
    if options.dry_run:
        mine, version = list(due), None
    else:
        claim = ledger.claim(report.name, period, list(due), force=True)
        mine = claim.mine
        if not mine:
            outcome.status = "taken"
            outcome.detail = taken_detail(claim.taken)
            return
        version = ledger.new_version(report.name, period, current)
    # Recipients who hold the same total get the same message; those who hold none, a
    # plain report of the new version.
    groups: dict[float | None, list[str]] = {}
    for recipient in mine:
        groups.setdefault(due[recipient], []).append(recipient)
    corrected = dataclasses.replace(options, out_dir=options.out_dir / "corrected")
    mails: list[MailFile] = []
    posts: list[ChatFile] = []
    for index, (sent_total, group) in enumerate(sorted(groups.items(), key=_group_order)):
        mails_, posts_ = _write(
            report, tables, group, sent_total, current, owners, index, config, corrected, version
        )
        mails += mails_
        posts += posts_
        outcome.files += [m.path for m in mails_] + sorted({f.path for f in posts_})
    if options.dry_run or sender is None:
        outcome.status = "written"
        outcome.detail = f"dry run: correction {was} -> {current:,.0f} written"
        return
    result, posted = Sent(), Sent()
    for mail in mails:
        record_written(ledger, mail, period)
    for file in posts:
        record_payload(ledger, file, period)
    for mail in mails:
        result.add(deliver(mail, sender, ledger, period))
    for file in posts:
        assert chat is not None  # channels are only due with a sender
        posted.add(deliver_chat(file, chat, ledger, period))
    fresh = [r for r in result.delivered + posted.delivered if due.get(r, 0.0) is None]
    _settle(outcome, result, posted, was, current, len(fresh))


def _group_order(item: tuple[float | None, list[str]]) -> tuple[int, float]:
    """Corrections first (by the total they correct), then the plain report."""
    return (1, 0.0) if item[0] is None else (0, item[0])


def _write(
    report: ReportConfig,
    tables: ReportTables,
    group: list[str],
    sent_total: float | None,
    current: float,
    owners: list[str],
    index: int,
    config: Config,
    options: RunOptions,
    version: int | None,
) -> tuple[list[MailFile], list[ChatFile]]:
    """One group's PDF, messages and chat payloads: a correction of ``sent_total``, or
    (None) the current report as it is. The first group's files go to
    ``corrected/<period>/``, the others' to a folder of their own beside it."""
    if index:
        options = dataclasses.replace(
            options,
            out_dir=options.out_dir
            / ("new" if sent_total is None else f"from-{sent_total:.0f}".replace(".", "_")),
        )
    correction = None if sent_total is None else {"sent": sent_total, "current": current}
    built = render_report(report, tables, config, options, correction=correction)
    emails = [r for r in group if r in owners]
    channels = [r for r in group if r not in owners]
    piece = email_piece(built, version)
    mails = compose_each([piece], emails, config, options, report.name) if emails else []
    posts = report_chat_files(built, config, options, channels=channels, version=version)
    return mails, posts


def _settle(
    outcome: Outcome, result: Sent, posted: Sent, was: str, current: float, fresh: int = 0
) -> None:
    """The report's outcome; ``fresh``: recipients who had no version and got the current
    report as it is, not a correction."""
    outcome.recipients = result.delivered + posted.delivered
    problems = [f"{r}: {why}" for r, why in {**result.failed, **posted.failed}.items()]
    problems += [f"{r}: not confirmed by the server" for r in result.unconfirmed]
    problems += [f"{r}: not confirmed by the platform" for r in posted.unconfirmed]
    if problems:
        outcome.status = (
            "partial"
            if outcome.recipients
            else ("failed" if result.failed or posted.failed else "unconfirmed")
        )
        outcome.detail = "; ".join(problems)
        return
    outcome.status = "delivered"
    done = [f"sent to {plural(len(result.delivered), 'owner')}"] if result.delivered else []
    if posted.delivered:
        done.append(f"posted to {', '.join(posted.delivered)}")
    outcome.detail = f"corrected {was} -> {current:,.0f}, " + ", ".join(done)
    if fresh:
        outcome.detail += f" ({fresh} of them had none yet and got the current report as it is)"
