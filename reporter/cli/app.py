"""The ``reporter`` command line: the only place errors become exit statuses.

Exit status: 0 every report delivered (or already had been); 1 some reports
failed or are unconfirmed (the others were still delivered); 2 bad usage,
config, environment or ledger, or a rejected API key; 130 and 143 stopped by
SIGINT and SIGTERM.

This module holds the group and what every command shares (errors, redaction,
logging, the summary); the commands live in ``reports`` (run, watch) and
``tools`` (check, demo, sandbox, history).

Help, ``--version``, ``history`` and refused input must answer at once, so these
modules import only what defining the commands needs; pandas, httpx, the renderer,
rich and the config schema are imported by the code that uses them, once the input
has been checked (tests/test_cli_imports.py holds them to it).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import os
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from reporter import __version__
from reporter.errors import ReporterError, UsageError
from reporter.files import default_templates_dir
from reporter.lifetime import Interrupted, exit_now
from reporter.periods import Period, last_complete_month, parse_period
from reporter.redact import Redactor
from reporter.shards import Shard, parse_shard
from reporter.summary import Outcome, markdown_summary, text_summary

if TYPE_CHECKING:
    from reporter.chat.post import ChatSender
    from reporter.config import ApiOptions, Config, ReportConfig
    from reporter.environment import ApiSettings
    from reporter.jobs import Progress, RunOptions
    from reporter.magnific import RetryPolicy

log = logging.getLogger("reporter")

DEFAULT_STATE = Path(".reporter/state.sqlite3")
WEBHOOKS = ("slack:", "teams:")  # chat recipients whose variable holds a secret URL


# What is true after Ctrl-C, per command: only `run` and `watch` deliver anything.
INTERRUPTED = {
    "run": "delivered reports are recorded and will not be sent again; run again to finish"
    " the rest.",
    "watch": "alerts already sent are recorded and will not be sent again; run again to"
    " finish the rest.",
    "check": "the check stopped before it finished; it sends nothing, so nothing was sent.",
}


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
            said = INTERRUPTED.get(ctx.invoked_subcommand or "", "stopped.")
            click.echo(f"Interrupted{name}: {said}", err=True)
            exit_now(code)


_REDACT = "reporter.redact"  # the invocation's Redactor, in click's shared ctx.meta


def redactor() -> Redactor:
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


class RedactedProgress:
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


def redact_variables(names: Sequence[str]) -> None:
    """Add the values of ``names`` (the webhook variables the config names) to what this
    invocation redacts, in printed text and in log lines alike."""
    ctx = click.get_current_context()
    redact = redactor().also(os.environ, names)
    ctx.meta[_REDACT] = redact
    for handler in logging.getLogger().handlers:
        if isinstance(handler.formatter, _RedactingFormatter):
            handler.formatter.redact = redact


def chat_edge(
    config: Config, reports: Sequence[ReportConfig], *, dry_run: bool, preview: bool
) -> ChatSender | None:
    """The chat sender for the reports' channels, every webhook variable read now, before
    any request; None when nothing is to be posted (a dry run, a preview, no channel)."""
    channels = {r.name: config.chat_channels_for(r) for r in reports}
    redact_variables(
        [c.partition(":")[2] for cs in channels.values() for c in cs if c.startswith(WEBHOOKS)]
    )
    if dry_run or preview or not any(channels.values()):
        return None
    from reporter.chat.post import ChatSender, chat_settings

    return ChatSender(chat_settings(channels, os.environ), retry=retry_policy(config.api))


def setup_logging(verbose: bool, quiet: bool) -> None:
    level = logging.DEBUG if verbose else (logging.ERROR if quiet else logging.WARNING)
    handler = _StderrHandler()
    handler.setFormatter(_RedactingFormatter("%(levelname)s %(name)s: %(message)s", redactor()))
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


def sharded_reports(
    config: Config, names: Sequence[str], shard_text: str | None, source: str
) -> tuple[list[ReportConfig], Shard | None]:
    """The reports named (all by default), narrowed to this runner's ``--shard``."""
    selected = select_reports(config, names, source)
    shard = parse_shard(shard_text) if shard_text else None
    if shard is not None:
        selected = shard.select(selected, lambda r: r.name)
    return selected, shard


def sending_edges(out_dir: Path, *, dry_run: bool, quiet: bool) -> tuple[ApiSettings, Any]:
    """The API settings and the mail sender (None for a dry run), read from the environment
    once the output directory is known to be writable: all before any request."""
    from reporter.environment import api_settings, smtp_settings

    api = api_settings(os.environ)
    warn_if_key_in_clear(api.base_url, quiet)
    check_out_dir(out_dir)
    if dry_run:
        return api, None
    smtp = smtp_settings(os.environ)
    from reporter.mail import SmtpSender

    return api, SmtpSender(smtp)


def now_utc() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def resolve_period(text: str | None, now: dt.datetime) -> Period:
    return parse_period(text, today=now.date()) if text else last_complete_month(now.date())


@dataclass(frozen=True)
class PeriodGroups:
    """The reports of a run by the period each covers: ``--period 2026-11`` is November
    for a calendar report and Nov 15 - Dec 14 for one billed on the 15th, and each group
    runs on its own (its files, ledger rows and per-owner mails are that period's)."""

    groups: tuple[tuple[Period, tuple[ReportConfig, ...]], ...]
    label: str  # for the summary: the period, or each one when they differ
    first: Period  # the first group's; the typed or default period when there is none
    order: tuple[str, ...]  # the reports as selected

    def each(
        self,
        job: Callable[[list[ReportConfig], RunOptions], list[Outcome]],
        options: RunOptions,
    ) -> list[Outcome]:
        """``job`` on each group's reports with its period, one group after the other; the
        outcomes in the order the reports were selected."""
        outcomes = [
            outcome
            for period, reports in self.groups
            for outcome in job(list(reports), dataclasses.replace(options, period=period))
        ]
        by_name = {outcome.report: outcome for outcome in outcomes}
        return [by_name[name] for name in self.order if name in by_name]


def report_periods(
    config: Config, reports: Sequence[ReportConfig], text: str | None, now: dt.datetime
) -> PeriodGroups:
    typed = resolve_period(text, now) if text else None
    groups: dict[Period, list[ReportConfig]] = {}
    for report in reports:
        groups.setdefault(config.period_for(report, typed, now.date()), []).append(report)
    first = next(iter(groups), None) or resolve_period(text, now)
    return PeriodGroups(
        tuple((p, tuple(rs)) for p, rs in groups.items()),
        ", ".join([period.key for period in groups] or [first.key]),
        first,
        tuple(r.name for r in reports),
    )


def select_reports(config: Config, names: Sequence[str], source: str) -> list[ReportConfig]:
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


def templates_from_option(path: Path | None) -> Path:
    """The ``--templates`` directory, checked, or the package's own."""
    if path is None:
        return default_templates_dir()
    # The page and the stylesheet the printer applies to it (the page does not link it).
    for name in ("report.html.j2", "report.css"):
        if not (path / name).is_file():
            raise UsageError(
                f"--templates {path} has no {name}",
                hint="copy the package's templates/ directory and point --templates at the copy",
            )
    return path


def check_out_dir(out_dir: Path) -> None:
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


def warn_if_key_in_clear(base_url: str, quiet: bool) -> None:
    from reporter.environment import sends_key_in_clear

    if sends_key_in_clear(base_url) and not quiet:
        import httpx

        host = httpx.URL(base_url).host
        click.echo(
            f"Warning: MAGNIFIC_API_BASE_URL is plain http:// to {host}:"
            " the API key travels in clear text; use https://",
            err=True,
        )


def finish(
    outcomes: Sequence[Outcome],
    period: str,
    shard: Shard | None = None,
    sender: Any = None,
) -> None:
    """Print the summary (and write GitHub's job summary); exit 1 if any report failed.

    A mail setting that cannot work (``sender.setup_error``: TLS trust, login, port) failed
    every message the same way: after the summary it is the run's one ``Error:`` line."""
    shard_text = str(shard) if shard else ""
    redact = redactor()
    click.echo(redact(text_summary(outcomes, period, shard_text)))
    step_summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if step_summary:
        try:
            with open(step_summary, "a", encoding="utf-8") as summary:
                summary.write(redact(markdown_summary(outcomes, period, shard_text)))
        except OSError as exc:
            log.warning("could not write the job summary to %s: %s", step_summary, exc.strerror)
    setup_error = getattr(sender, "setup_error", None)
    if isinstance(setup_error, ReporterError):
        raise setup_error
    if not all(o.ok for o in outcomes):
        sys.exit(1)


def retry_policy(options: ApiOptions) -> RetryPolicy:
    """The config's [api] table as the client's retry policy."""
    from reporter.magnific import RetryPolicy

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


def main() -> None:
    cli(prog_name="reporter")


# --- options several commands share ------------------------------------------------------

_F = TypeVar("_F", bound=Callable[..., Any])


def config_option() -> Callable[[_F], _F]:
    return click.option(
        "--config",
        "config_path",
        required=True,
        type=click.Path(path_type=Path),
        help="TOML config with [email] and [[reports]].",
    )


def report_option(help: str = "Only this report (repeatable). Default: all.") -> Callable[[_F], _F]:
    return click.option("--report", "report_names", multiple=True, metavar="NAME", help=help)


def out_option(help: str) -> Callable[[_F], _F]:
    return click.option(
        "--out",
        "out_dir",
        type=click.Path(path_type=Path),
        default=Path("out"),
        show_default=True,
        help=help,
    )


def state_option(help: str = "Delivery ledger (SQLite).") -> Callable[[_F], _F]:
    return click.option(
        "--state",
        "state_path",
        type=click.Path(path_type=Path),
        default=DEFAULT_STATE,
        show_default=True,
        help=help,
    )


def shard_option() -> Callable[[_F], _F]:
    return click.option(
        "--shard",
        "shard_text",
        metavar="I/N",
        help="Run only the I-th of N stable shares of the reports (by name), e.g. 2/4.",
    )
