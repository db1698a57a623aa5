"""The commands around a run: ``check`` (first contact), ``demo``, ``sandbox``, ``history``."""

from __future__ import annotations

import functools
import os
import sys
from collections import Counter
from collections.abc import Sequence
from importlib.resources import files
from pathlib import Path
from typing import Literal

import click

from reporter.cli.app import (
    DEFAULT_STATE,
    check_out_dir,
    cli,
    config_option,
    finish,
    now_utc,
    out_option,
    redactor,
    report_option,
    report_periods,
    retry_policy,
    select_reports,
    setup_logging,
    state_option,
)
from reporter.errors import UsageError
from reporter.files import default_templates_dir
from reporter.ledger import Delivery, Ledger
from reporter.periods import answers_to
from reporter.statements import STATEMENT


@cli.command("demo")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path),
    default=Path("out/demo"),
    show_default=True,
    help="Where the demo's PDFs and .eml files go.",
)
@click.option("--period", help="Default: the last complete month (or billing cycle).")
@click.option("-q", "--quiet", is_flag=True)
def demo_command(out_dir: Path, period: str | None, quiet: bool) -> None:
    """The whole pipeline against the built-in stand-in API: no key, no mail server.

    \b
    Example:
        reporter demo --out out/demo
    """
    from reporter.config import load_config
    from reporter.jobs import RunOptions, run
    from reporter.magnific import ENDPOINT, MagnificClient, RetryPolicy
    from reporter.progress import progress_for
    from reporter.sandbox import SandboxData, SandboxServer

    setup_logging(False, quiet)
    now = now_utc()
    config_path = Path(str(files("reporter").joinpath("example.toml")))
    config = load_config(config_path)
    periods = report_periods(config, config.reports, period, now)
    check_out_dir(out_dir)
    with SandboxServer(SandboxData(today=now.date())) as server:
        options = RunOptions(
            period=periods.first,
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
            outcomes = periods.each(
                functools.partial(
                    run, config, client=client, sender=None, ledger=None, progress=progress
                ),
                options,
            )
    click.echo("Files:")
    for outcome in outcomes:
        for path in outcome.files:
            click.echo(f"  {path}")
    finish(outcomes, periods.label)


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
    from reporter.magnific import ENDPOINT
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
            raise UsageError(str(exc), hint="see 'reporter sandbox --help' for --fault") from None
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
    setup_logging(False, False)
    if not state_path.exists():
        raise UsageError(
            f"no delivery ledger at {state_path}",
            hint="pass --state with the path used by `reporter run`",
        )
    with Ledger(state_path) as ledger:
        rows = ledger.rows(None, message=None)
    if period:  # --period 2026-10 also finds a billing cycle that starts in October
        rows = [r for r in rows if answers_to(r.period, period.strip())]
    if not rows:
        click.echo("No deliveries recorded" + (f" for {period}." if period else "."))
        return
    header = ("period", "report", "message", "recipient", "status", "updated (UTC)", "note")
    # A report row names the version its message carries ("report:v2": see `run --recheck`).
    table = [
        (
            r.period,
            r.report,
            r.message if r.version is None else f"{r.message}:v{r.version}",
            r.recipient,
            r.status,
            r.updated_at,
            r.error or "",
        )
        for r in rows
        if r.message != STATEMENT
    ]
    # Personal statements, thousands a report: one line a report and period, counted.
    table += statement_lines(rows)
    table.sort(key=lambda row: (row[1], row[2]))
    table.sort(key=lambda row: row[0], reverse=True)
    widths = [max(len(str(row[i])) for row in [header, *table]) for i in range(6)]
    redact = redactor()  # rows a run stored before their errors were redacted
    for row in [header, *table]:
        click.echo(
            redact(
                "  ".join(f"{cell:<{widths[i]}}" for i, cell in enumerate(row[:6]))
                + ("  " + row[6] if row[6] else "")
            )
        )


@cli.command("check")
@config_option()
@report_option("Only this report's filters (repeatable). Default: all.")
@out_option("The output directory `run` will use.")
@state_option("The delivery ledger `run` will use.")
@click.option("-v", "--verbose", is_flag=True, help="Every API request.")
def check_command(
    config_path: Path,
    report_names: tuple[str, ...],
    out_dir: Path,
    state_path: Path,
    verbose: bool,
) -> None:
    """Check the API key, the API's date form and end_date, each report's filters,
    the SMTP login, the chat webhook variables, --out and the ledger, and list the
    alerts `watch` sends for each report and the price per credit its amounts use,
    sending nothing: one line per item.

    Exit status: 0 all good, 1 something needs attention, 2 cannot start (bad
    config, options or report name). Reads the same environment as `run`.

    \b
    Example:
        reporter check --config config/example.toml
    """
    from reporter.config import load_config

    setup_logging(verbose, False)
    config = load_config(config_path)
    selected = select_reports(config, report_names, str(config_path))
    from reporter.check import (
        Finding,
        alert_finding,
        budget_finding,
        exit_status,
        money_finding,
        period_finding,
        run_checks,
        summary_line,
    )

    today = now_utc().date()
    alerts: list[Finding] = []
    for r in selected:
        month = config.period_containing(r, today)
        cycles = period_finding(r.name, month, config.period_for(r, None, today))
        if cycles is not None:
            alerts.append(cycles)
        # This month's budget: a report with budgets for some months has none in the others,
        # and then no threshold or forecast alert either.
        budget = config.budget_for(r, month)
        credits = budget.credits if budget else None
        if r.has_budget:
            alerts.append(budget_finding(r.name, month.month_key, budget))
        alerts.append(
            alert_finding(
                r.name,
                credits,
                config.thresholds_for(r) if credits else [],
                config.forecast_alert_for(r) if credits else False,
                config.spike_factor_for(r),
                month=month.month_key if r.budgets else None,
            )
        )
        money = money_finding(r.name, config.prices_for(r), today)
        if money is not None:
            alerts.append(money)
    findings = run_checks(
        selected,
        config.api,
        retry=retry_policy(config.api),
        environ=os.environ,
        out_dir=out_dir,
        state_path=state_path,
        today=today,
        channels={r.name: config.chat_channels_for(r) for r in selected},
        alerts=alerts,
    )
    for finding in findings:
        click.echo(finding.line())
    click.echo(summary_line(findings))
    sys.exit(exit_status(findings))


def statement_lines(rows: Sequence[Delivery]) -> list[tuple[str, str, str, str, str, str, str]]:
    """``history``'s line for each report's statements in a period: how many were sent,
    failed, unconfirmed, skipped (their addresses stay out of a shared terminal)."""
    counts: dict[tuple[str, str], Counter[str]] = {}
    latest: dict[tuple[str, str], str] = {}
    for row in rows:
        if row.message != STATEMENT:
            continue
        key = (row.period, row.report)
        counts.setdefault(key, Counter())[row.status] += 1
        latest[key] = max(latest.get(key, ""), row.updated_at)
    order = ("sent", "failed", "unconfirmed", "skipped")
    lines = []
    for (period, report), counted in counts.items():
        known = [f"{counted[s]} {s}" for s in order if counted[s]]
        known += [f"{n} {s}" for s, n in sorted(counted.items()) if s not in order]
        text = "statements: " + ", ".join(known)
        lines.append((period, report, STATEMENT, "-", "-", latest[(period, report)], text))
    return lines
