"""The commands that send: ``run`` (monthly reports, previews, corrections) and ``watch``."""

from __future__ import annotations

import datetime as dt
import functools
import os
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from reporter.cli.app import (
    RedactedProgress,
    chat_edge,
    cli,
    config_option,
    finish,
    now_utc,
    out_option,
    preview_address,
    redactor,
    report_option,
    report_periods,
    retry_policy,
    sending_edges,
    setup_logging,
    shard_option,
    sharded_reports,
    state_option,
    templates_from_option,
)
from reporter.errors import UsageError
from reporter.files import default_templates_dir
from reporter.ledger import Ledger
from reporter.lifetime import stop_on_signals
from reporter.summary import Outcome

if TYPE_CHECKING:
    from reporter.chat.post import ChatSender
    from reporter.cli.app import PeriodGroups
    from reporter.config import Config
    from reporter.jobs import Progress, RunOptions
    from reporter.magnific import MagnificClient


@cli.command("run")
@config_option()
@click.option(
    "--period",
    help="2026-10 (month; a report with billing_day: the cycle that starts in it), 2026-W43,"
    " 2026-Q3 or 2026. Default: the last complete month (or cycle).",
)
@report_option()
@out_option("Where PDFs, CSVs and .eml files are written.")
@state_option("Delivery ledger (SQLite).")
@click.option(
    "--dry-run", is_flag=True, help="Write .eml files (reports and statements) instead of sending."
)
@click.option(
    "--force", is_flag=True, help="Send again (reports and statements) even if already delivered."
)
@click.option(
    "--recheck",
    is_flag=True,
    help="Re-fetch the period's delivered reports and send owners a corrected report where"
    " late usage moved the total by more than correction_threshold_percent.",
)
@click.option(
    "--to",
    "preview_to",
    metavar="ADDRESS",
    help="Preview: send the reports (and the first three personal statements) to this"
    " address only, marked Preview; the ledger is untouched, so the real run still mails"
    " every owner.",
)
@click.option(
    "--templates",
    "templates_dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="A customised copy of the templates directory.",
)
@click.option(
    "--pdf-variant",
    type=click.Choice(["pdf/ua-1", "pdf/a-3b"]),
    help="Accessible PDF/UA-1 (default) or archival PDF/A-3b with the CSV embedded.",
)
@click.option(
    "--max-in-flight",
    type=click.IntRange(1, 32),
    help="API requests in flight at once. Default: [api] max_in_flight, or 4.",
)
@shard_option()
@click.option(
    "--jobs",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="Printer processes: each prints PDFs while the run composes the next reports.",
)
@click.option(
    "-v", "--verbose", is_flag=True, help="Every step of every report, and every API request."
)
@click.option("-q", "--quiet", is_flag=True, help="Only errors and the summary.")
def run_command(
    config_path: Path,
    period: str | None,
    report_names: tuple[str, ...],
    out_dir: Path,
    state_path: Path,
    dry_run: bool,
    force: bool,
    recheck: bool,
    preview_to: str | None,
    templates_dir: Path | None,
    pdf_variant: str | None,
    max_in_flight: int | None,
    shard_text: str | None,
    jobs: int,
    verbose: bool,
    quiet: bool,
) -> None:
    """Fetch usage, build each report's PDF and email it to the report's owners, and
    to each user of a report with statements = true their own usage statement.

    Reads MAGNIFIC_API_KEY (and MAGNIFIC_API_BASE_URL) and, unless --dry-run,
    SMTP_HOST, SMTP_PORT, SMTP_USERNAME, SMTP_PASSWORD and SMTP_SECURITY.
    With GITHUB_STEP_SUMMARY set (GitHub Actions), appends a table of the
    reports to that file. SIGINT or SIGTERM stops the run within seconds
    (exit 130 or 143); what was delivered stays recorded.

    \b
    Examples:
        reporter run --config config/example.toml --period 2026-10 --dry-run
        reporter run --config config/example.toml --to me@company.com
        reporter run --config config/example.toml --period 2026-10 --recheck
    """
    from reporter.config import load_config

    setup_logging(verbose, quiet)
    now = now_utc()
    config = load_config(config_path)
    selected, shard = sharded_reports(config, report_names, shard_text, str(config_path))
    periods = report_periods(config, selected, period, now)
    templates = templates_from_option(templates_dir)
    if preview_to is not None:
        preview_to = preview_address(preview_to)
        if dry_run:
            raise UsageError("--to sends a preview; --dry-run sends nothing", hint="drop one")
    if recheck and (preview_to is not None or force):
        raise UsageError(
            f"--recheck corrects what was delivered; it cannot be used with"
            f" {'--to' if preview_to is not None else '--force'}",
            hint="run --recheck on its own",
        )
    if recheck and not state_path.exists():
        # Nothing was ever delivered from this ledger, so there is nothing to correct.
        finish(
            [
                Outcome(r.name, "not_delivered", f"no delivery ledger at {state_path}")
                for r in selected
            ],
            periods.label,
            shard,
        )
        return
    api, sender = sending_edges(out_dir, dry_run=dry_run, quiet=quiet)
    chat = chat_edge(config, selected, dry_run=dry_run, preview=preview_to is not None)
    # Every input is checked: from here on the run needs the whole machinery.
    from reporter.chat.message import run_url
    from reporter.jobs import RunOptions
    from reporter.magnific import ENDPOINT, MagnificClient
    from reporter.progress import progress_for

    options = RunOptions(
        period=periods.first,
        out_dir=out_dir,
        templates_dir=templates,
        now=now,
        dry_run=dry_run,
        force=force,
        pdf_variant=pdf_variant,
        api_url=redactor()(f"{api.base_url}{ENDPOINT}"),  # printed in every PDF
        jobs=jobs,
        preview_to=preview_to,
        run_url=run_url(os.environ),
    )
    max_in_flight = max_in_flight or config.api.max_in_flight
    with (
        stop_on_signals(),
        MagnificClient(api, retry=retry_policy(config.api), max_in_flight=max_in_flight) as client,
        progress_for([r.name for r in selected], quiet=quiet, verbose=verbose) as progress,
        chat or nullcontext(),
    ):
        outcomes = run_reports(
            config,
            periods,
            options,
            client,
            sender,
            state_path,
            progress,
            max_in_flight,
            chat,
            recheck=recheck,
        )
    finish(outcomes, periods.label, shard, sender)


@cli.command("watch")
@config_option()
@click.option(
    "--date",
    "date_text",
    metavar="YYYY-MM-DD",
    help="Watch the month containing this day, with data through the end of it. Default:"
    " yesterday (UTC), the last complete day, so the 1st watches the month just ended.",
)
@report_option()
@state_option("Delivery ledger (SQLite), shared with `run`.")
@out_option("Where the alerts' .eml files are written.")
@click.option("--dry-run", is_flag=True, help="Write .eml files, send and record nothing.")
@shard_option()
@click.option("-v", "--verbose", is_flag=True, help="Every step, and every API request.")
@click.option("-q", "--quiet", is_flag=True, help="Only errors and the summary.")
def watch_command(
    config_path: Path,
    date_text: str | None,
    report_names: tuple[str, ...],
    state_path: Path,
    out_dir: Path,
    dry_run: bool,
    shard_text: str | None,
    verbose: bool,
    quiet: bool,
) -> None:
    """Check each report's month so far and email its owners each alert newly due:
    a budget threshold reached, a month-end forecast above the budget, a usage spike.

    The data runs through the end of yesterday (UTC), the last complete day, unless
    --date says otherwise; on the 1st that is the month just ended, so what became due
    on its last day is still sent. Each alert goes to each owner once (the ledger of
    `run` records it); one request per report, no PDF. Run it daily; exit status as
    for `run`.

    \b
    Example:
        reporter watch --config config/example.toml --date 2026-11-12 --dry-run
    """
    from reporter.config import load_config

    setup_logging(verbose, quiet)
    now = now_utc()
    config = load_config(config_path)
    selected, shard = sharded_reports(config, report_names, shard_text, str(config_path))
    day = watch_date(date_text, now.date())
    api, sender = sending_edges(out_dir, dry_run=dry_run, quiet=quiet)
    chat = chat_edge(config, selected, dry_run=dry_run, preview=False)
    # Every input is checked: from here on the watch needs the whole machinery.
    from reporter.chat.message import run_url
    from reporter.jobs.watch import WatchOptions, watch
    from reporter.magnific import MagnificClient
    from reporter.progress import progress_for

    options = WatchOptions(
        date=day,
        out_dir=out_dir,
        templates_dir=default_templates_dir(),
        now=now,
        dry_run=dry_run,
        run_url=run_url(os.environ),
    )
    with (
        stop_on_signals(),
        MagnificClient(
            api, retry=retry_policy(config.api), max_in_flight=config.api.max_in_flight
        ) as client,
        progress_for([r.name for r in selected], quiet=quiet, verbose=verbose) as progress,
        chat or nullcontext(),
    ):
        ledger = None if dry_run else Ledger(state_path, redact=redactor())
        try:
            outcomes = watch(
                config,
                selected,
                options,
                client=client,
                sender=sender,
                ledger=ledger,
                progress=RedactedProgress(progress, redactor()),
                max_in_flight=config.api.max_in_flight,
                chat=chat,
            )
        finally:
            if ledger is not None:
                ledger.close()
    watched = dict.fromkeys(config.period_containing(r, day).key for r in selected)
    finish(outcomes, ", ".join(watched) or options.month.key, shard, sender)


def watch_date(text: str | None, today: dt.date) -> dt.date:
    """The day ``watch`` has data through: ``--date``, or the last complete day (UTC).

    Today is never the default: at 07:00 the API holds a few hours of it, and a forecast
    or threshold on a partial day understates the month."""
    if not text:
        return today - dt.timedelta(days=1)
    try:
        day = dt.date.fromisoformat(text)
    except ValueError:
        raise UsageError(
            f"--date {text!r} is not a date", hint="give a day as YYYY-MM-DD, e.g. 2026-11-12"
        ) from None
    if day > today:
        raise UsageError(
            f"--date {text} is in the future (today is {today.isoformat()}, UTC)",
            hint="give a day up to today; without --date, watch uses yesterday, the last"
            " complete day",
        )
    return day


def run_reports(
    config: Config,
    periods: PeriodGroups,
    options: RunOptions,
    client: MagnificClient,
    sender: Any,
    state_path: Path,
    progress: Progress,
    max_in_flight: int,
    chat: ChatSender | None = None,
    *,
    recheck: bool = False,
) -> list[Outcome]:
    """The reports (or, with ``recheck``, their corrections) through the ledger, which a
    dry run or a preview does not open; a recheck always reads it."""
    from reporter.jobs import run

    use_ledger = recheck or not (options.dry_run or options.preview_to)
    ledger = Ledger(state_path, redact=redactor()) if use_ledger else None
    redacted = RedactedProgress(progress, redactor())
    try:
        job: Callable[..., list[Outcome]]
        if recheck:
            from reporter.jobs.recheck import recheck as job

            assert ledger is not None
        else:
            job = functools.partial(run, max_in_flight=max_in_flight)
        return periods.each(
            functools.partial(
                job,
                config,
                client=client,
                sender=sender,
                ledger=ledger,
                progress=redacted,
                chat=chat,
            ),
            options,
        )
    finally:
        if ledger is not None:
            ledger.close()
