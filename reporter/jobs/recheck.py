"""``reporter run --recheck``: correct delivered reports that late usage data has changed.

Usage arrives late, so a report delivered on the 1st can be wrong by the 3rd.
The ledger keeps the total each delivered report showed; a re-check fetches
the period again and, when a report's total moved by more than
``correction_threshold_percent``, sends its owners the new report marked
"Corrected". The correction is the ledger message ``correction:<credits>``, so
each changed total is sent once per owner and posted once per chat channel, and
once every owner and channel has it the new total becomes the one the next
re-check compares with.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence

from reporter.chat.post import ChatSender
from reporter.config import Config, ReportConfig
from reporter.errors import ApiAuthError
from reporter.jobs.build import Progress, RunOptions, fetch_tables, quiet_progress, render_report
from reporter.jobs.chat import deliver_chat, report_chat_files
from reporter.jobs.deliver import Sent, deliver
from reporter.jobs.messages import compose, email_piece, mail_path
from reporter.jobs.pipeline import as_reporter_error, fail
from reporter.jobs.plan import plural
from reporter.ledger import Ledger
from reporter.magnific import MagnificClient
from reporter.mail import SmtpSender
from reporter.summary import Outcome

log = logging.getLogger(__name__)


def changed_by(sent: float, current: float) -> float:
    """The change in percent of what was sent; any change from 0 counts as 100%."""
    if sent == 0:
        return 0.0 if current == 0 else 100.0
    return abs(current - sent) / sent * 100.0


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
        ledger.start_run()
        recovered = ledger.recover()
        if any(recovered.values()):
            log.warning("settled what an interrupted run left: %s", recovered)
    shown = ledger.shown_totals(period)
    # The corrected files sit apart from the report they correct, which stays as sent.
    corrected = dataclasses.replace(options, out_dir=options.out_dir / "corrected")
    outcomes = []
    for report in reports:
        outcome = Outcome(report.name, "pending")
        outcomes.append(outcome)
        sent_total = shown.get((report.name, period))
        if sent_total is None:
            outcome.status = "not_delivered"
            outcome.detail = f"no delivered report for {period} to re-check"
            progress(report.name, outcome.line(), done=True)
            continue
        try:
            tables = fetch_tables(client, report, config, options)
            current = float(tables.totals.credits)
            outcome.credits = current
            change = changed_by(sent_total, current)
            limit = config.correction_threshold_for(report)
            if change <= limit:
                outcome.status = "unchanged"
                outcome.detail = f"{sent_total:,.0f} sent, {current:,.0f} now"
                progress(report.name, outcome.line(), done=True)
                continue
            kind = f"correction:{current:.0f}"
            owners = [str(o) for o in report.owners]
            channels = config.chat_channels_for(report) if chat or options.dry_run else []
            if options.dry_run:
                pending, posts = owners, channels
            else:
                mine = ledger.claim(
                    report.name, period, owners + channels, force=False, message=kind
                ).mine
                pending = [o for o in mine if o in owners]
                posts = [c for c in mine if c in channels]
            if not pending and not posts:
                ledger.record_shown(report.name, period, current)
                outcome.status = "already_delivered"
                outcome.detail = f"every owner has the correction to {current:,.0f}"
                progress(report.name, outcome.line(), done=True)
                continue
            built = render_report(
                report,
                tables,
                config,
                corrected,
                correction={"sent": sent_total, "current": current},
            )
            outcome.files = [built.pdf_path]
            mail = None
            if pending:
                mail = compose(
                    [email_piece(built)],
                    pending,
                    config,
                    corrected,
                    mail_path(corrected, report.name),
                )
                mail = dataclasses.replace(mail, kinds=(kind,))
                outcome.files.append(mail.path)
            chat_files = report_chat_files(built, config, corrected, channels=posts, kinds=(kind,))
            outcome.files += sorted({f.path for f in chat_files})
            if options.dry_run or sender is None:
                outcome.status = "written"
                outcome.detail = f"dry run: correction {sent_total:,.0f} -> {current:,.0f} written"
                progress(report.name, outcome.line(), done=True)
                continue
            result = Sent()
            if mail is not None:
                ledger.mark(
                    [report.name],
                    period,
                    pending,
                    "rendered",
                    message_id=mail.message_id,
                    artifact=str(mail.path),
                    message=kind,
                )
                result = deliver(mail, sender, ledger, period)
            posted = Sent()
            for file in chat_files:
                ledger.mark(
                    [report.name],
                    period,
                    [file.recipient],
                    "rendered",
                    artifact=str(file.path),
                    message=kind,
                )
                assert chat is not None  # channels are only claimed with a sender
                posted.add(deliver_chat(file, chat, ledger, period))
            for recipient, why in posted.failed.items():
                progress(report.name, f"not posted to {recipient}: {why}")
            if posted.delivered:
                progress(report.name, "posted to " + ", ".join(posted.delivered))
        except ApiAuthError as exc:
            fail(outcome, exc, progress)
            raise
        except Exception as exc:
            fail(outcome, as_reporter_error(exc, report), progress)
            continue
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
        else:
            # Everyone has it: the corrected total is now the one to compare with.
            ledger.record_shown(report.name, period, current)
            outcome.status = "delivered"
            done = [f"sent to {plural(len(result.delivered), 'owner')}"] if mail else []
            if posted.delivered:
                done.append(f"posted to {', '.join(posted.delivered)}")
            outcome.detail = (
                f"corrected {sent_total:,.0f} -> {current:,.0f} ({change:.1f}%), " + ", ".join(done)
            )
        progress(report.name, outcome.line(), done=True)
    return outcomes
