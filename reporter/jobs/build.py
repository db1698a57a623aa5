"""Building a report: fetch its usage, print its PDF, write its CSV and its message.

Everything a report produces is on disk before anything is sent, and what
comes back to the run is a small record of paths: a printer process hands
back no bytes, and the run keeps nothing of a report it has written.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pandas as pd

from reporter import charts
from reporter.config import Config, ReportConfig
from reporter.files import write_atomic
from reporter.insights import find_insights
from reporter.magnific import MagnificClient, UsageQuery
from reporter.memory import release_freed
from reporter.money import line_amounts
from reporter.outbox import Outbox
from reporter.periods import Period
from reporter.prices import Prices
from reporter.printer import PrintJob, print_job
from reporter.render import Formatter, render_template, translations
from reporter.report import Figure, Source, build_context, chart_labels
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
    preview_to: str | None = None  # --to: send every report to this address only, no ledger
    run_url: str | None = None  # the CI run with the PDFs, linked from chat messages
    outbox_dir: Path | None = None  # where messages for delivery go; None: dry run, preview

    @property
    def outbox(self) -> Outbox | None:
        return Outbox(self.outbox_dir) if self.outbox_dir is not None else None


@dataclass
class BuiltReport:
    report: ReportConfig
    locale: str
    tables: ReportTables
    context: dict[str, Any]
    pdf_path: Path
    csv_path: Path
    chart_png: bytes | None  # the email's inline chart; None when there is nothing to draw
    prices: Prices | None = None  # the CSV's amounts; None: credits only


class Progress(Protocol):
    """Told of each step of each report; ``done`` marks the report's final status."""

    def __call__(self, report: str, message: str, /, *, done: bool = False) -> None: ...


def quiet_progress(report: str, message: str, /, *, done: bool = False) -> None:
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
    # A period in progress is compared with the same days of earlier ones: history by day.
    complete = period.is_complete(options.now.date())
    history_query = UsageQuery.for_filters(
        period.history_granularity if complete else "day",
        period.history()[0].start,
        period.end,
        report.filters,
    )
    detail = tidy_frame(client.fetch_usage(detail_query))
    history = tidy_frame(client.fetch_usage(history_query))
    budget = config.budget_for(report, period)
    tables = build_tables(
        detail,
        history,
        period,
        top_users=config.top_users_for(report),
        budget=budget.credits if budget else None,
        today=options.now.date(),
        history_granularity=history_query.granularity,
    )
    del detail, history
    release_freed()  # the answers' parse left the heap full of holes
    return tables


@dataclass
class Composed:
    """A report's page as HTML, before it is printed, and what the email reuses."""

    html: str
    locale: str
    context: dict[str, Any]
    chart_png: bytes | None  # the email's inline chart; None when there is nothing to draw


def compose_report(
    report: ReportConfig,
    tables: ReportTables,
    config: Config,
    options: RunOptions,
    *,
    correction: dict[str, float] | None = None,
    statement_count: int | None = None,
) -> Composed:
    """Charts and HTML for one report; ``correction`` (sent and current credits) marks
    it as correcting one delivered before (``run --recheck``); ``statement_count``: how
    many of its users get a personal statement (None: it sends none)."""
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
            in_progress=tables.totals.in_progress is not None,
            forecast=tables.totals.in_progress.forecast if tables.totals.in_progress else None,
        )
    if not tables.empty:
        specs["daily"] = charts.daily_spec(
            tables.daily, tables.tool_order, labels, granularity=period.detail_granularity
        )
    titles = {
        "daily": labels.daily_title,
        "history": labels.history_title,
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
        prices=config.prices_for(report),
        budget_choice=config.budget_for(report, period),
    )
    context["correction"] = correction
    context["statement_count"] = statement_count
    html = render_template(options.templates_dir, "report.html.j2", locale, context)
    return Composed(html, locale, context, chart_png)


def prepare_report(
    report: ReportConfig,
    tables: ReportTables,
    config: Config,
    options: RunOptions,
    *,
    correction: dict[str, float] | None = None,
    statement_count: int | None = None,
) -> tuple[BuiltReport, PrintJob]:
    """Everything the printing needs: charts, HTML, and the job that prints
    ``<name>.pdf`` (here, or in a printer process). ``write_csv`` writes the CSV."""
    composed = compose_report(
        report,
        tables,
        config,
        options,
        correction=correction,
        statement_count=statement_count,
    )
    period = tables.period
    variant = options.pdf_variant or config.defaults.pdf_variant
    attachments = (
        (
            (
                f"{report.name}-{period.key}.csv",
                _csv_bytes(tables, config.prices_for(report)),
                "Usage rows behind this report",
            ),
        )
        if variant == "pdf/a-3b"
        else ()
    )
    folder = options.out_dir / period.key
    job = PrintJob(
        composed.html,
        options.templates_dir,
        folder / f"{report.name}.pdf",
        variant=variant,
        attachments=attachments,
        identifier=f"{report.name}/{period.key}",
    )
    built = BuiltReport(
        report,
        composed.locale,
        tables,
        composed.context,
        job.path,
        folder / f"{report.name}.csv",
        composed.chart_png,
        config.prices_for(report),
    )
    return built, job


def write_csv(built: BuiltReport, job: PrintJob) -> None:
    """``<name>.csv``: the usage rows behind the report. Written while a printer prints
    the PDF (a big team's million rows take about a second); the very bytes the PDF
    embeds, when it embeds them (PDF/A-3b), rather than written out a second time."""
    if job.attachments:
        write_atomic(built.csv_path, job.attachments[0][1])
    else:  # written as it is formatted: a big team's CSV is never whole in memory
        write_atomic(
            built.csv_path,
            lambda file: _csv_frame(built.tables, built.prices).to_csv(file, index=False),
        )


def _csv_frame(tables: ReportTables, prices: Prices | None) -> pd.DataFrame:
    """The CSV's lines; with a price, each line's ``amount`` at its day's price (empty on
    a day without one)."""
    frame = csv_frame(tables.detail)
    if prices is not None:
        frame = frame.assign(amount=line_amounts(tables.detail, prices))
    return frame


def _csv_bytes(tables: ReportTables, prices: Prices | None) -> bytes:
    return _csv_frame(tables, prices).to_csv(index=False).encode()


def render_report(
    report: ReportConfig,
    tables: ReportTables,
    config: Config,
    options: RunOptions,
    *,
    correction: dict[str, float] | None = None,
) -> BuiltReport:
    """Charts, HTML and PDF for one report, printed in this process; writes
    ``<name>.pdf`` and ``<name>.csv``."""
    built, job = prepare_report(report, tables, config, options, correction=correction)
    print_job(job)
    write_csv(built, job)
    return built
