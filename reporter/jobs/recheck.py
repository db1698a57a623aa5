"""``reporter run --recheck``: correct delivered reports that late usage data has changed.

Usage arrives late, so a report delivered on the 1st can be wrong by the 3rd.
The ledger keeps the total each delivered report showed; a re-check fetches
the period again and, when a report's total moved by more than
``correction_threshold_percent``, sends its owners the new report marked
"Corrected". The correction is the ledger message ``correction:<credits>``, so
each changed total is sent once per owner, and once every owner has it the
new total becomes the one the next re-check compares with.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence

from reporter.config import Config, ReportConfig
from reporter.errors import ApiAuthError
from reporter.jobs.build import Progress, RunOptions, fetch_tables, quiet_progress, render_report
from reporter.jobs.deliver import deliver
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
) -> list[Outcome]:
    """Re-fetch ``options.period`` for each delivered report; send corrections where due.

    With ``options.dry_run`` (``sender`` None) the corrected report and message are
    written and nothing is claimed, sent or recorded."""
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
            pending = (
                owners
                if options.dry_run
                else ledger.claim(report.name, period, owners, force=False, message=kind).mine
            )
            if not pending:
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
            mail = compose(
                [email_piece(built)], pending, config, corrected, mail_path(corrected, report.name)
            )
            mail = dataclasses.replace(mail, kinds=(kind,))
            outcome.files = [built.pdf_path, mail.path]
            if options.dry_run or sender is None:
                outcome.status = "written"
                outcome.detail = f"dry run: correction {sent_total:,.0f} -> {current:,.0f} written"
                progress(report.name, outcome.line(), done=True)
                continue
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
        except ApiAuthError as exc:
            fail(outcome, exc, progress)
            raise
        except Exception as exc:
            fail(outcome, as_reporter_error(exc, report), progress)
            continue
        outcome.recipients = result.delivered
        if result.failed or result.unconfirmed:
            outcome.status = (
                "partial" if result.delivered else ("failed" if result.failed else "unconfirmed")
            )
            outcome.detail = "; ".join(
                [f"{r}: {why}" for r, why in result.failed.items()]
                + [f"{r}: not confirmed by the server" for r in result.unconfirmed]
            )
        else:
            # Every owner has it: the corrected total is now the one to compare with.
            ledger.record_shown(report.name, period, current)
            outcome.status = "delivered"
            outcome.detail = (
                f"corrected {sent_total:,.0f} -> {current:,.0f} ({change:.1f}%),"
                f" sent to {plural(len(result.delivered), 'owner')}"
            )
        progress(report.name, outcome.line(), done=True)
    return outcomes
