"""The delivery ledger: which owner has been sent which message for which period.

One row per (report, period, message, recipient). ``message`` says what was
sent: ``report`` (the period's report, in whichever version the recipient is
due), ``alert:threshold:80``, ``alert:forecast`` or ``alert:spike:2026-11-12``
(``correction:<credits>`` in ledgers written before versions); every kind goes
through the same claims and marks, so each is sent at most once.

Versions: each build of a report for delivery is a new version of it
(``versions``: its number, in order, and the total credits it shows), and a
``report`` row names the version its message carries. When a recipient's
message is confirmed, ``received`` records which version they now hold, so a
correction is computed against what that recipient last received, a pending
message of an older version is superseded rather than sent, and nobody
receives an older version after a newer one. A message moves through
``claimed`` -> ``rendered`` -> ``sending`` -> ``committing`` -> ``sent``, or
to ``failed`` or ``unconfirmed``. Only ``sent`` counts as delivered. A recipient is
an email address (stored in lower case) or a chat channel (``slack:<VARIABLE>``,
``teams:<VARIABLE>``, ``slack-upload:<channel>``, stored as written): see
``recipient_key``.

``sending`` is written before the SMTP transaction and ``committing`` just
before the final "." of DATA (see ``mail.py``). A message the server never
acknowledged (the connection dropped after the "." or the run died there) is
``unconfirmed``: it may or may not have arrived, and it is sent again on the
next run with the same Message-ID, because a duplicate with one Message-ID is
dropped by most mailboxes while a lost report is simply lost.

Concurrent runs: each run registers itself with a lock file it holds for its
whole life (``<state>.runs/<run>.lock``, an ``flock`` the kernel releases when
the process dies, however it dies). A run claims (report, period, recipient)
rows in one transaction before building; a row claimed by a run whose lock is
still held is skipped, never sent twice, and never touched by recovery.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import itertools
import logging
import os
import sqlite3
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from reporter.errors import UsageError
from reporter.outbox import Outbox

log = logging.getLogger(__name__)

T = TypeVar("T")

# "superseded": an alert recorded without a message, because a more telling one (a higher
# threshold) already reached the recipient; nothing more is due for it either.
DELIVERED = ("sent", "superseded")
IN_FLIGHT = ("claimed", "rendered", "sending", "committing")

# "RPTR": marks the file as ours, so a foreign SQLite file is never written to.
APPLICATION_ID = 0x52505452
SCHEMA_VERSION = 4
LOCK_WAIT_SECONDS = 30.0

REPORT = "report"
# Chat channels are ledger recipients beside email owners (see ``reporter.chat``).
CHAT_PREFIXES = ("slack:", "teams:", "slack-upload:")
_IS_CHAT = " OR ".join(f"recipient LIKE '{p}%'" for p in CHAT_PREFIXES)

_UNCONFIRMED_MAIL = (
    "interrupted after the message was handed over, before the server confirmed it;"
    " will be sent again with the same Message-ID"
)
_UNCONFIRMED_CHAT = (
    "interrupted while posting, before the platform answered: the post may or may not"
    " have appeared; the next run posts it again (chat has no Message-ID to drop a copy by)"
)

_DELIVERIES = """
CREATE TABLE IF NOT EXISTS {name} (
    report      TEXT NOT NULL,
    period      TEXT NOT NULL,
    message     TEXT NOT NULL DEFAULT 'report',
    recipient   TEXT NOT NULL,
    status      TEXT NOT NULL,
    message_id  TEXT,
    artifact    TEXT,
    error       TEXT,
    attempts    INTEGER NOT NULL DEFAULT 0,
    updated_at  TEXT NOT NULL,
    run_id      TEXT,
    version     INTEGER,
    PRIMARY KEY (report, period, message, recipient)
);
"""
# Each build of a report for delivery, numbered in order, with the total it shows
# (NULL until its data is in).
_VERSIONS = """
CREATE TABLE IF NOT EXISTS versions (
    report      TEXT NOT NULL,
    period      TEXT NOT NULL,
    version     INTEGER NOT NULL,
    credits     REAL,
    created_at  TEXT NOT NULL,
    PRIMARY KEY (report, period, version)
);
"""
# Which version each recipient was confirmed to receive, and when: a recipient holds
# the newest one they received.
_RECEIVED = """
CREATE TABLE IF NOT EXISTS received (
    report      TEXT NOT NULL,
    period      TEXT NOT NULL,
    recipient   TEXT NOT NULL,
    version     INTEGER NOT NULL,
    message_id  TEXT,
    received_at TEXT NOT NULL,
    PRIMARY KEY (report, period, recipient, version)
);
"""
# Schema 3 kept only the total a report's owners were last shown.
_SHOWN = """
CREATE TABLE IF NOT EXISTS shown_totals (
    report      TEXT NOT NULL,
    period      TEXT NOT NULL,
    credits     REAL NOT NULL,
    recorded_at TEXT NOT NULL,
    PRIMARY KEY (report, period)
);
"""
_COPIED = (
    "report, period, recipient, status, message_id, artifact, error, attempts, updated_at, run_id"
)
_V1_COLUMNS = {
    "report",
    "period",
    "recipient",
    "status",
    "message_id",
    "artifact",
    "error",
    "attempts",
    "updated_at",
}


def is_chat(recipient: str) -> bool:
    return recipient.startswith(CHAT_PREFIXES)


def recipient_key(recipient: str) -> str:
    """How the ledger stores and compares a recipient: an email address in lower case
    (mailboxes ignore case, so ``Ann@X`` and ``ann@x`` are one owner), a chat channel as
    written (environment variable names and Slack channel ids are case-sensitive).

    Ledgers written before chat recipients kept their case hold them lower-cased;
    ``Ledger.claim`` adopts such a row (see ``_adopt_lowered``)."""
    return recipient if is_chat(recipient) else recipient.lower()


class LedgerError(UsageError):
    """The ledger file cannot be used: corrupt, foreign, locked or unwritable (exit 2)."""

    def __init__(self, path: Path, problem: str, hint: str) -> None:
        super().__init__(f"the delivery ledger {path} {problem}", hint=hint)
        self.path = path


@dataclass(frozen=True, slots=True)
class Delivery:
    report: str
    period: str
    recipient: str
    status: str
    message_id: str | None
    artifact: str | None
    error: str | None
    attempts: int
    updated_at: str
    run_id: str | None = None
    message: str = REPORT
    version: int | None = None


@dataclass(frozen=True, slots=True)
class Held:
    """The newest version of a report a recipient was confirmed to receive."""

    version: int
    credits: float | None


@dataclass(frozen=True, slots=True)
class Claim:
    """The outcome of claiming a report's owners for one run."""

    mine: list[str] = field(default_factory=list)  # this run sends to them
    done: list[str] = field(default_factory=list)  # already delivered
    taken: dict[str, int] = field(default_factory=dict)  # owner -> pid of the live run


class RunLock:
    """A run's proof of life: an exclusive ``flock`` on its own file, held until it ends.

    The kernel drops the lock when the process exits, even on SIGKILL, so "is run X
    alive?" is answered by trying to take X's lock, with no clock or timeout to tune.
    """

    def __init__(self, directory: Path, run_id: str) -> None:
        self.run_id = run_id
        self.path = directory / f"{run_id}.lock"
        directory.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.write(self._fd, str(os.getpid()).encode())
        os.set_inheritable(self._fd, False)

    def release(self) -> None:
        if self._fd < 0:
            return
        self.path.unlink(missing_ok=True)
        os.close(self._fd)
        self._fd = -1

    @staticmethod
    def holder(directory: Path, run_id: str) -> int | None:
        """The pid of run ``run_id`` if it is still alive, else None (and its file is removed)."""
        path = directory / f"{run_id}.lock"
        try:
            fd = os.open(path, os.O_RDWR)
        except FileNotFoundError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = os.pread(fd, 32, 0).decode(errors="replace").strip()
            return int(pid) if pid.isdigit() else -1
        finally:
            os.close(fd)  # also drops the lock we may just have taken
        path.unlink(missing_ok=True)
        return None


class Ledger:
    """SQLite-backed (WAL, busy timeout); shared safely by concurrent runs through claims."""

    def __init__(
        self,
        path: Path,
        *,
        clock: type[dt.datetime] = dt.datetime,
        lock_wait: float = LOCK_WAIT_SECONDS,
        redact: Callable[[str], str] = str,
    ) -> None:
        self.path = path
        self._redact = redact  # error texts come from servers, and `history` prints them
        self._clock = clock
        self._lock_wait = lock_wait
        self._runs_dir = path.with_name(path.name + ".runs")
        self._lock: RunLock | None = None
        self._db = self._open(path)

    # --- opening ---------------------------------------------------------------

    def _open(self, path: Path) -> sqlite3.Connection:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(path, timeout=1, isolation_level=None, check_same_thread=False)
        except (sqlite3.Error, OSError) as exc:
            raise LedgerError(
                path, f"cannot be opened: {exc}", "pass --state with a writable path"
            ) from None
        try:
            self._db = db
            with self._preparing():
                self._with_lock_wait(lambda: self._prepare(db))
        except BaseException:
            db.close()
            raise
        return db

    @contextmanager
    def _preparing(self) -> Iterator[None]:
        """One process at a time checks, converts and creates the ledger: two runs that
        start at the same instant on a new file otherwise saw it half-made (its tables
        but not yet its id, "an SQLite file of another program"), or got SQLite's busy
        answer at once, past its busy wait. An flock the kernel drops if we die."""
        try:
            self._runs_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(self._runs_dir / ".prepare.lock", os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise self._unregistered(exc) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # held for milliseconds by whoever has it
            yield
        finally:
            os.close(fd)

    def _prepare(self, db: sqlite3.Connection) -> None:
        try:
            self._kind(db)  # refuse a foreign file before anything is written to it
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            with self._transaction() as tx:
                kind = self._kind(tx)  # again: another run may have created it meanwhile
                if kind == "new":
                    tx.execute(_DELIVERIES.format(name="deliveries"))
                    tx.execute(_VERSIONS)
                    tx.execute(_RECEIVED)
                elif kind == "old":
                    self._migrate(tx)
                if kind != "current":
                    tx.execute(f"PRAGMA application_id={APPLICATION_ID}")
                    tx.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except sqlite3.DatabaseError as exc:
            if _is_locked(exc):
                raise
            if _is_unwritable(exc):  # a sound ledger: moving it away would send reports again
                raise LedgerError(
                    self.path,
                    f"cannot be written ({exc})",
                    "give this user write access to the file and its directory (SQLite"
                    " writes files beside it), or pass --state with a writable path",
                ) from None
            raise LedgerError(
                self.path,
                f"is not a readable ledger ({exc})",
                "move the file away (a new ledger is started; reports may then be sent"
                " again), or pass --state with the right path",
            ) from None

    def _kind(self, db: sqlite3.Connection) -> str:
        """``current``, ``old`` (ours, to migrate), ``new`` (empty); else LedgerError."""
        app_id = db.execute("PRAGMA application_id").fetchone()[0]
        version = db.execute("PRAGMA user_version").fetchone()[0]
        tables = {
            r[0]
            for r in db.execute(
                "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%'"
            )
        }
        if app_id == APPLICATION_ID:
            if version > SCHEMA_VERSION:
                raise LedgerError(
                    self.path,
                    f"was written by a newer reporter (schema {version})",
                    "upgrade reporter, or pass --state with another path",
                )
            return "current" if version == SCHEMA_VERSION else "old"
        if not tables:
            return "new"
        if tables == {"deliveries"} and self._columns(db) == _V1_COLUMNS:
            return "old"  # a ledger from before application ids
        raise LedgerError(
            self.path,
            "is an SQLite file of another program"
            f" (tables: {', '.join(sorted(tables))}); reporter will not write to it",
            "pass --state with the ledger's path, or a new file",
        )

    @staticmethod
    def _columns(db: sqlite3.Connection) -> set[str]:
        return {r[1] for r in db.execute("PRAGMA table_info(deliveries)")}

    def _migrate(self, db: sqlite3.Connection) -> None:
        """Schema 1 -> 2: ``run_id``. 2 -> 3: ``message`` in the primary key, which SQLite
        cannot alter, so the table is copied (inside the caller's transaction). 3 -> 4:
        versions (see ``_migrate_versions``)."""
        if "run_id" not in self._columns(db):
            db.execute("ALTER TABLE deliveries ADD COLUMN run_id TEXT")
        if "message" not in self._columns(db):
            db.execute(_DELIVERIES.format(name="deliveries_v3"))
            db.execute(
                f"INSERT INTO deliveries_v3 (message, {_COPIED})"
                f" SELECT '{REPORT}', {_COPIED} FROM deliveries"
            )
            db.execute("DROP TABLE deliveries")
            db.execute("ALTER TABLE deliveries_v3 RENAME TO deliveries")
        if "version" not in self._columns(db):
            db.execute("ALTER TABLE deliveries ADD COLUMN version INTEGER")
        db.execute(_SHOWN)
        db.execute(_VERSIONS)
        db.execute(_RECEIVED)
        self._migrate_versions(db)
        db.execute("DROP TABLE shown_totals")

    def _migrate_versions(self, db: sqlite3.Connection) -> None:
        """What schema 3 knew, as versions: the report as first delivered is version 1
        (its total from ``shown_totals`` where recorded), and each delivered correction
        ``correction:<credits>`` a version after it, in the order they were sent. Rows
        still pending keep no version: their message is rebuilt, not resent."""
        now = self._now()
        shown = {(r, p): c for r, p, c, _ in db.execute("SELECT * FROM shown_totals")}
        sent = list(
            db.execute(
                "SELECT report, period, message, recipient, message_id, updated_at"
                " FROM deliveries WHERE status='sent' AND (message=? OR message LIKE"
                " 'correction:%') ORDER BY report, period, updated_at",
                (REPORT,),
            )
        )
        corrected = {(r, p) for r, p, m, *_ in sent if m != REPORT}
        numbers: dict[tuple[str, str, str], int] = {}
        for report, period, message, recipient, message_id, updated_at in sent:
            key = (report, period, message)
            if key not in numbers:
                number = 1 + sum(1 for k in numbers if k[:2] == (report, period))
                numbers[key] = number
                # Once a correction was sent, shown_totals held its total, not the first.
                credits = (
                    float(message.partition(":")[2] or 0)
                    if message != REPORT
                    else None
                    if (report, period) in corrected
                    else shown.get((report, period))
                )
                db.execute(
                    "INSERT INTO versions (report, period, version, credits, created_at)"
                    " VALUES (?,?,?,?,?)",
                    (report, period, number, credits, now),
                )
            db.execute(
                "INSERT OR IGNORE INTO received (report, period, recipient, version,"
                " message_id, received_at) VALUES (?,?,?,?,?,?)",
                (report, period, recipient, numbers[key], message_id, updated_at),
            )
            if message == REPORT:
                db.execute(
                    "UPDATE deliveries SET version=? WHERE report=? AND period=?"
                    " AND message=? AND recipient=?",
                    (numbers[key], report, period, message, recipient),
                )

    def _with_lock_wait(self, action: Callable[[], T]) -> T:
        """Run ``action``; if another process holds the file locked, say so and wait a while."""
        try:
            return action()
        except sqlite3.OperationalError as exc:
            if not _is_locked(exc):
                raise
        log.warning(
            "the delivery ledger %s is locked by another process; waiting up to %.0f s",
            self.path,
            self._lock_wait,
        )
        self._db.execute(f"PRAGMA busy_timeout={int(self._lock_wait * 1000)}")
        try:
            return action()
        except sqlite3.OperationalError as exc:
            if not _is_locked(exc):
                raise
            raise LedgerError(
                self.path,
                f"stayed locked by another process for {self._lock_wait:.0f} s",
                "wait for the other reporter (or sqlite3 session) to finish, then run again",
            ) from None
        finally:
            self._db.execute("PRAGMA busy_timeout=1000")

    def close(self) -> None:
        self.end_run()
        self._db.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _now(self) -> str:
        return self._clock.now(dt.UTC).isoformat(timespec="seconds")

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    @contextmanager
    def _writing(self) -> Iterator[sqlite3.Connection]:
        """A write transaction whose SQLite errors become one readable ``LedgerError``."""
        try:
            self._with_lock_wait(lambda: self._db.execute("BEGIN IMMEDIATE"))
        except sqlite3.Error as exc:
            raise self._error(exc) from None
        try:
            yield self._db
        except sqlite3.Error as exc:
            self._db.execute("ROLLBACK")
            raise self._error(exc) from None
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        try:
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            raise self._error(exc) from None

    def _error(self, exc: sqlite3.Error) -> LedgerError:
        return LedgerError(
            self.path, f"could not be written: {exc}", "check the disk and the file's permissions"
        )

    # --- runs --------------------------------------------------------------------

    @property
    def outbox(self) -> Outbox:
        """The messages written for delivery, beside the ledger that points at them."""
        return Outbox.beside(self.path)

    @property
    def run_id(self) -> str | None:
        return self._lock.run_id if self._lock else None

    def start_run(self) -> str:
        """Register this process as a live run; its claims last until ``end_run`` or death."""
        if self._lock is None:
            try:
                self._lock = RunLock(self._runs_dir, uuid.uuid4().hex[:16])
            except OSError as exc:
                raise self._unregistered(exc) from None
        return self._lock.run_id

    def _unregistered(self, exc: OSError) -> LedgerError:
        return LedgerError(
            self.path,
            f"cannot register this run in {self._runs_dir}: {exc.strerror}",
            "pass --state with a path in a writable directory",
        )

    def end_run(self) -> None:
        """Give back this run's claims; what it left mid-send is settled like a dead run's."""
        if self._lock is None:
            return
        try:
            with self._writing() as db:
                self._settle(db, "run_id=?", (self._lock.run_id,))
        finally:
            self._lock.release()
            self._lock = None

    def _alive(self, run_id: str, cache: dict[str, int | None]) -> int | None:
        if run_id == self.run_id:
            return os.getpid()
        if run_id not in cache:
            cache[run_id] = RunLock.holder(self._runs_dir, run_id)
        return cache[run_id]

    def _settle(self, db: sqlite3.Connection, where: str, args: tuple[str, ...]) -> dict[str, int]:
        now = self._now()
        failed = db.execute(
            "UPDATE deliveries SET status='failed', run_id=NULL, updated_at=?,"
            " error='interrupted before the message was complete; will be sent again'"
            f" WHERE status='sending' AND {where}",
            (now, *args),
        ).rowcount
        unconfirmed = 0
        for note, chat in ((_UNCONFIRMED_MAIL, "NOT"), (_UNCONFIRMED_CHAT, "")):
            unconfirmed += db.execute(
                "UPDATE deliveries SET status='unconfirmed', run_id=NULL, updated_at=?,"
                f" error=? WHERE status='committing' AND {chat} ({_IS_CHAT}) AND {where}",
                (now, note, *args),
            ).rowcount
        db.execute(f"UPDATE deliveries SET run_id=NULL WHERE {where}", args)
        return {"failed": failed, "unconfirmed": unconfirmed}

    def recover(self) -> dict[str, int]:
        """Settle what dead runs left behind; rows of live runs are never touched. Half-
        written outbox files a killed run left (in its ``tmp/``) go too. An outbox that
        cannot be written is a ``LedgerError``, before the run fetches anything."""
        try:
            self.outbox.prepare()
        except OSError as exc:
            raise LedgerError(
                self.path,
                f"cannot keep its outbox {self.outbox.root}: {exc.strerror or exc}",
                "the outbox is a directory beside the ledger: move away what is in its"
                " place, or pass --state with a path in a writable directory",
            ) from None
        self.outbox.clean()
        cache: dict[str, int | None] = {}
        moved = {"failed": 0, "unconfirmed": 0}
        with self._writing() as db:
            owners = [
                r[0]
                for r in db.execute(
                    "SELECT DISTINCT run_id FROM deliveries WHERE run_id IS NOT NULL"
                )
            ]
            dead = [o for o in owners if self._alive(o, cache) is None]
            for run_id in dead:
                for key, count in self._settle(db, "run_id=?", (run_id,)).items():
                    moved[key] += count
            # Rows written before runs had ids (schema 1) belong to no live run.
            for key, count in self._settle(db, "run_id IS NULL", ()).items():
                moved[key] += count
        return moved

    def claim(
        self,
        report: str,
        period: str,
        owners: Sequence[str],
        *,
        force: bool,
        message: str = REPORT,
    ) -> Claim:
        """Take the owners this run should send ``report`` to, atomically.

        Delivered owners are left alone (unless ``force``); owners another live run
        holds are reported as taken; everything else, including rows a dead run held,
        becomes this run's.
        """
        run_id = self.start_run()
        result = Claim()
        cache: dict[str, int | None] = {}
        now = self._now()
        with self._writing() as db:
            for owner in owners:
                key = recipient_key(owner)
                where = (report, period, message, key)
                row = db.execute(
                    "SELECT status, run_id FROM deliveries"
                    " WHERE report=? AND period=? AND message=? AND recipient=?",
                    where,
                ).fetchone()
                if row is None:
                    row = self._adopt_lowered(db, where)
                if row is None:
                    db.execute(
                        "INSERT INTO deliveries (report, period, message, recipient, status,"
                        " updated_at, run_id) VALUES (?,?,?,?,'claimed',?,?)",
                        (*where, now, run_id),
                    )
                    result.mine.append(owner)
                    continue
                status, holder = row
                pid = self._alive(holder, cache) if holder else None
                if pid is not None and holder != run_id:
                    result.taken[owner] = pid
                    continue
                if status in DELIVERED and not force:
                    result.done.append(owner)
                    continue
                if holder and holder != run_id:  # a dead run's row: settle it first
                    self._settle(db, "report=? AND period=? AND message=? AND recipient=?", where)
                db.execute(
                    "UPDATE deliveries SET run_id=?"
                    " WHERE report=? AND period=? AND message=? AND recipient=?",
                    (run_id, *where),
                )
                result.mine.append(owner)
        return result

    @staticmethod
    def _adopt_lowered(
        db: sqlite3.Connection, where: tuple[str, str, str, str]
    ) -> tuple[str, str | None] | None:
        """A chat row an earlier version stored lower-cased (``slack:slack_webhook_x``)
        takes the channel's name as written, keeping its status: posted stays posted."""
        report, period, message, key = where
        if not is_chat(key) or key == key.lower():
            return None
        found = db.execute(
            "SELECT status, run_id FROM deliveries"
            " WHERE report=? AND period=? AND message=? AND recipient=?",
            (report, period, message, key.lower()),
        ).fetchone()
        if found is None:
            return None
        db.execute(
            "UPDATE deliveries SET recipient=?"
            " WHERE report=? AND period=? AND message=? AND recipient=?",
            (key, report, period, message, key.lower()),
        )
        return (str(found[0]), found[1])

    # --- reading and marking ------------------------------------------------------

    def delivered(self, report: str, period: str, message: str = REPORT) -> set[str]:
        rows = self._read(
            "SELECT recipient FROM deliveries"
            " WHERE report=? AND period=? AND message=? AND status='sent'",
            (report, period, message),
        )
        return {r[0] for r in rows}

    def mark(
        self,
        reports: Iterable[str],
        period: str,
        recipients: Iterable[str],
        status: str,
        *,
        message_id: str | None = None,
        artifact: str | None = None,
        error: str | None = None,
        message: str | Sequence[str] = REPORT,
        versions: Mapping[str, int] | None = None,
    ) -> None:
        """Record a state for every (report, message, recipient) this run holds, in one
        transaction; ``message`` may name several (one email carrying several alerts).

        ``versions`` (report -> version) names the version of each report the message
        carries; a ``sent`` mark records that version as received by the recipient."""
        messages = [message] if isinstance(message, str) else list(message)
        now = self._now()
        bump = 1 if status == "sending" else 0
        run_id = self.start_run()
        error = None if error is None else self._redact(error)
        recipients = list(recipients)
        with self._writing() as db:
            for report, kind, recipient in itertools.product(reports, messages, recipients):
                key = (report, period, kind, recipient_key(recipient))
                version = (versions or {}).get(report) if kind == REPORT else None
                db.execute(
                    "INSERT INTO deliveries (report, period, message, recipient, status,"
                    " message_id, artifact, error, attempts, updated_at, run_id, version)"
                    " VALUES (?,?,?,?,?,?,?,?,?,?,?,?)"
                    " ON CONFLICT (report, period, message, recipient) DO UPDATE SET"
                    " status=excluded.status,"
                    " message_id=COALESCE(excluded.message_id, message_id),"
                    " artifact=COALESCE(excluded.artifact, artifact),"
                    " version=COALESCE(excluded.version, version),"
                    " error=excluded.error, attempts=attempts+?,"
                    " updated_at=excluded.updated_at"
                    " WHERE run_id IS excluded.run_id",
                    (*key, status, message_id, artifact, error, bump, now, run_id, version, bump),
                )
                if status == "sent" and kind == REPORT:
                    # What the recipient now holds: the version the row's message carries.
                    db.execute(
                        "INSERT OR IGNORE INTO received (report, period, recipient, version,"
                        " message_id, received_at) SELECT report, period, recipient, version,"
                        " message_id, ? FROM deliveries WHERE report=? AND period=?"
                        " AND message=? AND recipient=? AND version IS NOT NULL AND run_id IS ?",
                        (now, *key, run_id),
                    )

    def rows(self, period: str | None = None, *, message: str | None = REPORT) -> list[Delivery]:
        """Rows of one kind of message (``None``: every kind), newest period first."""
        query = (
            "SELECT report, period, recipient, status, message_id, artifact, error,"
            " attempts, updated_at, run_id, message, version FROM deliveries"
        )
        where = []
        args: tuple[str, ...] = ()
        if period:
            where.append("period=?")
            args += (period,)
        if message is not None:
            where.append("message=?")
            args += (message,)
        if where:
            query += " WHERE " + " AND ".join(where)
        query += " ORDER BY period DESC, report, message, recipient"
        return [Delivery(*row) for row in self._read(query, args)]

    # --- versions: what each recipient holds (for supersession and corrections) ------

    def new_version(self, report: str, period: str, credits: float | None = None) -> int:
        """The next version of ``report`` for ``period``, numbered after every earlier one,
        whichever run made it; ``credits`` may follow with ``set_version_credits``."""
        with self._writing() as db:
            (number,) = db.execute(
                "SELECT COALESCE(MAX(version), 0) + 1 FROM versions WHERE report=? AND period=?",
                (report, period),
            ).fetchone()
            db.execute(
                "INSERT INTO versions (report, period, version, credits, created_at)"
                " VALUES (?,?,?,?,?)",
                (report, period, number, credits, self._now()),
            )
        return int(number)

    def set_version_credits(self, report: str, period: str, version: int, credits: float) -> None:
        with self._writing() as db:
            db.execute(
                "UPDATE versions SET credits=? WHERE report=? AND period=? AND version=?",
                (credits, report, period, version),
            )

    def latest_versions(self, period: str) -> dict[str, int]:
        """report -> its newest version for ``period`` that was built (its data came in): a
        pending message of an older one is superseded. A version whose build failed
        supersedes nothing."""
        rows = self._read(
            "SELECT report, MAX(version) FROM versions WHERE period=? AND credits IS NOT NULL"
            " GROUP BY report",
            (period,),
        )
        return {str(r): int(v) for r, v in rows}

    def version_credits(self, report: str, period: str, version: int) -> float | None:
        rows = self._read(
            "SELECT credits FROM versions WHERE report=? AND period=? AND version=?",
            (report, period, version),
        )
        return None if not rows or rows[0][0] is None else float(rows[0][0])

    def held(self, report: str, period: str) -> dict[str, Held]:
        """recipient (as ``recipient_key`` stores it) -> the newest version of ``report``
        they were confirmed to receive, and the total it showed."""
        rows = self._read(
            "SELECT r.recipient, MAX(r.version), v.credits FROM received r"
            " LEFT JOIN versions v ON v.report=r.report AND v.period=r.period"
            " AND v.version=r.version WHERE r.report=? AND r.period=? GROUP BY r.recipient",
            (report, period),
        )
        return {
            str(who): Held(int(version), None if credits is None else float(credits))
            for who, version, credits in rows
        }

    # --- renamed reports ------------------------------------------------------------

    def rename(self, renames: Mapping[str, str]) -> int:
        """Move what the ledger holds under a report's old name (``renamed_from``) to its
        new one, so what its owners and channels got before the rename (reports, alerts,
        posts) counts as theirs and is not sent again. Returns the rows moved.

        Idempotent, and in one transaction. If the new name has rows of its own for a
        period (it ran before ``renamed_from`` was set), the old name's versions come first
        and the new name's are renumbered after them; a delivery row is kept from whichever
        name delivered it. A message the old name left pending is rebuilt, never resent:
        it may carry the old title."""
        moved = 0
        with self._writing() as db:
            for old, new in renames.items():
                periods = [
                    str(p)
                    for (p,) in db.execute(
                        "SELECT period FROM deliveries WHERE report=?"
                        " UNION SELECT period FROM versions WHERE report=?",
                        (old, old),
                    )
                ]
                for period in periods:
                    moved += self._rename_period(db, old, new, period)
        if moved:
            log.info("ledger: %d row(s) of renamed reports moved to their new names", moved)
        return moved

    @staticmethod
    def _rename_period(db: sqlite3.Connection, old: str, new: str, period: str) -> int:
        (shift,) = db.execute(
            "SELECT COALESCE(MAX(version), 0) FROM versions WHERE report=? AND period=?",
            (old, period),
        ).fetchone()
        if shift:
            # Negated first, then shifted: a row never takes a number still in use.
            for table in ("versions", "received", "deliveries"):
                for step in ("-version", "?-version"):
                    args = (shift,) if step.startswith("?") else ()
                    db.execute(
                        f"UPDATE {table} SET version={step}"
                        " WHERE report=? AND period=? AND version IS NOT NULL",
                        (*args, new, period),
                    )
        db.execute("UPDATE versions SET report=? WHERE report=? AND period=?", (new, old, period))
        db.execute(
            "UPDATE OR IGNORE received SET report=? WHERE report=? AND period=?",
            (new, old, period),
        )
        db.execute("DELETE FROM received WHERE report=? AND period=?", (old, period))
        moved = 0
        rows = db.execute(
            "SELECT message, recipient, status FROM deliveries WHERE report=? AND period=?",
            (old, period),
        ).fetchall()
        for message, recipient, status in rows:
            mine = db.execute(
                "SELECT status FROM deliveries"
                " WHERE report=? AND period=? AND message=? AND recipient=?",
                (new, period, message, recipient),
            ).fetchone()
            if mine is not None:
                if status not in DELIVERED or mine[0] in DELIVERED or mine[0] in IN_FLIGHT:
                    db.execute(
                        "DELETE FROM deliveries"
                        " WHERE report=? AND period=? AND message=? AND recipient=?",
                        (old, period, message, recipient),
                    )
                    continue
                db.execute(
                    "DELETE FROM deliveries"
                    " WHERE report=? AND period=? AND message=? AND recipient=?",
                    (new, period, message, recipient),
                )
            db.execute(
                "UPDATE deliveries SET report=?,"
                " message_id=CASE WHEN status='sent' THEN message_id END,"
                " artifact=CASE WHEN status='sent' THEN artifact END"
                " WHERE report=? AND period=? AND message=? AND recipient=?",
                (new, old, period, message, recipient),
            )
            moved += 1
        return moved

    def _read(self, query: str, args: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        try:
            return self._with_lock_wait(lambda: list(self._db.execute(query, args)))
        except sqlite3.Error as exc:
            raise LedgerError(
                self.path, f"could not be read: {exc}", "check the file, or pass another --state"
            ) from None

    def live_pid(self, run_id: str | None) -> int | None:
        """The pid of the live run holding a row, for ``history``; None when nobody does."""
        return self._alive(run_id, {}) if run_id else None


def _is_locked(exc: sqlite3.Error) -> bool:
    return "locked" in str(exc) or "busy" in str(exc)


def _is_unwritable(exc: sqlite3.Error) -> bool:
    """A read-only file or directory: SQLITE_READONLY, or SQLITE_CANTOPEN for the WAL's
    ``-shm`` file that cannot be created beside the ledger."""
    code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
    return code in (sqlite3.SQLITE_READONLY, sqlite3.SQLITE_CANTOPEN)
