"""``reporter watch``: the month so far, and an email for each alert newly due.

The stages are the monthly run's: claim (in the ledger, per alert and owner),
fetch (one request per report: the month to date, widened by 28 days for the
spike baseline), decide (``alerts``, pure), write the message to its ``.eml``,
then deliver it with the ledger's write-ahead marks. No PDF: ``watch`` runs
every day and must stay fast.

An owner's alerts are claimed after the data is in, so a report whose fetch
fails claims nothing and is simply due again on the next run.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import datetime as dt
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from reporter import charts
from reporter.alert_text import alert_money, data_through, explain, order, subject_lines
from reporter.alerts import SPIKE_WINDOW_DAYS, Alert, AlertSettings, MonthToDate, month_to_date
from reporter.chat.message import alert_message
from reporter.chat.post import ChatSender
from reporter.config import Config, ReportConfig
from reporter.errors import ApiAuthError
from reporter.jobs.build import Progress, quiet_progress
from reporter.jobs.chat import deliver_chat, record_payload, write_chat_files
from reporter.jobs.deliver import deliver, record_written
from reporter.jobs.pipeline import as_reporter_error, fail
from reporter.jobs.plan import plural, taken_detail
from reporter.jobs.records import MailFile, Sent
from reporter.ledger import Ledger
from reporter.lifetime import worker_pool
from reporter.magnific import MagnificClient, UsageQuery
from reporter.mail import InlineImage, build_message, content_id, message_id
from reporter.outbox import Outbox, identity, write_message
from reporter.periods import Period, PeriodKind
from reporter.render import Formatter, render_template, translations
from reporter.summary import Outcome
from reporter.usage import tidy_frame

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class WatchOptions:
    date: dt.date  # the data is as of the end of this day
    out_dir: Path
    templates_dir: Path
    now: dt.datetime
    dry_run: bool = False
    run_url: str | None = None  # the CI run, linked from chat messages
    outbox_dir: Path | None = None  # where messages for delivery go; None: a dry run

    @property
    def month(self) -> Period:
        return month_of(self.date)

    @property
    def outbox(self) -> Outbox | None:
        return Outbox(self.outbox_dir) if self.outbox_dir is not None else None


def month_of(day: dt.date) -> Period:
    return Period.from_pandas(pd.Period(day, freq="M"), PeriodKind.MONTH)


def settings_for(config: Config, report: ReportConfig) -> AlertSettings:
    return AlertSettings(
        thresholds=config.thresholds_for(report),
        forecast=config.forecast_alert_for(report),
        spike_factor=config.spike_factor_for(report),
    )


def fetch_month(
    client: MagnificClient, report: ReportConfig, options: WatchOptions, month: Period
) -> pd.DataFrame:
    """One request: by day, from 28 days before the month's first day (a billing cycle's,
    for a report billed on another day than the 1st) through ``options.date``."""
    query = UsageQuery.for_filters(
        "day",
        month.start - dt.timedelta(days=SPIKE_WINDOW_DAYS),
        options.date,
        report.filters,
    )
    return tidy_frame(client.fetch_usage(query))


def watch(
    config: Config,
    reports: Sequence[ReportConfig],
    options: WatchOptions,
    *,
    client: MagnificClient,
    sender: Any,
    ledger: Ledger | None,
    progress: Progress = quiet_progress,
    max_in_flight: int = 4,
    chat: ChatSender | None = None,
) -> list[Outcome]:
    """Decide and send each report's due alerts; a failure in one never stops the others.

    ``sender`` is an ``SmtpSender``, or None with ``options.dry_run``; ``ledger`` None
    (a dry run) records nothing; ``chat`` posts the alerts to the reports' channels."""
    if options.dry_run:
        ledger = None
    if ledger is not None:
        options = dataclasses.replace(options, outbox_dir=ledger.outbox.root)
        ledger.start_run()
        recovered = ledger.recover()
        if any(recovered.values()):
            log.warning("settled what an interrupted run left: %s", recovered)
        ledger.rename(config.renames)
    outcomes = {r.name: Outcome(r.name, "pending") for r in reports}
    auth_error: ApiAuthError | None = None
    fetch_slots = max(1, min(max_in_flight, len(reports)))
    fetchers = concurrent.futures.ThreadPoolExecutor(
        max_workers=fetch_slots, thread_name_prefix="fetch"
    )
    workers = _workers(len(reports))
    watched = {r.name: config.period_containing(r, options.date) for r in reports}
    fetching = {
        fetchers.submit(fetch_month, client, r, options, watched[r.name]): r for r in reports
    }
    deciding: dict[concurrent.futures.Future[MonthToDate], ReportConfig] = {}
    writing: dict[concurrent.futures.Future[MailFile], _Alerting] = {}
    finished = False
    try:
        while fetching or deciding or writing:
            busy: list[concurrent.futures.Future[Any]] = [*fetching, *deciding, *writing]
            done, _ = concurrent.futures.wait(busy, return_when=concurrent.futures.FIRST_COMPLETED)
            for future in done:
                if future in writing:
                    alerting = writing.pop(future)
                    alerting.written(future, sender, ledger)
                    if alerting.left == 0:
                        alerting.settle(ledger is None or sender is None, progress)
                        _post_alerts(
                            alerting.report,
                            alerting.month,
                            config,
                            options,
                            chat,
                            ledger,
                            alerting.outcome,
                            progress,
                        )
                    continue
                if future in deciding:
                    report = deciding.pop(future)
                    outcome = outcomes[report.name]
                    try:
                        month = future.result()
                        outcome.credits = month.used
                        claimed = _claim(report, month, ledger, outcome, progress)
                        if claimed is None:
                            _post_alerts(
                                report, month, config, options, chat, ledger, outcome, progress
                            )
                            continue
                        for alerts, recipients in claimed.groups:
                            message = workers.submit(
                                compose_alert, report, month, alerts, recipients, config, options
                            )
                            writing[message] = claimed
                    except Exception as exc:
                        fail(outcome, as_reporter_error(exc, report), progress)
                    continue
                report = fetching.pop(future)
                try:
                    tidy = future.result()
                    budget = config.budget_for(report, watched[report.name])
                    decision = workers.submit(
                        month_to_date,
                        tidy,
                        watched[report.name],
                        options.date,
                        budget.credits if budget else None,
                        settings_for(config, report),
                        config.prices_for(report),
                        budget.amount if budget else None,
                    )
                    deciding[decision] = report
                except ApiAuthError as exc:
                    auth_error = exc
                    fail(outcomes[report.name], exc, progress)
                    for other in fetching:
                        other.cancel()
                except Exception as exc:
                    fail(outcomes[report.name], as_reporter_error(exc, report), progress)
        finished = True
    finally:
        # Interrupted: wait neither for a hanging API nor for workers mid-message.
        fetchers.shutdown(wait=finished, cancel_futures=True)
        workers.shutdown(wait=finished, cancel_futures=True)
    if auth_error is not None:
        raise auth_error
    return [outcomes[r.name] for r in reports]


# Deciding a report's alerts and writing its message is CPU work (pandas, and a chart
# drawn for each message). From this many reports, on a machine with more than one CPU,
# it is done in worker processes, one a CPU, while this process fetches and sends;
# below it, starting the processes would cost more than they save.
PARALLEL_FROM = 8


def _workers(reports: int) -> concurrent.futures.Executor:
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if reports < PARALLEL_FROM or (cpus or 1) < 2:
        return concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="alerts")
    return worker_pool(min(cpus or 1, reports))


@dataclass
class _Alerting:
    """One report's alerts on their way: the messages being written, what they achieved."""

    report: ReportConfig
    month: MonthToDate
    outcome: Outcome
    groups: list[tuple[list[Alert], list[str]]]  # alerts, and the owners they go to
    left: int = 0  # messages still being written
    sent: Sent = field(default_factory=Sent)
    error: Exception | None = None
    taken: dict[str, int] = field(default_factory=dict)  # owner -> pid of a live run

    def __post_init__(self) -> None:
        self.left = len(self.groups)

    def written(
        self, future: concurrent.futures.Future[MailFile], sender: Any, ledger: Ledger | None
    ) -> None:
        """A message is on disk: record it and send it (unless a dry run)."""
        self.left -= 1
        try:
            mail = future.result()
        except Exception as exc:
            self.error = exc
            return
        self.outcome.files.append(mail.path)
        if ledger is None or sender is None:
            return
        key = self.month.period.key
        record_written(ledger, mail, key)
        self.sent.add(deliver(mail, sender, ledger, key))

    def settle(self, dry_run: bool, progress: Progress) -> None:
        """The report's outcome, once all its messages are written (and sent)."""
        outcome, sent = self.outcome, self.sent
        if self.error is not None:
            fail(outcome, as_reporter_error(self.error, self.report), progress)
            return
        due = {a.key: a for alerts, _ in self.groups for a in alerts}.values()
        names = ", ".join(a.key.removeprefix("alert:") for a in sorted(due, key=order))
        if dry_run:
            outcome.status = "written"
            outcome.detail = f"dry run: {names} written, not sent"
        elif sent.failed or sent.unconfirmed:
            outcome.status = (
                "partial" if sent.delivered else ("failed" if sent.failed else "unconfirmed")
            )
            outcome.detail = (
                "; ".join(
                    [f"{r}: {why}" for r, why in sent.failed.items()]
                    + [f"{r}: not confirmed by the server" for r in sent.unconfirmed]
                )
                + "; due again on the next run"
            )
        else:
            outcome.status = "delivered"
            outcome.detail = f"{names} sent to {plural(len(sent.delivered), 'owner')}"
        if self.taken:
            outcome.detail += f"; {taken_detail(self.taken)}"
        outcome.recipients = sent.delivered
        progress(self.report.name, outcome.line(), done=True)


def _claim(
    report: ReportConfig,
    month: MonthToDate,
    ledger: Ledger | None,
    outcome: Outcome,
    progress: Progress,
) -> _Alerting | None:
    """Claim each due alert for each owner; None (the outcome settled) when none is due."""
    owners = [str(o) for o in report.owners]
    due, taken = claim_alerts(report.name, month, owners, ledger)
    if not due:
        if taken:
            outcome.status, outcome.detail = "taken", taken_detail(taken)
        else:
            outcome.status = "quiet" if not month.alerts else "already_delivered"
            outcome.detail = "" if not month.alerts else "every due alert was sent before"
        progress(report.name, outcome.line(), done=True)
        return None
    # Owners with the same alerts due share one message (usually: all of them).
    groups: dict[tuple[str, ...], list[str]] = {}
    for owner, alerts in due.items():
        groups.setdefault(tuple(a.key for a in alerts), []).append(owner)
    by_key = {a.key: a for a in month.alerts}
    return _Alerting(
        report,
        month,
        outcome,
        [([by_key[k] for k in keys], recipients) for keys, recipients in groups.items()],
        taken=taken,
    )


SUPERSEDED = (
    "a higher threshold was already sent: recorded, not sent, so no message understates"
    " the share used"
)


def claim_alerts(
    report: str, month: MonthToDate, recipients: Sequence[str], ledger: Ledger | None
) -> tuple[dict[str, list[Alert]], dict[str, int]]:
    """recipient -> the alerts this run sends them, and recipient -> pid of a live run
    holding some of theirs. Everything due is claimed (``ledger`` None: a dry run, where
    everything is due).

    A threshold is only ever sent with the highest threshold passed: one a recipient has
    not had but that is below a threshold they already got (added to the config
    mid-month, say "90%" when 113% is used) is recorded as ``superseded``, unsent."""
    key = month.period.key
    due: dict[str, list[Alert]] = {}
    taken: dict[str, int] = {}
    for alert in month.alerts:
        mine = list(recipients)
        if ledger is not None:
            claim = ledger.claim(report, key, recipients, force=False, message=alert.key)
            mine = claim.mine
            taken |= claim.taken
        for recipient in mine:
            due.setdefault(recipient, []).append(alert)
    passed = [a for a in month.alerts if a.kind == "threshold"]
    highest = max(passed, key=lambda a: a.threshold or 0) if passed else None
    for recipient, alerts in list(due.items()):
        below = [a for a in alerts if a.kind == "threshold"]
        if not below or highest in alerts:
            continue
        if ledger is not None:
            ledger.mark(
                [report],
                key,
                [recipient],
                "superseded",
                message=[a.key for a in below],
                error=SUPERSEDED,
            )
        rest = [a for a in alerts if a.kind != "threshold"]
        if rest:
            due[recipient] = rest
        else:
            del due[recipient]
    return due, taken


def _post_alerts(
    report: ReportConfig,
    month: MonthToDate,
    config: Config,
    options: WatchOptions,
    chat: ChatSender | None,
    ledger: Ledger | None,
    outcome: Outcome,
    progress: Progress,
) -> None:
    """The same alerts to the report's chat channels, each alert once per channel; a
    channel that fails makes the report's outcome fail, after its mail went out."""
    channels = config.chat_channels_for(report)
    if not channels or not month.alerts:
        return
    key = month.period.key
    due, _ = claim_alerts(report.name, month, channels, ledger)  # channel -> alerts
    if not due:
        return
    locale = config.locale_for(report)
    gettext = translations(options.templates_dir, locale).gettext
    fmt = Formatter(locale)
    posted = Sent()
    groups: dict[tuple[str, ...], list[str]] = {}
    for channel, alerts in due.items():
        groups.setdefault(tuple(a.key for a in sorted(alerts, key=order)), []).append(channel)
    by_key = {a.key: a for a in month.alerts}
    for keys, group in groups.items():
        alerts = [by_key[k] for k in keys]
        texts = explain(alerts, month, locale, gettext)
        message = alert_message(
            title=report.display_title,
            headline=texts[0].headline,
            items=[t.as_item() for t in texts],
            month=fmt.period(month.period, gettext),
            as_of=fmt.date(month.through),
            used=month.used,
            budget=month.budget,
            forecast=month.forecast,
            locale=locale,
            gettext=gettext,
            link=options.run_url,
            money=alert_money(month, fmt, gettext),
        )
        stem = f"{report.name}-alert-{options.date.isoformat()}"
        if len(groups) > 1:
            stem += "-" + "-".join(sorted(c.partition(":")[0] for c in group))
        files = write_chat_files(
            report.name,
            group,
            message,
            options.out_dir / key / "alerts",
            stem,
            kinds=keys,
            outbox=options.outbox,
            period=key,
        )
        outcome.files += sorted({f.path for f in files})
        if ledger is None or chat is None:
            continue
        for file in files:
            if file.recipient.startswith("slack-upload:"):
                continue  # an alert has no PDF to upload
            record_payload(ledger, file, key)
            posted.add(deliver_chat(file, chat, ledger, key))
    _settle_posts(outcome, posted, progress)


def _settle_posts(outcome: Outcome, posted: Sent, progress: Progress) -> None:
    """Fold what the channels got into the report's outcome, which the mail settled."""
    for recipient, why in posted.failed.items():
        progress(outcome.report, f"not posted to {recipient}: {why}")
    if posted.delivered:
        progress(outcome.report, "posted to " + ", ".join(posted.delivered))
    problems = [f"{r}: {why}" for r, why in posted.failed.items()]
    problems += [f"{r}: not confirmed by the platform" for r in posted.unconfirmed]
    if not problems:
        if posted.delivered:
            if outcome.status == "already_delivered":
                outcome.status, outcome.detail = "delivered", ""
            posts = "posted to " + ", ".join(posted.delivered)
            outcome.detail = f"{outcome.detail}, {posts}" if outcome.detail else posts
        return
    some_delivered = outcome.status in ("delivered", "already_delivered", "partial")
    if some_delivered or posted.delivered:
        outcome.status = "partial"
    elif outcome.status != "failed":
        outcome.status = "failed" if posted.failed else "unconfirmed"
    earlier = outcome.detail.removesuffix("; due again on the next run")
    earlier = "" if outcome.status == "partial" and not outcome.recipients else earlier
    outcome.detail = "; ".join([*([earlier] if earlier else []), *problems])
    outcome.detail += "; due again on the next run"


# --- the message (pure but for writing its file) --------------------------------------


def compose_alert(
    report: ReportConfig,
    month: MonthToDate,
    alerts: list[Alert],
    recipients: list[str],
    config: Config,
    options: WatchOptions,
) -> MailFile:
    """One short message naming ``alerts``, with a chart of the month so far."""
    locale = config.locale_for(report)
    catalog = translations(options.templates_dir, locale)
    gettext = catalog.gettext
    fmt = Formatter(locale)
    alerts = sorted(alerts, key=order)
    texts = explain(alerts, month, locale, gettext)
    subject = f"{report.display_title}: " + "; ".join(
        subject_lines(alerts, [t.headline for t in texts])
    )
    period = month.period
    forecast_line = None
    if month.forecast is not None and not month.cumulative.empty:
        forecast_line = (
            month.through.isoformat(),
            month.used,
            period.end.isoformat(),
            month.forecast,
        )
    chart_title = (
        gettext("Credits so far this cycle, against the budget")
        if period.is_cycle
        else gettext("Credits so far this month, against the budget")
    )
    spec = charts.budget_spec(
        month.cumulative,
        month.budget,
        forecast_line,
        title=chart_title,
        credits_label=gettext("Credits"),
        day_label=gettext("Day"),
    )
    png = charts.render_png(spec, locale)
    cid = content_id(f"{report.name}-alert", options.date.isoformat())
    context = {
        "subject": subject,
        "title": report.display_title,
        "month": fmt.period(period, gettext),
        "data_through": data_through(month, locale, gettext),
        "used": month.used,
        "budget": month.budget,
        "used_pct": month.used_pct,
        "forecast": month.forecast,
        "money": alert_money(month, fmt, gettext),
        "crossing": fmt.date(month.crossing) if month.crossing else None,
        "crossed": month.budget is not None and month.used >= month.budget,
        "alerts": texts,
        "chart_cid": cid,
        "chart_title": chart_title,
        "cycle": period.is_cycle,
    }
    text = render_template(options.templates_dir, "alert.txt.j2", locale, context)
    html = render_template(options.templates_dir, "alert.html.j2", locale, context)
    kinds = tuple(a.key for a in alerts)
    msg_id = message_id(
        [report.name], period.key, recipients, config.email.from_, variant=" ".join(kinds)
    )
    message = build_message(
        sender=config.email.from_,
        recipients=recipients,
        subject=subject,
        text=text,
        html=html,
        inline_images=[InlineImage(cid, png)],
        msg_id=msg_id,
        date=options.now,
        reply_to=config.email.reply_to,
    )
    stem = f"{report.name}-alert-{options.date.isoformat()}"
    if len(recipients) < len(report.owners):  # some owners had part of it already
        stem += "-" + msg_id.split(".")[-1][:8]
    # In the outbox by Message-ID and the day the data runs through: a later day's message
    # about the same alerts is a new file, never written over this one.
    name = f"{identity(msg_id, options.date.isoformat())}.eml"
    copy = options.out_dir / period.key / "alerts" / f"{stem}.eml"
    path = write_message(options.outbox, copy, period.key, name, bytes(message))
    return MailFile([report.name], recipients, path, msg_id, kinds=kinds)
