"""How a run shows its progress: a live bar on a terminal, plain lines elsewhere.

A scheduled job's log is read after the fact, line by line, so there it gets
one line per report when the report is settled (every step with --verbose).
A person at a terminal gets a bar that moves as reports are fetched, written
and sent, with each finished report printed above it.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TextIO

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

# A report's steps before its final status: its data fetched, its files written.
_STEPS_BEFORE_DONE = 2


class PlainProgress:
    """One line per report when it is settled; with ``verbose``, one per step."""

    def __init__(self, stream: TextIO | None = None, *, verbose: bool = False) -> None:
        self.stream = stream
        self.verbose = verbose

    def __call__(self, report: str, message: str, /, *, done: bool = False) -> None:
        if done:
            click.echo(message, file=self.stream or sys.stderr)
        elif self.verbose:
            click.echo(f"{report}: {message}", file=self.stream or sys.stderr)


class SilentProgress:
    def __call__(self, report: str, message: str, /, *, done: bool = False) -> None:
        return None


class BarProgress:
    """A rich progress bar: three steps per report (fetched, written, settled)."""

    def __init__(self, reports: Sequence[str], console: Console | None = None) -> None:
        self._steps = dict.fromkeys(reports, 0)
        self._bar = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[last]}", style="dim"),
            TimeElapsedColumn(),
            console=console or Console(stderr=True),
            transient=True,
        )
        self._task = self._bar.add_task("reports", total=len(reports), last="")

    def __call__(self, report: str, message: str, /, *, done: bool = False) -> None:
        if done:
            self._steps[report] = _STEPS_BEFORE_DONE + 1
            self._bar.console.print(message, highlight=False, markup=False)
        else:
            self._steps[report] = min(self._steps.get(report, 0) + 1, _STEPS_BEFORE_DONE)
        # The bar counts settled reports; partial steps move it within the current one.
        fraction = sum(self._steps.values()) / (_STEPS_BEFORE_DONE + 1)
        last = message if done else f"{report}: {message}"
        self._bar.update(self._task, completed=fraction, last=last[:60])

    @contextmanager
    def shown(self) -> Iterator[BarProgress]:
        with self._bar:
            yield self


@contextmanager
def progress_for(
    reports: Sequence[str], *, quiet: bool, verbose: bool, tty: bool | None = None
) -> Iterator[PlainProgress | SilentProgress | BarProgress]:
    """The display this run should have; ``tty`` defaults to whether stderr is a terminal."""
    if quiet:
        yield SilentProgress()
        return
    if tty is None:
        tty = sys.stderr.isatty()
    if not tty or verbose:
        yield PlainProgress(verbose=verbose)
        return
    bar = BarProgress(reports)
    with bar.shown():
        yield bar
