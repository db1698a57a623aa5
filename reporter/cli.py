"""The ``reporter`` command line: the only place errors become exit statuses.

Exit status: 0 every report delivered (or already had been); 1 some reports
failed or are unconfirmed (the others were still delivered); 2 bad usage,
config, environment or ledger, or a rejected API key; 130 and 143 stopped by
SIGINT and SIGTERM.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import sys
import tempfile
from collections.abc import Sequence
from importlib.resources import files
from pathlib import Path
from typing import Any, Literal

import click
import httpx

from reporter import __version__
from reporter.config import ApiOptions, Config, ReportConfig, load_config
from reporter.environment import api_settings, sends_key_in_clear, smtp_settings
from reporter.errors import ReporterError, UsageError
from reporter.jobs import Progress, RunOptions, run
from reporter.ledger import Ledger
from reporter.lifetime import Interrupted, exit_now, stop_on_signals
from reporter.magnific import ENDPOINT, MagnificClient, RetryPolicy
from reporter.periods import Period, last_complete_month, parse_period
from reporter.progress import progress_for
from reporter.redact import Redactor
from reporter.render import default_templates_dir
from reporter.shards import Shard, parse_shard
from reporter.summary import Outcome, markdown_summary, text_summary

log = logging.getLogger("reporter")

DEFAULT_STATE = Path(".reporter/state.sqlite3")


class _Cli(click.Group):
    """Turns ``ReporterError`` into ``Error: ...`` plus a hint, and the right exit status."""

    def invoke(self, ctx: click.Context) -> Any:
        redact = ctx.meta[_REDACT] = Redactor.from_environ(os.environ)
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:  # a bad option: one line and a hint, like our own errors
            click.echo(redact(f"Error: {exc.format_message()}"), err=True)
            command = exc.ctx.command_path if exc.ctx else "reporter"
            click.echo(f"Hint: see '{command} --help'", err=True)
            ctx.exit(exc.exit_code)
        except ReporterError as exc:
            click.echo(redact(f"Error: {exc.message}"), err=True)
            if exc.hint:
                click.echo(redact(f"Hint: {exc.hint}"), err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt as exc:
            code = exc.exit_code if isinstance(exc, Interrupted) else 130
            name = f" by {exc}" if isinstance(exc, Interrupted) else ""
            click.echo(
                f"Interrupted{name}: delivered reports are recorded and will not be sent again;"
                " run again to finish the rest.",
                err=True,
            )
            exit_now(code)


_REDACT = "reporter.redact"  # the invocation's Redactor, in click's shared ctx.meta


def _redactor() -> Redactor:
    """The one Redactor of this invocation: every printed or stored text goes through it."""
    redact = click.get_current_context().meta.get(_REDACT)
    return redact if isinstance(redact, Redactor) else Redactor.from_environ(os.environ)


class _RedactingFormatter(logging.Formatter):
    """No log line may carry a secret, whatever code wrote it, tracebacks included."""

    def __init__(self, fmt: str, redact: Redactor) -> None:
        super().__init__(fmt)
        self.redact = redact

    def format(self, record: logging.LogRecord) -> str:
        return self.redact(super().format(record))


class _RedactedProgress:
    """Progress lines carry servers' error texts, which may quote a secret."""

    def __init__(self, progress: Progress, redact: Redactor) -> None:
        self.progress, self.redact = progress, redact

    def __call__(self, report: str, message: str, /, *, done: bool = False) -> None:
        self.progress(report, self.redact(message), done=done)


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is now, so warnings print above a live progress
    bar (which redirects it) instead of through it."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def _setup_logging(verbose: bool, quiet: bool) -> None:
    level = logging.DEBUG if verbose else (logging.ERROR if quiet else logging.WARNING)
    handler = _StderrHandler()
    handler.setFormatter(_RedactingFormatter("%(levelname)s %(name)s: %(message)s", _redactor()))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    logging.getLogger("reporter").setLevel(level)
    logging.getLogger("httpx").setLevel(logging.INFO if verbose else logging.WARNING)
    for noisy in ("fontTools", "weasyprint"):
        logging.getLogger(noisy).setLevel(logging.ERROR)


@click.group(cls=_Cli, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="reporter")
def cli() -> None:
    """Magnific API credit usage as PDF reports in each manager's inbox.

    \b
    Example:
        reporter run --config config/example.toml --period 2026-10
    """


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def _resolve_period(text: str | None, now: dt.datetime) -> Period:
    return parse_period(text, today=now.date()) if text else last_complete_month(now.date())


def _select(config: Config, names: Sequence[str], source: str) -> list[ReportConfig]:
    if not names:
        return list(config.reports)
    known = {r.name for r in config.reports}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise UsageError(
            f"no report named {', '.join(map(repr, unknown))} in {source}",
            hint=f"reports in the config: {', '.join(sorted(known))}",
        )
    return [config.report(n) for n in dict.fromkeys(names)]


def preview_address(text: str) -> str:
    """The ``--to`` address, checked like an owner's."""
    import email_validator

    try:
        return email_validator.validate_email(text, check_deliverability=False).normalized
    except email_validator.EmailNotValidError as exc:
        raise UsageError(
            f"--to {text!r} is not an email address: {exc}",
            hint="give one address, e.g. --to me@company.com",
        ) from None


def _templates(path: Path | None) -> Path:
    if path is None:
        return default_templates_dir()
    if not (path / "report.html.j2").is_file():
        raise UsageError(
            f"--templates {path} has no report.html.j2",
            hint="copy the package's templates/ directory and point --templates at the copy",
        )
    return path


def _check_out_dir(out_dir: Path) -> None:
    """Before any API call: fetching reports with nowhere to write them is wasted work,
    and would fail each report with an error that does not name --out."""
    if out_dir.exists() and not out_dir.is_dir():
        reason = "it is a file, not a directory"
    else:
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=out_dir, prefix=".reporter-probe."):
                return
        except OSError as exc:
            reason = exc.strerror or str(exc)
    raise UsageError(
        f"--out {out_dir}: cannot write reports there: {reason}",
        hint="pass --out with a directory you can create and write to",
    )


def _warn_if_key_in_clear(base_url: str, quiet: bool) -> None:
    if sends_key_in_clear(base_url) and not quiet:
        host = httpx.URL(base_url).host
        click.echo(
            f"Warning: MAGNIFIC_API_BASE_URL is plain http:// to {host}:"
            " the API key travels in clear text; use https://",
            err=True,
        )


@cli.command("run")
@click.option(
    "--config",
    "config_path",
    required=True,
    type=click.Path(path_type=Path),
    help="TOML config with [email] and [[reports]].",
)
@click.option(
    "--period", help="2026-10 (month), 2026-W43, 2026-Q3 or 2026. Default: last complete month."
)
@click.option(
    "--report",
    "report_names",
    multiple=True,
    metavar="NAME",
    help="Only this report (repeatable). Default: all.",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path),
    default=Path("out"),
    show_default=True,
    help="Where PDFs, CSVs and .eml files are written.",
)
@click.option(
    "--state",
    "state_path",
    type=click.Path(path_type=Path),
    default=DEFAULT_STATE,
    show_default=True,
    help="Delivery ledger (SQLite).",
)
@click.option("--dry-run", is_flag=True, help="Write .eml files instead of sending.")
@click.option("--force", is_flag=True, help="Send again even if already delivered.")
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
    help="Preview: send the reports to this address only, marked Preview; the ledger is"
    " untouched, so the real run still mails every owner.",
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
@click.option(
    "--shard",
    "shard_text",
    metavar="I/N",
    help="Run only the I-th of N stable shares of the reports (by name), e.g. 2/4.",
)
@click.option(
    "--jobs",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="Processes that render reports.",
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
    """Fetch usage, build each report's PDF and email it to the report's owners.

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
    _setup_logging(verbose, quiet)
    now = _now()
    config = load_config(config_path)
    selected = _select(config, report_names, str(config_path))
    shard = parse_shard(shard_text) if shard_text else None
    if shard is not None:
        selected = shard.select(selected, lambda r: r.name)
    the_period = _resolve_period(period, now)
    templates = _templates(templates_dir)
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
        _finish(
            [
                Outcome(r.name, "not_delivered", f"no delivery ledger at {state_path}")
                for r in selected
            ],
            the_period,
            shard,
        )
        return
    api = api_settings(os.environ)
    _warn_if_key_in_clear(api.base_url, quiet)
    _check_out_dir(out_dir)
    sender = None
    if not dry_run:
        from reporter.mail import SmtpSender

        sender = SmtpSender(smtp_settings(os.environ))
    options = RunOptions(
        period=the_period,
        out_dir=out_dir,
        templates_dir=templates,
        now=now,
        dry_run=dry_run,
        force=force,
        pdf_variant=pdf_variant,
        api_url=_redactor()(f"{api.base_url}{ENDPOINT}"),  # printed in every PDF
        jobs=jobs,
        preview_to=preview_to,
    )
    max_in_flight = max_in_flight or config.api.max_in_flight
    with (
        stop_on_signals(),
        MagnificClient(api, retry=retry_policy(config.api), max_in_flight=max_in_flight) as client,
        progress_for([r.name for r in selected], quiet=quiet, verbose=verbose) as progress,
    ):
        if recheck:
            from reporter.jobs.recheck import recheck as recheck_run

            with Ledger(state_path, redact=_redactor()) as state:
                outcomes = recheck_run(
                    config,
                    selected,
                    options,
                    client=client,
                    sender=sender,
                    ledger=state,
                    progress=_RedactedProgress(progress, _redactor()),
                )
        else:
            outcomes = _run_reports(
                config, selected, options, client, sender, state_path, progress, max_in_flight
            )
    _finish(outcomes, the_period, shard)


@cli.command("watch")
@click.option(
    "--config",
    "config_path",
    required=True,
    type=click.Path(path_type=Path),
    help="TOML config with [email] and [[reports]].",
)
@click.option(
    "--date",
    "date_text",
    metavar="YYYY-MM-DD",
    help="Watch the month containing this day, with data through it. Default: today (UTC).",
)
@click.option(
    "--report",
    "report_names",
    multiple=True,
    metavar="NAME",
    help="Only this report (repeatable). Default: all.",
)
@click.option(
    "--state",
    "state_path",
    type=click.Path(path_type=Path),
    default=DEFAULT_STATE,
    show_default=True,
    help="Delivery ledger (SQLite), shared with `run`.",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path),
    default=Path("out"),
    show_default=True,
    help="Where the alerts' .eml files are written.",
)
@click.option("--dry-run", is_flag=True, help="Write .eml files, send and record nothing.")
@click.option(
    "--shard",
    "shard_text",
    metavar="I/N",
    help="Run only the I-th of N stable shares of the reports (by name), e.g. 2/4.",
)
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

    Each alert goes to each owner once (the ledger of `run` records it); one request
    per report, no PDF. Run it daily; exit status as for `run`.

    \b
    Example:
        reporter watch --config config/example.toml --date 2026-11-12 --dry-run
    """
    from reporter.jobs.watch import WatchOptions, watch

    _setup_logging(verbose, quiet)
    now = _now()
    config = load_config(config_path)
    selected = _select(config, report_names, str(config_path))
    shard = parse_shard(shard_text) if shard_text else None
    if shard is not None:
        selected = shard.select(selected, lambda r: r.name)
    try:
        day = dt.date.fromisoformat(date_text) if date_text else now.date()
    except ValueError:
        raise UsageError(
            f"--date {date_text!r} is not a date", hint="give a day as YYYY-MM-DD, e.g. 2026-11-12"
        ) from None
    api = api_settings(os.environ)
    _warn_if_key_in_clear(api.base_url, quiet)
    _check_out_dir(out_dir)
    sender = None
    if not dry_run:
        from reporter.mail import SmtpSender

        sender = SmtpSender(smtp_settings(os.environ))
    options = WatchOptions(
        date=day, out_dir=out_dir, templates_dir=default_templates_dir(), now=now, dry_run=dry_run
    )
    with (
        stop_on_signals(),
        MagnificClient(
            api, retry=retry_policy(config.api), max_in_flight=config.api.max_in_flight
        ) as client,
        progress_for([r.name for r in selected], quiet=quiet, verbose=verbose) as progress,
    ):
        ledger = None if dry_run else Ledger(state_path, redact=_redactor())
        try:
            outcomes = watch(
                config,
                selected,
                options,
                client=client,
                sender=sender,
                ledger=ledger,
                progress=_RedactedProgress(progress, _redactor()),
                max_in_flight=config.api.max_in_flight,
            )
        finally:
            if ledger is not None:
                ledger.close()
    _finish(outcomes, options.month, shard)


def _run_reports(
    config: Config,
    selected: list[ReportConfig],
    options: RunOptions,
    client: MagnificClient,
    sender: Any,
    state_path: Path,
    progress: Progress,
    max_in_flight: int,
) -> list[Outcome]:
    ledger = (
        None if options.dry_run or options.preview_to else Ledger(state_path, redact=_redactor())
    )
    try:
        return run(
            config,
            selected,
            options,
            client=client,
            sender=sender,
            ledger=ledger,
            progress=_RedactedProgress(progress, _redactor()),
            max_in_flight=max_in_flight,
        )
    finally:
        if ledger is not None:
            ledger.close()


def _finish(outcomes: Sequence[Outcome], period: Period, shard: Shard | None = None) -> None:
    """Print the summary (and write GitHub's job summary); exit 1 if any report failed."""
    shard_text = str(shard) if shard else ""
    redact = _redactor()
    click.echo(redact(text_summary(outcomes, period.key, shard_text)))
    step_summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if step_summary:
        try:
            with open(step_summary, "a", encoding="utf-8") as summary:
                summary.write(redact(markdown_summary(outcomes, period.key, shard_text)))
        except OSError as exc:
            log.warning("could not write the job summary to %s: %s", step_summary, exc.strerror)
    if not all(o.ok for o in outcomes):
        sys.exit(1)


def retry_policy(options: ApiOptions) -> RetryPolicy:
    """The config's [api] table as the client's retry policy."""
    return RetryPolicy(
        attempts=options.max_attempts,
        initial_wait=options.initial_wait_seconds,
        max_wait=options.max_wait_seconds,
        total_timeout=options.total_timeout_seconds,
        connect_timeout=options.connect_timeout_seconds,
        read_timeout=options.read_timeout_seconds,
        max_response_bytes=options.max_response_mb * 1024 * 1024,
        date_format=options.date_format,
        end_inclusive=options.end_inclusive,
    )


@cli.command("demo")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path),
    default=Path("out/demo"),
    show_default=True,
    help="Where the demo's PDFs and .eml files go.",
)
@click.option("--period", help="Default: last complete month.")
@click.option("-q", "--quiet", is_flag=True)
def demo_command(out_dir: Path, period: str | None, quiet: bool) -> None:
    """The whole pipeline against the built-in stand-in API: no key, no mail server.

    \b
    Example:
        reporter demo --out out/demo
    """
    from reporter.sandbox import SandboxData, SandboxServer

    _setup_logging(False, quiet)
    now = _now()
    config_path = Path(str(files("reporter").joinpath("example.toml")))
    config = load_config(config_path)
    the_period = _resolve_period(period, now)
    _check_out_dir(out_dir)
    with SandboxServer(SandboxData(today=now.date())) as server:
        options = RunOptions(
            period=the_period,
            out_dir=out_dir,
            templates_dir=default_templates_dir(),
            now=now,
            dry_run=True,
            api_url=f"{server.url}{ENDPOINT} (built-in stand-in)",
        )
        from pydantic import SecretStr

        from reporter.environment import ApiSettings

        settings = ApiSettings(key=SecretStr("demo"), base_url=server.url)
        with (
            MagnificClient(settings, retry=RetryPolicy(attempts=2)) as client,
            progress_for([r.name for r in config.reports], quiet=quiet, verbose=False) as progress,
        ):
            outcomes = run(
                config,
                config.reports,
                options,
                client=client,
                sender=None,
                ledger=None,
                progress=progress,
            )
    click.echo("Files:")
    for outcome in outcomes:
        for path in outcome.files:
            click.echo(f"  {path}")
    _finish(outcomes, the_period)


@cli.command("sandbox")
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option(
    "--users",
    type=click.IntRange(1, 100_000),
    default=48,
    show_default=True,
    help="Size of the synthetic team.",
)
@click.option("--seed", type=int, default=7, show_default=True)
@click.option(
    "--intensity",
    type=click.FloatRange(0, 100),
    default=1.0,
    show_default=True,
    help="How busy the team is: 20 puts nearly everyone on every tool every day.",
)
@click.option("--key", help="Accept only this API key (default: any non-empty key).")
@click.option(
    "--dates",
    type=click.Choice(["date", "datetime", "both"]),
    default="both",
    show_default=True,
    help="Date spellings accepted: 2026-10-01, 2026-10-01T00:00:00.000Z or both.",
)
@click.option(
    "--end",
    type=click.Choice(["inclusive", "exclusive"]),
    default="inclusive",
    show_default=True,
    help="Whether end_date is the range's last day or the day after it.",
)
@click.option(
    "--fault",
    "faults",
    multiple=True,
    metavar="SPEC",
    help="Inject faults into the next requests: 503, 429:2 (Retry-After 2),"
    " slow:1.5, truncate, invalid_json, malformed, trickle:10 (a byte per 0.2 s for"
    " 10 s), oversize:64 or oversize_chunked:64 (a 64 MB body); append xN to repeat.",
)
def sandbox_command(
    port: int,
    host: str,
    users: int,
    seed: int,
    intensity: float,
    key: str | None,
    dates: Literal["date", "datetime", "both"],
    end: Literal["inclusive", "exclusive"],
    faults: tuple[str, ...],
) -> None:
    """Serve the stand-in Magnific API for template work or deployment tests.

    \b
    Example:
        reporter sandbox --port 8080 &
        MAGNIFIC_API_BASE_URL=http://127.0.0.1:8080 MAGNIFIC_API_KEY=any \\
          reporter run --config config/example.toml --dry-run
    """
    from reporter.sandbox import SandboxData, SandboxServer, parse_fault, synthetic_team

    server = SandboxServer(
        SandboxData(synthetic_team(users=users, seed=seed, intensity=intensity)),
        api_key=key,
        host=host,
        port=port,
        dates=dates,
        end=end,
    )
    for spec in faults:
        try:
            server.inject(*parse_fault(spec))
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    try:
        server.start()
    except OSError as exc:
        raise UsageError(
            f"cannot listen on {host}:{port}: {exc.strerror}", hint="choose another --port"
        ) from None
    click.echo(f"Magnific stand-in API on {server.url}{ENDPOINT} ({users} users); Ctrl-C stops it.")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        server.stop()


@cli.command("history")
@click.option(
    "--state",
    "state_path",
    type=click.Path(path_type=Path),
    default=DEFAULT_STATE,
    show_default=True,
)
@click.option("--period", help="Only this period, e.g. 2026-10.")
def history_command(state_path: Path, period: str | None) -> None:
    """Print the delivery ledger: who was sent which report, when, and how it went.

    \b
    Example:
        reporter history --period 2026-10
    """
    _setup_logging(False, False)
    if not state_path.exists():
        raise UsageError(
            f"no delivery ledger at {state_path}",
            hint="pass --state with the path used by `reporter run`",
        )
    with Ledger(state_path) as ledger:
        rows = ledger.rows(period, message=None)
    if not rows:
        click.echo("No deliveries recorded" + (f" for {period}." if period else "."))
        return
    header = ("period", "report", "message", "recipient", "status", "updated (UTC)", "note")
    table = [
        (r.period, r.report, r.message, r.recipient, r.status, r.updated_at, r.error or "")
        for r in rows
    ]
    widths = [max(len(str(row[i])) for row in [header, *table]) for i in range(6)]
    redact = _redactor()  # rows a run stored before their errors were redacted
    for row in [header, *table]:
        click.echo(
            redact(
                "  ".join(f"{cell:<{widths[i]}}" for i, cell in enumerate(row[:6]))
                + ("  " + row[6] if row[6] else "")
            )
        )


@cli.command("check")
@click.option(
    "--config",
    "config_path",
    required=True,
    type=click.Path(path_type=Path),
    help="TOML config with [email] and [[reports]].",
)
@click.option(
    "--report",
    "report_names",
    multiple=True,
    metavar="NAME",
    help="Only this report's filters (repeatable). Default: all.",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path),
    default=Path("out"),
    show_default=True,
    help="The output directory `run` will use.",
)
@click.option(
    "--state",
    "state_path",
    type=click.Path(path_type=Path),
    default=DEFAULT_STATE,
    show_default=True,
    help="The delivery ledger `run` will use.",
)
@click.option("-v", "--verbose", is_flag=True, help="Every API request.")
def check_command(
    config_path: Path,
    report_names: tuple[str, ...],
    out_dir: Path,
    state_path: Path,
    verbose: bool,
) -> None:
    """Check the API key, the API's date form and end_date, each report's filters,
    the SMTP login, --out and the ledger, sending nothing: one line per item.

    Exit status: 0 all good, 1 something needs attention, 2 cannot start (bad
    config, options or report name). Reads the same environment as `run`.

    \b
    Example:
        reporter check --config config/example.toml
    """
    from reporter.check import exit_status, run_checks, summary_line

    _setup_logging(verbose, False)
    config = load_config(config_path)
    selected = _select(config, report_names, str(config_path))
    findings = run_checks(
        selected,
        config.api,
        retry=retry_policy(config.api),
        environ=os.environ,
        out_dir=out_dir,
        state_path=state_path,
        today=_now().date(),
    )
    for finding in findings:
        click.echo(finding.line())
    click.echo(summary_line(findings))
    sys.exit(exit_status(findings))


def main() -> None:
    cli(prog_name="reporter")
