"""One run: plan, fetch, build, write, deliver, with each report isolated.

The order is what makes a run safe to repeat: the ledger is settled first; a
report every owner already has is not even fetched; every artefact (PDF, CSV,
.eml) is on disk before anything is sent; and a report whose message was
written but not sent is sent from that file on the next run, unchanged.
"""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import email
import email.policy
import logging
import multiprocessing
import os
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Protocol

from reporter import charts
from reporter.config import Config, ReportConfig
from reporter.errors import ApiAuthError, DeliveryError, ReporterError
from reporter.insights import find_insights
from reporter.ledger import Ledger
from reporter.magnific import MagnificClient, UsageQuery
from reporter.mail import (
    Attachment,
    InlineImage,
    SmtpSender,
    build_message,
    content_id,
    message_id,
)
from reporter.periods import Period
from reporter.render import Formatter, html_to_pdf, render_template, translations
from reporter.report import Figure, Source, build_context, chart_labels
from reporter.summary import Outcome
from reporter.usage import ReportTables, build_tables, csv_frame, tidy_frame

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RunOptions:
    period: Period
    out_dir: Path
    templates_dir: Path
    now: dt.datetime
    dry_run: bool = False
    force: bool = False
    pdf_variant: str | None = None  # overrides [defaults] pdf_variant
    api_url: str = ""
    jobs: int = 1  # processes that render reports


@dataclass
class BuiltReport:
    report: ReportConfig
    locale: str
    tables: ReportTables
    context: dict[str, Any]
    pdf_path: Path
    csv_path: Path
    chart_png: bytes | None  # the email's inline chart; None when there is nothing to draw


class Progress(Protocol):
    """Told of each step of each report; ``done`` marks the report's final status."""

    def __call__(self, report: str, message: str, /, *, done: bool = False) -> None: ...


def _quiet(report: str, message: str, /, *, done: bool = False) -> None:
    log.info("%s: %s", report, message)


# --- building ----------------------------------------------------------------


def fetch_tables(
    client: MagnificClient, report: ReportConfig, config: Config, options: RunOptions
) -> ReportTables:
    """The two requests a report needs (the period's detail and its history), aggregated."""
    period = options.period
    detail_query = UsageQuery.for_filters(
        period.detail_granularity, period.start, period.end, report.filters
    )
    history_query = UsageQuery.for_filters(
        period.history_granularity, period.history()[0].start, period.end, report.filters
    )
    detail = tidy_frame(client.fetch_usage(detail_query))
    history = tidy_frame(client.fetch_usage(history_query))
    return build_tables(
        detail,
        history,
        period,
        top_users=config.top_users_for(report),
        budget_credits=report.budget_credits,
        today=options.now.date(),
    )


@dataclass
class Composed:
    """A report's page as HTML, before it is printed, and what the email reuses."""

    html: str
    locale: str
    context: dict[str, Any]
    chart_png: bytes | None  # the email's inline chart; None when there is nothing to draw


def compose_report(
    report: ReportConfig, tables: ReportTables, config: Config, options: RunOptions
) -> Composed:
    """Charts and HTML for one report."""
    locale = config.locale_for(report)
    catalog = translations(options.templates_dir, locale)
    labels = chart_labels(catalog.gettext, tables)
    period = tables.period
    history_periods = period.history()
    fmt = Formatter(locale)
    specs: dict[str, dict[str, Any]] = {}
    if tables.history["credits"].sum() > 0:
        specs["history"] = charts.history_spec(
            tables.history,
            tables.tool_order,
            [p.key for p in history_periods],
            [fmt.period_short(p, catalog.gettext) for p in history_periods],
            labels,
        )
    if not tables.empty:
        specs["daily"] = charts.daily_spec(
            tables.daily, tables.tool_order, labels, granularity=period.detail_granularity
        )
        specs["tools"] = charts.tools_spec(
            tables.tools.rows[tables.tools.rows["key"].notna()], tables.tool_order, labels
        )
        named = tables.users.rows[
            tables.users.rows["key"].notna() & (tables.users.rows["key"] != "__others__")
        ]
        if not named.empty:
            specs["users"] = charts.users_spec(named, labels)
    titles = {
        "daily": labels.daily_title,
        "history": labels.history_title,
        "tools": labels.tools_title,
        "users": labels.users_title,
    }
    # As <img> data URLs, not inline markup: the HTML parser and the style cascade then
    # never see the charts' hundreds of SVG nodes, and each figure gets its alt text.
    svgs = {name: charts.render_svg(spec, locale) for name, spec in specs.items()}
    figures: dict[str, Figure | None] = dict.fromkeys(titles)
    for name, svg in svgs.items():
        figures[name] = Figure(charts.svg_data_url(svg), titles[name])
    email_chart = svgs.get("daily") or svgs.get("history")
    chart_png = charts.svg_to_png(email_chart) if email_chart else None

    insights = find_insights(tables)
    context = build_context(
        report,
        tables,
        insights,
        figures,
        locale=locale,
        gettext=catalog.gettext,
        ngettext=catalog.ngettext,
        source=Source(api_url=options.api_url, filters=report.filters, fetched_at=options.now),
        generated_at=options.now,
    )
    html = render_template(options.templates_dir, "report.html.j2", locale, context)
    return Composed(html, locale, context, chart_png)


def render_report(
    report: ReportConfig, tables: ReportTables, config: Config, options: RunOptions
) -> BuiltReport:
    """Charts, HTML and PDF for one report; writes ``<name>.pdf`` and ``<name>.csv``."""
    composed = compose_report(report, tables, config, options)
    period = tables.period
    csv_bytes = csv_frame(tables.detail).to_csv(index=False).encode()
    variant = options.pdf_variant or config.defaults.pdf_variant
    attachments = (
        [(f"{report.name}-{period.key}.csv", csv_bytes, "Usage rows behind this report")]
        if variant == "pdf/a-3b"
        else []
    )
    pdf = html_to_pdf(
        composed.html,
        templates_dir=options.templates_dir,
        variant=variant,
        attachments=attachments,
        identifier=f"{report.name}/{period.key}",
    )
    folder = options.out_dir / period.key
    pdf_path = write_atomic(folder / f"{report.name}.pdf", pdf)
    csv_path = write_atomic(folder / f"{report.name}.csv", csv_bytes)
    return BuiltReport(
        report,
        composed.locale,
        tables,
        composed.context,
        pdf_path,
        csv_path,
        composed.chart_png,
    )


def write_atomic(path: Path, content: bytes) -> Path:
    """Write via a temporary file and rename: a killed run never leaves half a PDF."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", delete=False) as tmp:
        tmp.write(content)
        tmp.flush()
        os.fsync(tmp.fileno())
    os.replace(tmp.name, path)
    return path


# --- messages ----------------------------------------------------------------


@dataclass
class Mail:
    reports: list[str]
    recipients: list[str]
    message: EmailMessage
    path: Path


def compose(
    built: Sequence[BuiltReport],
    recipients: list[str],
    config: Config,
    options: RunOptions,
    path: Path,
) -> Mail:
    """One message carrying ``built`` reports to ``recipients``, written to ``path``."""
    first = built[0]
    catalog = translations(options.templates_dir, first.locale)
    period = options.period
    contexts = []
    images = []
    attach_csv = {item.report.name: _attach_csv(item) for item in built}
    for item in built:
        cid = content_id(item.report.name, period.key) if item.chart_png else None
        if item.chart_png and cid:
            images.append(InlineImage(cid, item.chart_png))
        contexts.append(
            {
                **item.context,
                "chart_cid": cid,
                "pdf_name": _attachment_name(item, period),  # as attached, not as on disk
                "csv_name": item.csv_path.name,
                "csv_rows": len(item.tables.detail),
                "csv_attached": attach_csv[item.report.name],
            }
        )
    period_label = contexts[0]["period_title"]
    if len(built) == 1:
        subject = catalog.gettext("%(title)s — credit usage, %(period)s") % {
            "title": first.report.display_title,
            "period": period_label,
        }
    else:
        subject = catalog.gettext("Credit usage, %(period)s: %(titles)s") % {
            "period": period_label,
            "titles": ", ".join(b.report.display_title for b in built),
        }
    template_context = {"reports": contexts, "subject": subject}
    text = render_template(options.templates_dir, "email.txt.j2", first.locale, template_context)
    html = render_template(options.templates_dir, "email.html.j2", first.locale, template_context)
    attachments = []
    for item in built:
        attachments.append(
            Attachment(
                _attachment_name(item, period), item.pdf_path.read_bytes(), "application/pdf"
            )
        )
        if attach_csv[item.report.name]:
            attachments.append(
                Attachment(
                    _attachment_name(item, period, "csv"), item.csv_path.read_bytes(), "text/csv"
                )
            )
    names = [b.report.name for b in built]
    message = build_message(
        sender=config.email.from_,
        recipients=recipients,
        subject=subject,
        text=text,
        html=html,
        inline_images=images,
        attachments=attachments,
        msg_id=message_id(names, period.key, recipients, config.email.from_),
        date=options.now,
        reply_to=config.email.reply_to,
    )
    write_atomic(path, bytes(message))
    return Mail(names, recipients, message, path)


# Mail servers commonly refuse messages over 10 to 25 MB, and base64 adds a third.
CSV_ATTACHMENT_LIMIT = 5 * 1024 * 1024


def _attach_csv(item: BuiltReport) -> bool:
    """A big team's usage rows (a million rows is ~100 MB) stay on disk, not in the mail."""
    return item.csv_path.stat().st_size <= CSV_ATTACHMENT_LIMIT


def _attachment_name(item: BuiltReport, period: Period, ext: str = "pdf") -> str:
    return f"{item.report.name}-{period.key}.{ext}"


def _owner_slug(owner: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", owner.lower()).strip("-")


def plan_mails(
    built: Sequence[BuiltReport], pending: dict[str, list[str]], config: Config, options: RunOptions
) -> list[Mail]:
    """One mail per report, or per owner with ``[email] one_mail_per_owner``."""
    folder = options.out_dir / options.period.key
    if not config.email.one_mail_per_owner:
        return [
            compose([b], pending[b.report.name], config, options, folder / f"{b.report.name}.eml")
            for b in built
            if pending[b.report.name]
        ]
    by_owner: dict[str, list[BuiltReport]] = {}
    for item in built:
        for owner in pending[item.report.name]:
            by_owner.setdefault(owner, []).append(item)
    return [
        compose(items, [owner], config, options, folder / f"mail-{_owner_slug(owner)}.eml")
        for owner, items in by_owner.items()
    ]


# --- delivering --------------------------------------------------------------


def deliver(
    mail: Mail, sender: SmtpSender, ledger: Ledger, period: str
) -> tuple[list[str], dict[str, str]]:
    """Send one mail with the ledger's write-ahead marks; returns (delivered, failed)."""
    msg_id = str(mail.message["Message-ID"])
    artifact = str(mail.path)
    ledger.mark(
        mail.reports, period, mail.recipients, "sending", message_id=msg_id, artifact=artifact
    )
    try:
        result = sender.send(
            mail.message,
            mail.recipients,
            on_commit=lambda: ledger.mark(mail.reports, period, mail.recipients, "committing"),
        )
    except DeliveryError as exc:
        ledger.mark(mail.reports, period, mail.recipients, "failed", error=str(exc))
        return [], {r: str(exc) for r in mail.recipients}
    status = "unconfirmed" if result.unconfirmed else "sent"
    ledger.mark(mail.reports, period, result.accepted, status)
    for recipient, why in result.refused.items():
        ledger.mark(mail.reports, period, [recipient], "failed", error=why)
    return result.accepted, dict(result.refused)


def stored_mails(
    report: ReportConfig, pending: list[str], ledger: Ledger, period: str
) -> list[Mail]:
    """Messages a previous run wrote but could not send, read back from disk.

    Only when every pending owner has one: otherwise the report is rebuilt.
    """
    rows = {r.recipient: r for r in ledger.rows(period) if r.report == report.name}
    by_path: dict[str, list[str]] = {}
    for owner in pending:
        row = rows.get(owner.lower())
        if row is None or row.status not in ("failed", "rendered") or not row.artifact:
            return []
        if not Path(row.artifact).is_file():
            return []
        by_path.setdefault(row.artifact, []).append(owner)
    mails = []
    for path, owners in by_path.items():
        message = email.message_from_bytes(Path(path).read_bytes(), policy=email.policy.SMTP)
        assert isinstance(message, EmailMessage)
        reports = sorted({r.report for r in ledger.rows(period) if r.artifact == path})
        mails.append(Mail(reports, owners, message, Path(path)))
    return mails


# --- the run -----------------------------------------------------------------


def run(
    config: Config,
    reports: Sequence[ReportConfig],
    options: RunOptions,
    *,
    client: MagnificClient,
    sender: SmtpSender | None,
    ledger: Ledger | None,
    progress: Progress = _quiet,
    max_in_flight: int = 4,
) -> list[Outcome]:
    """Build and deliver ``reports``; a failure in one never stops the others."""
    period = options.period.key
    outcomes: dict[str, Outcome] = {r.name: Outcome(r.name, "pending") for r in reports}
    if ledger is not None and not options.dry_run:
        recovered = ledger.recover()
        if any(recovered.values()):
            log.warning("settled an interrupted run: %s", recovered)

    pending: dict[str, list[str]] = {}
    to_build: list[ReportConfig] = []
    mails: list[Mail] = []
    resent: set[str] = set()  # reports sent from the .eml an earlier run wrote
    for report in reports:
        owners = [str(o) for o in report.owners]
        if options.dry_run or options.force or ledger is None:
            pending[report.name] = owners
        else:
            pending[report.name] = ledger.pending(report.name, period, owners)
        if not pending[report.name]:
            outcomes[report.name] = Outcome(
                report.name, "already_delivered", "every owner already has it", recipients=owners
            )
            progress(report.name, outcomes[report.name].line(), done=True)
            continue
        stored = (
            stored_mails(report, pending[report.name], ledger, period)
            if ledger is not None and not options.dry_run and not options.force
            else []
        )
        if stored and not config.email.one_mail_per_owner:
            progress(report.name, "sending the message a previous run wrote")
            resent.add(report.name)
            mails.extend(stored)
        else:
            to_build.append(report)

    built = _build_all(to_build, config, options, client, outcomes, progress, max_in_flight)

    for item in built:
        outcomes[item.report.name].files = [item.pdf_path, item.csv_path]
        outcomes[item.report.name].credits = item.tables.totals.credits
    try:
        new_mails = plan_mails(built, pending, config, options)
    except ReporterError as exc:
        for item in built:
            _fail(outcomes[item.report.name], exc, progress)
        new_mails = []
    for mail in new_mails:
        for name in mail.reports:
            outcomes[name].files.append(mail.path)
        if ledger is not None and not options.dry_run:
            ledger.mark(
                mail.reports,
                period,
                mail.recipients,
                "rendered",
                message_id=str(mail.message["Message-ID"]),
                artifact=str(mail.path),
            )
    mails.extend(new_mails)

    if options.dry_run or sender is None:
        for mail in new_mails:
            for name in mail.reports:
                if outcomes[name].status == "pending":
                    outcomes[name].status = "written"
                    outcomes[name].detail = "dry run: message written, not sent"
                    progress(name, outcomes[name].line(), done=True)
        return [outcomes[r.name] for r in reports]

    assert ledger is not None
    failures: dict[str, dict[str, str]] = {}
    delivered: dict[str, list[str]] = {}
    for mail in mails:
        ok, failed = deliver(mail, sender, ledger, period)
        for name in mail.reports:
            delivered.setdefault(name, []).extend(ok)
            failures.setdefault(name, {}).update(failed)
        for name in mail.reports:
            if failed:
                progress(name, "not delivered to " + ", ".join(failed))
            if ok:
                progress(name, "delivered to " + ", ".join(ok))
    for name, outcome in outcomes.items():
        if outcome.status != "pending":
            continue
        got, lost = delivered.get(name, []), failures.get(name, {})
        outcome.recipients = got
        if lost:
            outcome.status = "partial" if got else "failed"
            outcome.detail = "; ".join(f"{r}: {why}" for r, why in lost.items())
        else:
            outcome.status = "delivered"
            outcome.detail = f"sent to {len(got)} owner{'s' if len(got) != 1 else ''}"
            if name in resent:
                outcome.detail += ", the message a previous run wrote"
        progress(name, outcome.line(), done=True)
    return [outcomes[r.name] for r in reports]


def _build_all(
    reports: Sequence[ReportConfig],
    config: Config,
    options: RunOptions,
    client: MagnificClient,
    outcomes: dict[str, Outcome],
    progress: Progress,
    max_in_flight: int,
) -> list[BuiltReport]:
    """Fetch concurrently (bounded by the client); render each report as its data arrives,
    in this process or, with ``options.jobs > 1``, in a pool of worker processes."""
    built: list[BuiltReport] = []
    if not reports:
        return built
    auth_error: ApiAuthError | None = None
    renderer: concurrent.futures.Executor | None = None
    if options.jobs > 1 and len(reports) > 1:
        renderer = concurrent.futures.ProcessPoolExecutor(
            max_workers=min(options.jobs, len(reports)),
            mp_context=multiprocessing.get_context("spawn"),
        )
    rendering: dict[concurrent.futures.Future[_Rendered], ReportConfig] = {}
    try:
        with concurrent.futures.ThreadPoolExecutor(
            max_workers=max(1, min(max_in_flight, len(reports))), thread_name_prefix="fetch"
        ) as fetchers:
            fetching = {
                fetchers.submit(fetch_tables, client, r, config, options): r for r in reports
            }
            for future in concurrent.futures.as_completed(fetching):
                report = fetching[future]
                try:
                    tables = future.result()
                except ApiAuthError as exc:
                    auth_error = exc
                    for other in fetching:
                        other.cancel()
                    _fail(outcomes[report.name], exc, progress)
                    continue
                except Exception as exc:
                    _fail(outcomes[report.name], _as_reporter_error(exc, report), progress)
                    continue
                progress(report.name, f"fetched: {tables.totals.credits:,.0f} credits")
                if renderer is None:
                    _collect(
                        _render_safely(report, tables, config, options),
                        report,
                        built,
                        outcomes,
                        progress,
                    )
                else:
                    job = renderer.submit(_render_safely, report, tables, config, options)
                    rendering[job] = report
        for job in concurrent.futures.as_completed(rendering):
            try:
                result = job.result()
            except Exception as exc:  # a worker process died (out of memory, killed)
                result = _as_reporter_error(exc, rendering[job]).message, "run again"
            _collect(result, rendering[job], built, outcomes, progress)
    finally:
        if renderer is not None:
            renderer.shutdown(cancel_futures=True)
    if auth_error is not None:
        raise auth_error
    order = {r.name: i for i, r in enumerate(reports)}
    return sorted(built, key=lambda b: order[b.report.name])


_Rendered = BuiltReport | tuple[str, str | None]


def _render_safely(
    report: ReportConfig, tables: ReportTables, config: Config, options: RunOptions
) -> _Rendered:
    """Render one report; a failure comes back as (message, hint), which pickles cleanly
    across processes where exceptions with keyword arguments do not."""
    try:
        return render_report(report, tables, config, options)
    except Exception as exc:
        error = _as_reporter_error(exc, report)
        return (error.message, error.hint)


def _collect(
    result: _Rendered,
    report: ReportConfig,
    built: list[BuiltReport],
    outcomes: dict[str, Outcome],
    progress: Progress,
) -> None:
    if isinstance(result, BuiltReport):
        built.append(result)
        progress(report.name, f"wrote {result.pdf_path}")
    else:
        _fail(outcomes[report.name], ReporterError(result[0], hint=result[1]), progress)


def _as_reporter_error(exc: BaseException, report: ReportConfig) -> ReporterError:
    """Our own errors pass through; anything else is a bug that costs one report, not the run."""
    if isinstance(exc, ReporterError):
        return exc
    log.debug("unexpected error in report %s", report.name, exc_info=exc)
    return ReporterError(
        f"internal error: {type(exc).__name__}: {exc}",
        hint="run with --verbose for details, and report it",
    )


def _fail(outcome: Outcome, exc: ReporterError, progress: Progress) -> None:
    outcome.status = "failed"
    outcome.detail = str(exc)
    progress(outcome.report, outcome.line(), done=True)
