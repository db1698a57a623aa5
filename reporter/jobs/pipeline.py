"""Many reports at once: fetches in threads, renders in this process or in workers.

Memory stays flat however many reports a run has: at most a window of
reports is between "being fetched" and "written" at any time, each report's
frames are dropped once its files are on disk, and a worker hands back only a
``Written`` record of paths.
"""

from __future__ import annotations

import concurrent.futures
import logging
import multiprocessing
import os
import pickle
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from reporter.config import Config, ReportConfig
from reporter.errors import ApiAuthError, ReporterError
from reporter.jobs.build import (
    Progress,
    RunOptions,
    Written,
    fetch_tables,
    render_report,
    write_atomic,
)
from reporter.jobs.chat import report_chat_files
from reporter.jobs.messages import compose, email_piece, mail_path
from reporter.lifetime import worker_init
from reporter.magnific import MagnificClient
from reporter.summary import Outcome
from reporter.usage import ReportTables

log = logging.getLogger(__name__)

# Rendering leaves memory behind in the native libraries (measured: about 0.6 MiB a report
# in a worker, so 300 MiB over 500 reports). A worker is replaced after this many reports,
# and a long run renders in one such worker even without --jobs, so memory stays flat.
RENDERS_PER_WORKER = 50

# A failure comes back from a worker as (message, hint): it pickles cleanly across
# processes, where exceptions with keyword arguments do not.
_Produced = Written | tuple[str, str | None]


def produce(
    report: ReportConfig,
    tables: ReportTables,
    config: Config,
    options: RunOptions,
    recipients: list[str],
    pieces_dir: Path | None,
) -> Written:
    """Render one report and write its message (or, with ``pieces_dir``, its part of its
    owners' messages)."""
    built = render_report(report, tables, config, options)
    piece = email_piece(built)
    mail = None
    piece_path = None
    chat = tuple(report_chat_files(built, config, options))
    # No recipients: every owner has the report and only its chat channels are due.
    if recipients and pieces_dir is None:
        mail = compose([piece], recipients, config, options, mail_path(options, report.name))
    elif recipients and pieces_dir is not None:
        piece_path = write_atomic(
            pieces_dir / f"{report.name}.pickle", pickle.dumps(piece, pickle.HIGHEST_PROTOCOL)
        )
    return Written(
        report.name, tables.totals.credits, built.pdf_path, built.csv_path, mail, piece_path, chat
    )


def _produce_safely(
    report: ReportConfig,
    tables: ReportTables,
    config: Config,
    options: RunOptions,
    recipients: list[str],
    pieces_dir: Path | None,
) -> _Produced:
    try:
        return produce(report, tables, config, options, recipients, pieces_dir)
    except Exception as exc:
        error = as_reporter_error(exc, report)
        return (error.message, error.hint)


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
) -> list[Written]:
    """Fetch concurrently (bounded by the client); render each report as its data arrives,
    in this process or, with ``options.jobs > 1``, in a pool of worker processes."""
    written: list[Written] = []
    if not reports:
        return written
    renderer: concurrent.futures.Executor | None = None
    render_slots = 0
    if (options.jobs > 1 and len(reports) > 1) or len(reports) > RENDERS_PER_WORKER:
        workers = min(options.jobs, len(reports))
        renderer = concurrent.futures.ProcessPoolExecutor(
            max_workers=workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=worker_init,
            initargs=(os.getpid(),),
            max_tasks_per_child=RENDERS_PER_WORKER,
        )
        render_slots = 2 * workers  # one rendering, one queued, per worker
    fetch_slots = max(1, min(max_in_flight, len(reports)))
    fetchers = concurrent.futures.ThreadPoolExecutor(
        max_workers=fetch_slots, thread_name_prefix="fetch"
    )
    waiting = deque(reports)
    fetching: dict[concurrent.futures.Future[ReportTables], ReportConfig] = {}
    fetched: deque[tuple[ReportConfig, ReportTables]] = deque()
    rendering: dict[concurrent.futures.Future[_Produced], ReportConfig] = {}
    auth_error: ApiAuthError | None = None

    def settle(result: _Produced, report: ReportConfig) -> None:
        if isinstance(result, Written):
            written.append(result)
            progress(report.name, f"wrote {result.pdf_path}")
            on_written(result)
        else:
            fail(outcomes[report.name], ReporterError(result[0], hint=result[1]), progress)

    def submit_render(report: ReportConfig, tables: ReportTables) -> None:
        assert renderer is not None
        args = (report, tables, config, options, pending[report.name], pieces_dir)
        rendering[renderer.submit(_produce_safely, *args)] = report

    finished = False
    try:
        while True:
            # Keep the window full, and no fuller: a fetched report's frames wait in
            # memory only until a renderer is free.
            while waiting and auth_error is None and len(fetching) + len(fetched) < fetch_slots:
                report = waiting.popleft()
                fetching[fetchers.submit(fetch_tables, client, report, config, options)] = report
            while fetched and len(rendering) < render_slots:
                submit_render(*fetched.popleft())
            if not fetching and not rendering and not fetched:
                break
            busy: list[concurrent.futures.Future[Any]] = [*fetching, *rendering]
            done, _ = concurrent.futures.wait(busy, return_when=concurrent.futures.FIRST_COMPLETED)
            for future in done:
                if future in rendering:
                    report = rendering.pop(future)
                    try:
                        result = future.result()
                    except Exception as exc:  # a worker process died (out of memory, killed)
                        result = as_reporter_error(exc, report).message, "run again"
                    settle(result, report)
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
                if renderer is None:
                    settle(
                        _produce_safely(
                            report, tables, config, options, pending[report.name], pieces_dir
                        ),
                        report,
                    )
                else:
                    fetched.append((report, tables))
                del tables
        finished = True
    finally:
        # Interrupted: neither wait for fetch threads stuck on a hanging API nor for
        # workers mid-render; the caller exits, and the workers die with it.
        fetchers.shutdown(wait=finished, cancel_futures=True)
        if renderer is not None:
            renderer.shutdown(wait=finished, cancel_futures=True)
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
