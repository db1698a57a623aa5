"""Many reports at once: fetches in threads, charts and HTML here, printing in printers.

A report's work splits in two that can overlap: composing its charts and HTML
(this process) and printing its PDF (a printer process, ``reporter.printer``).
Printers start when the build starts and warm up while the first reports are
fetched, so even a one-report run prints on a second CPU while it composes,
and a run of many composes the next report while the last one prints.

Memory stays flat however many reports a run has: at most a window of
reports is between "being fetched" and "written" at any time, each report's
frames are dropped once its files are on disk, and a printer hands back only
the path of what it wrote.
"""

from __future__ import annotations

import concurrent.futures
import logging
import pickle
from collections import deque
from collections.abc import Callable, Mapping, Sequence, Set
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

from reporter.config import Config, ReportConfig
from reporter.errors import ApiAuthError, ReporterError
from reporter.files import write_atomic
from reporter.jobs.build import (
    BuiltReport,
    Progress,
    RunOptions,
    fetch_tables,
    prepare_report,
    write_csv,
)
from reporter.jobs.chat import report_chat_files
from reporter.jobs.messages import compose_each, email_piece
from reporter.jobs.records import MailFile, Written
from reporter.magnific import MagnificClient
from reporter.printer import PRINTER_DIED, Printed, Printers, PrintJob
from reporter.summary import Outcome
from reporter.usage import ReportTables

log = logging.getLogger(__name__)


def finish(
    built: BuiltReport,
    config: Config,
    options: RunOptions,
    recipients: list[str],
    pieces_dir: Path | None,
    version: int | None = None,
) -> Written:
    """Once a report's PDF is on disk: its messages (or, with ``pieces_dir``, its part of
    its owners' messages) and its chat payloads, as ``version`` of the report."""
    report = built.report
    piece = email_piece(built, version)
    mails: tuple[MailFile, ...] = ()
    piece_path = None
    chat = tuple(report_chat_files(built, config, options, version=version))
    # No recipients: every owner has the report and only its chat channels are due.
    if recipients and pieces_dir is None:
        mails = tuple(compose_each([piece], recipients, config, options, report.name))
    elif recipients and pieces_dir is not None:
        piece_path = write_atomic(
            pieces_dir / f"{report.name}.pickle", pickle.dumps(piece, pickle.HIGHEST_PROTOCOL)
        )
    money = built.context.get("money")
    return Written(
        report.name,
        built.tables.totals.credits,
        built.pdf_path,
        built.csv_path,
        mails,
        piece_path,
        chat,
        version,
        (money.total, money.currency) if money is not None else None,
    )


def build_all(
    reports: Sequence[ReportConfig],
    pending: Mapping[str, list[str]],
    config: Config,
    options: RunOptions,
    client: MagnificClient,
    outcomes: dict[str, Outcome],
    progress: Progress,
    *,
    max_in_flight: int,
    pieces_dir: Path | None,
    on_written: Callable[[Written], None],
    versions: Mapping[str, int] | None = None,
    on_fetched: Callable[[ReportConfig, ReportTables], int | None] | None = None,
    fetch_only: Set[str] = frozenset(),
) -> list[Written]:
    """Fetch concurrently (bounded by the client); compose each report as its data
    arrives and print it in one of ``options.jobs`` printer processes.

    ``on_fetched`` sees each report's tables first (its personal statements are cut from
    them) and returns how many of its users get one; reports in ``fetch_only`` (owners
    all served, statements still due) stop there."""
    written: list[Written] = []
    if not reports:
        return written
    workers = max(1, min(options.jobs, len(reports)))
    printers = Printers(workers, options.templates_dir)
    print_slots = 2 * workers  # one printing, one queued, per printer
    fetch_slots = max(1, min(max_in_flight, len(reports)))
    fetchers = concurrent.futures.ThreadPoolExecutor(
        max_workers=fetch_slots, thread_name_prefix="fetch"
    )
    waiting = deque(reports)
    fetching: dict[concurrent.futures.Future[ReportTables], ReportConfig] = {}
    fetched: deque[tuple[ReportConfig, ReportTables, int | None]] = deque()
    printing: dict[concurrent.futures.Future[Printed], tuple[BuiltReport, PrintJob]] = {}
    auth_error: ApiAuthError | None = None

    def submit_print(report: ReportConfig, tables: ReportTables, count: int | None) -> None:
        try:
            built, job = prepare_report(report, tables, config, options, statement_count=count)
            future = printers.submit(job)
        except Exception as exc:  # a chart or template failed, or the printers are gone
            fail(outcomes[report.name], as_reporter_error(exc, report), progress)
            return
        try:
            write_csv(built, job)  # while the printer prints
        except Exception as exc:
            future.cancel()
            fail(outcomes[report.name], as_reporter_error(exc, report), progress)
            return
        printing[future] = (built, job)

    def printed(built: BuiltReport, result: Printed) -> None:
        report = built.report
        if not isinstance(result, Path):
            fail(outcomes[report.name], ReporterError(result[0], hint=result[1]), progress)
            return
        try:
            item = finish(
                built,
                config,
                options,
                pending[report.name],
                pieces_dir,
                (versions or {}).get(report.name),
            )
        except Exception as exc:
            fail(outcomes[report.name], as_reporter_error(exc, report), progress)
            return
        written.append(item)
        progress(report.name, f"wrote {item.pdf_path}")
        on_written(item)

    finished = False
    try:
        while True:
            # Keep the window full, and no fuller: a fetched report's frames wait in
            # memory only until a printer is free.
            while waiting and auth_error is None and len(fetching) + len(fetched) < fetch_slots:
                report = waiting.popleft()
                fetching[fetchers.submit(fetch_tables, client, report, config, options)] = report
            while fetched and len(printing) < print_slots:
                submit_print(*fetched.popleft())
            if not fetching and not printing and not fetched:
                break
            busy: list[concurrent.futures.Future[Any]] = [*fetching, *printing]
            done, _ = concurrent.futures.wait(busy, return_when=concurrent.futures.FIRST_COMPLETED)
            for future in done:
                if future in printing:
                    built, job = printing.pop(future)
                    try:
                        result = future.result()
                    except BrokenProcessPool:  # a printer died (out of memory, killed)
                        again = printers.retry(job)
                        if again is not None:
                            printing[again] = (built, job)
                            continue
                        result = PRINTER_DIED, "run again; if it happens again, give it more memory"
                    except Exception as exc:
                        result = as_reporter_error(exc, built.report).message, "run again"
                    printed(built, result)
                    continue
                report = fetching.pop(future)
                try:
                    tables = future.result()
                except ApiAuthError as exc:
                    auth_error = exc
                    waiting.clear()
                    fail(outcomes[report.name], exc, progress)
                    continue
                except Exception as exc:
                    fail(outcomes[report.name], as_reporter_error(exc, report), progress)
                    continue
                progress(report.name, f"fetched: {tables.totals.credits:,.0f} credits")
                try:
                    count = on_fetched(report, tables) if on_fetched else None
                except Exception as exc:
                    fail(outcomes[report.name], as_reporter_error(exc, report), progress)
                    continue
                if report.name not in fetch_only:
                    fetched.append((report, tables, count))
                del tables
        finished = True
    finally:
        # Interrupted: neither wait for fetch threads stuck on a hanging API nor for
        # printers mid-print; the caller exits, and the printers die with it.
        fetchers.shutdown(wait=finished, cancel_futures=True)
        printers.shutdown(wait=finished)
    if auth_error is not None:
        raise auth_error
    order = {r.name: i for i, r in enumerate(reports)}
    return sorted(written, key=lambda w: order[w.report])


def as_reporter_error(exc: BaseException, report: ReportConfig) -> ReporterError:
    """Our own errors pass through; anything else is a bug that costs one report, not the run."""
    if isinstance(exc, ReporterError):
        return exc
    log.debug("unexpected error in report %s", report.name, exc_info=exc)
    return ReporterError(
        f"internal error: {type(exc).__name__}: {exc}",
        hint="run with --verbose for details, and report it",
    )


def fail(outcome: Outcome, exc: ReporterError, progress: Progress) -> None:
    outcome.status = "failed"
    outcome.detail = str(exc)
    progress(outcome.report, outcome.line(), done=True)
