"""How a run ends when it is told to: SIGINT and SIGTERM, and workers that die with it.

A scheduler's SIGTERM and a person's Ctrl-C must stop a run within seconds,
with the ledger settled and no message half-recorded. The main thread turns
either signal into ``Interrupted`` and unwinds (closing the ledger, whose
rows in flight are settled as a dead run's would be); threads still blocked
on a hanging API are not waited for. Render workers ignore Ctrl-C (their
parent decides) and are killed by the kernel when their parent dies, even by
SIGKILL, so none is ever left rendering for nobody.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import ctypes
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

_PR_SET_PDEATHSIG = 1


class Interrupted(KeyboardInterrupt):
    """A run stopped by a signal; ``exit_code`` is 128 + the signal's number (130, 143)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.exit_code = 128 + signum


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """SIGINT and SIGTERM raise ``Interrupted`` in the main thread; a second one exits at once."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def first(signum: int, frame: FrameType | None) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, second)
        raise Interrupted(signum)

    def second(signum: int, frame: FrameType | None) -> None:
        os._exit(128 + signum)

    previous = {sig: signal.signal(sig, first) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def exit_now(code: int) -> None:
    """Leave without joining threads that may be blocked on the network for minutes.

    Called only once everything that matters (ledger, files, output) is settled.
    """
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


def worker_init(parent: int) -> None:
    """In each render worker: leave Ctrl-C to the parent (pid ``parent``), and die with it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if os.getppid() != parent:  # the parent died while this worker was starting
        os._exit(1)
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0:
            if os.getppid() != parent:  # the parent died before the line above
                os._exit(1)
            return
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()


def _watch_parent(parent: int) -> None:
    """Where the kernel cannot tie a worker to its parent: notice the parent is gone."""
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(1)


def worker_pool(
    workers: int,
    *,
    setup: Callable[..., None] | None = None,
    setup_args: tuple[Any, ...] = (),
    max_tasks_per_child: int | None = None,
) -> concurrent.futures.ProcessPoolExecutor:
    """Worker processes that die with this one, started now rather than on first use.

    A process pool starts its processes only as work arrives; one no-op task each makes
    them start at once, so they import and run ``setup`` while this process goes on."""
    pool = concurrent.futures.ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_start_worker,
        initargs=(os.getpid(), setup, setup_args),
        max_tasks_per_child=max_tasks_per_child,
    )
    with _main_script_hidden():
        for _ in range(workers):
            pool.submit(_ready)
    return pool


def _start_worker(parent: int, setup: Callable[..., None] | None, args: tuple[Any, ...]) -> None:
    worker_init(parent)
    if setup is not None:
        setup(*args)


def _ready() -> None:
    """The task that starts a worker early: its work is all in its start-up."""


@contextlib.contextmanager
def _main_script_hidden() -> Iterator[None]:
    """Start processes without running the ``reporter`` script in them first.

    A spawned process re-runs its parent's main script before anything else, and ours
    imports the whole CLI (pandas included, about a second) where a printer needs only
    its own module. Hiding the script's path while the processes start skips that.
    (Processes that replace worn-out ones later start the ordinary way.)"""
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if main is None or path is None or getattr(main, "__spec__", None) is not None:
        yield  # run as ``python -m ...``: the module is found by name, and that is fine
        return
    del main.__file__
    try:
        yield
    finally:
        main.__file__ = path
