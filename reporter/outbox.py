"""The outbox: messages written for delivery, each an immutable file named by its identity.

Modelled on Maildir and Postfix's queue. A message (an email, or a chat payload
and the PDF it uploads) is written under ``tmp/`` with a name unique to this
host, process and moment, then linked into ``<period>/<identity>``: a reader
never sees half a file, and a name that exists is never written again, so what
the ledger points at is exactly what the first attempt tried to deliver. The
identity is a digest of what makes the message itself (Message-ID, version,
recipients), never a slug of an address or a title, so two messages cannot share
a file. Dry runs and previews write elsewhere (``--out``); nothing here is ever
read but through the ledger.

The outbox lives beside the ledger (``<state>.outbox/``) because the two only
make sense together.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import time
from pathlib import Path

from reporter.files import write_atomic

log = logging.getLogger(__name__)

# Maildir's rule for files left in tmp/: older than 36 hours, nobody is writing them.
TMP_KEPT_SECONDS = 36 * 3600


def identity(*parts: str) -> str:
    """A file name's stem for a message made of ``parts``: 32 hex digits of their digest."""
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]


class Outbox:
    """Immutable files under ``root``; ``put`` never replaces one that exists."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @classmethod
    def beside(cls, ledger_path: Path) -> Outbox:
        return cls(ledger_path.with_name(ledger_path.name + ".outbox"))

    def path(self, period: str, name: str) -> Path:
        return self.root / period / name

    def holds(self, path: Path) -> bool:
        """Whether ``path`` is one of this outbox's messages (and not a draft elsewhere)."""
        try:
            return path.resolve().is_relative_to(self.root.resolve()) and path.is_file()
        except OSError:
            return False

    def prepare(self) -> None:
        """Make sure messages can be written here (its ``tmp/`` exists and takes a file),
        before a run fetches anything: an outbox that cannot be made fails the run at
        once, not each report after its data was fetched."""
        tmp_dir = self.root / "tmp"
        tmp_dir.mkdir(parents=True, exist_ok=True)
        probe = tmp_dir / f"{time.time_ns()}.P{os.getpid()}.{socket.gethostname()}.probe"
        probe.open("xb").close()
        probe.unlink()

    def clean(self, older_than: float = TMP_KEPT_SECONDS) -> int:
        """Remove what runs killed mid-write left in ``tmp/`` (never a delivered-to name);
        like Maildir, only files old enough that no live writer can still own them."""
        removed = 0
        limit = time.time() - older_than
        for leftover in (self.root / "tmp").glob("*"):
            try:
                if leftover.stat().st_mtime < limit:
                    leftover.unlink()
                    removed += 1
            except OSError:
                continue
        return removed

    def put(self, period: str, name: str, content: bytes) -> Path:
        """Write ``content`` as ``<period>/<name>`` unless that file exists; return its path.

        A file that exists already is the message as first written, and stays it: the
        caller then delivers that file, never a second rendering of the same identity."""
        final = self.path(period, name)
        if final.is_file():
            return final
        tmp_dir = self.root / "tmp"
        tmp_dir.mkdir(parents=True, exist_ok=True)
        final.parent.mkdir(parents=True, exist_ok=True)
        unique = f"{time.time_ns()}.P{os.getpid()}.{socket.gethostname()}"
        tmp = tmp_dir / unique
        with tmp.open("xb") as file:
            file.write(content)
            file.flush()
            os.fsync(file.fileno())
        try:
            os.link(tmp, final)  # fails if another writer got there first: theirs stays
        except FileExistsError:
            log.debug("outbox: %s was written by another run; it is kept", final)
        finally:
            tmp.unlink(missing_ok=True)
        return final


def write_message(
    outbox: Outbox | None, copy: Path, period: str, name: str, content: bytes
) -> Path:
    """Write a message: its copy under ``--out`` for people to read (``copy``, which dry
    runs, previews and later runs may overwrite), and, for a real delivery, the outbox's
    immutable ``<period>/<name>``. Returns the file to deliver."""
    write_atomic(copy, content)
    return copy if outbox is None else outbox.put(period, name, content)
