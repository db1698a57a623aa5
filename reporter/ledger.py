"""The delivery ledger: which owner has been sent which report for which period.

One row per (report, period, recipient). A message moves through
``rendered`` -> ``sending`` -> ``committing`` -> ``sent`` (or ``failed``).
``sending`` is written before the SMTP transaction and ``committing`` just
before the final "." of DATA (see ``mail.py``), so after a crash the next run
can tell "the server cannot have it" (resend) from "it may have it"
(``unconfirmed``: counted as delivered, never sent twice).
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from reporter.errors import UsageError

DELIVERED = ("sent", "unconfirmed")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS deliveries (
    report      TEXT NOT NULL,
    period      TEXT NOT NULL,
    recipient   TEXT NOT NULL,
    status      TEXT NOT NULL,
    message_id  TEXT,
    artifact    TEXT,
    error       TEXT,
    attempts    INTEGER NOT NULL DEFAULT 0,
    updated_at  TEXT NOT NULL,
    PRIMARY KEY (report, period, recipient)
);
"""


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


class Ledger:
    """SQLite-backed; safe to share between the processes of one run (WAL, busy timeout)."""

    def __init__(self, path: Path, *, clock: type[dt.datetime] = dt.datetime) -> None:
        self.path = path
        self._clock = clock
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(
                path, timeout=30, isolation_level=None, check_same_thread=False
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
        except (sqlite3.Error, OSError) as exc:
            raise UsageError(
                f"cannot open the delivery ledger {path}: {exc}",
                hint="pass --state with a writable path",
            ) from None

    def close(self) -> None:
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

    def recover(self) -> dict[str, int]:
        """Settle what a killed run left behind; returns how many rows moved where."""
        with self._transaction() as db:
            resend = db.execute(
                "UPDATE deliveries SET status='failed', updated_at=?,"
                " error='interrupted before the message was complete; will be sent again'"
                " WHERE status='sending'",
                (self._now(),),
            ).rowcount
            unconfirmed = db.execute(
                "UPDATE deliveries SET status='unconfirmed', updated_at=?,"
                " error='interrupted after the message was handed over; not sent again'"
                " WHERE status='committing'",
                (self._now(),),
            ).rowcount
        return {"failed": resend, "unconfirmed": unconfirmed}

    def delivered(self, report: str, period: str) -> set[str]:
        rows = self._db.execute(
            "SELECT recipient FROM deliveries WHERE report=? AND period=? AND status IN (?, ?)",
            (report, period, *DELIVERED),
        )
        return {r[0] for r in rows}

    def pending(self, report: str, period: str, owners: Sequence[str]) -> list[str]:
        """Owners who do not have this report for this period yet."""
        done = {r.lower() for r in self.delivered(report, period)}
        return [o for o in owners if o.lower() not in done]

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
    ) -> None:
        """Record a state for every (report, recipient) pair, in one transaction."""
        now = self._now()
        bump = 1 if status == "sending" else 0
        with self._transaction() as db:
            for report in reports:
                for recipient in recipients:
                    db.execute(
                        "INSERT INTO deliveries (report, period, recipient, status, message_id,"
                        " artifact, error, attempts, updated_at) VALUES (?,?,?,?,?,?,?,?,?)"
                        " ON CONFLICT (report, period, recipient) DO UPDATE SET"
                        " status=excluded.status,"
                        " message_id=COALESCE(excluded.message_id, message_id),"
                        " artifact=COALESCE(excluded.artifact, artifact),"
                        " error=excluded.error, attempts=attempts+?,"
                        " updated_at=excluded.updated_at",
                        (
                            report,
                            period,
                            recipient.lower(),
                            status,
                            message_id,
                            artifact,
                            error,
                            bump,
                            now,
                            bump,
                        ),
                    )

    def rows(self, period: str | None = None) -> list[Delivery]:
        query = (
            "SELECT report, period, recipient, status, message_id, artifact, error,"
            " attempts, updated_at FROM deliveries"
        )
        args: tuple[str, ...] = ()
        if period:
            query += " WHERE period=?"
            args = (period,)
        query += " ORDER BY period DESC, report, recipient"
        return [Delivery(*row) for row in self._db.execute(query, args)]
