"""The ledger keeps every kind of message (reports, alerts, corrections) in one table,
and ledgers written by earlier versions keep their deliveries when they are opened."""

from __future__ import annotations

import multiprocessing
import sqlite3
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from reporter.cli import cli
from reporter.ledger import APPLICATION_ID, SCHEMA_VERSION, Held, Ledger, LedgerError

_V1 = """
CREATE TABLE deliveries (
    report TEXT NOT NULL, period TEXT NOT NULL, recipient TEXT NOT NULL,
    status TEXT NOT NULL, message_id TEXT, artifact TEXT, error TEXT,
    attempts INTEGER NOT NULL DEFAULT 0, updated_at TEXT NOT NULL,
    PRIMARY KEY (report, period, recipient)
)
"""


def _old_ledger(path: Path, version: int) -> None:
    """A ledger as schema 1 (no application id, no run_id) or 2 wrote it."""
    with sqlite3.connect(path) as db:
        db.execute(_V1)
        if version == 2:
            db.execute("ALTER TABLE deliveries ADD COLUMN run_id TEXT")
            db.execute(f"PRAGMA application_id={APPLICATION_ID}")
            db.execute("PRAGMA user_version=2")
        db.execute(
            "INSERT INTO deliveries (report, period, recipient, status, message_id, attempts,"
            " updated_at) VALUES ('marketing', '2026-10', 'ann@company.com', 'sent', '<m1@x>',"
            " 1, '2026-11-01T07:00:00+00:00')"
        )
        db.execute(
            "INSERT INTO deliveries (report, period, recipient, status, attempts, updated_at)"
            " VALUES ('marketing', '2026-10', 'bob@company.com', 'failed', 1,"
            " '2026-11-01T07:00:00+00:00')"
        )


def test_schema_1_and_2_ledgers_migrate_keeping_every_delivery(tmp_path: Path) -> None:
    for version in (1, 2):
        path = tmp_path / f"v{version}.sqlite3"
        _old_ledger(path, version)
        with Ledger(path) as ledger:
            rows = ledger.rows(message=None)
            assert [(r.recipient, r.status, r.message) for r in rows] == [
                ("ann@company.com", "sent", "report"),
                ("bob@company.com", "failed", "report"),
            ]
            assert rows[0].message_id == "<m1@x>"
            assert ledger.delivered("marketing", "2026-10") == {"ann@company.com"}
            # Ann has the report; an alert to her for the same period is a new message.
            claim = ledger.claim(
                "marketing", "2026-10", ["ann@company.com"], force=False, message="alert:forecast"
            )
            assert claim.mine == ["ann@company.com"]
            again = ledger.claim("marketing", "2026-10", ["ann@company.com"], force=False)
            assert again.done == ["ann@company.com"]
        with sqlite3.connect(path) as db:
            assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 4
            assert db.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
            pk = [r[1] for r in db.execute("PRAGMA table_info(deliveries)") if r[5]]
            assert pk == ["report", "period", "message", "recipient"]


def test_an_alert_is_delivered_once_per_owner_beside_the_report(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    owners = ["ann@company.com", "bob@company.com"]
    kind = "alert:threshold:80"
    with Ledger(path) as ledger:
        claim = ledger.claim("marketing", "2026-11", owners, force=False, message=kind)
        assert claim.mine == owners
        ledger.mark(["marketing"], "2026-11", owners[:1], "sent", message=kind)
        ledger.mark(["marketing"], "2026-11", owners[1:], "failed", error="550", message=kind)
        assert ledger.delivered("marketing", "2026-11", kind) == {"ann@company.com"}
        assert ledger.delivered("marketing", "2026-11") == set()  # the report: not sent
        assert ledger.rows("2026-11") == []  # rows() reads reports unless told otherwise
        assert {r.message for r in ledger.rows("2026-11", message=None)} == {kind}
    with Ledger(path) as ledger:
        claim = ledger.claim("marketing", "2026-11", owners, force=False, message=kind)
        assert claim.done == ["ann@company.com"]
        assert claim.mine == ["bob@company.com"]  # the failed one is due again


def test_each_recipient_holds_the_newest_version_they_were_confirmed_to_receive(
    tmp_path: Path,
) -> None:
    """Versions are numbered in order across runs; a ``sent`` mark records the version the
    row's message carries, a failed one records nothing."""
    path = tmp_path / "state.sqlite3"
    owners = ["ann@company.com", "Bob@company.com"]
    with Ledger(path) as ledger:
        assert ledger.held("marketing", "2026-10") == {}
        first = ledger.new_version("marketing", "2026-10")
        ledger.set_version_credits("marketing", "2026-10", first, 1200.5)
        assert ledger.new_version("sales", "2026-10", 10.0) == 1
        ledger.claim("marketing", "2026-10", owners, force=False)
        ledger.mark(["marketing"], "2026-10", owners, "rendered", versions={"marketing": first})
        ledger.mark(["marketing"], "2026-10", owners[:1], "sent")
        ledger.mark(["marketing"], "2026-10", owners[1:], "failed", error="550 no")
    with Ledger(path) as ledger:
        unbuilt = ledger.new_version("marketing", "2026-10")  # its fetch failed
        assert ledger.latest_versions("2026-10")["marketing"] == first  # supersedes nothing
        second = ledger.new_version("marketing", "2026-10", 1300.0)
        assert second == unbuilt + 1
        assert ledger.latest_versions("2026-10") == {"marketing": second, "sales": 1}
        assert ledger.held("marketing", "2026-10") == {"ann@company.com": Held(first, 1200.5)}
        ledger.claim("marketing", "2026-10", owners, force=True)
        ledger.mark(["marketing"], "2026-10", owners, "rendered", versions={"marketing": second})
        ledger.mark(["marketing"], "2026-10", owners, "sent")
        assert ledger.held("marketing", "2026-10") == {
            "ann@company.com": Held(second, 1300.0),
            "bob@company.com": Held(second, 1300.0),
        }
        assert ledger.held("marketing", "2026-09") == {}


def test_a_schema_3_ledger_keeps_what_each_owner_was_shown_as_versions(tmp_path: Path) -> None:
    """The report as delivered is version 1, a delivered correction the next; a correction
    that failed is forgotten (the next re-check computes it again)."""
    path = tmp_path / "v3.sqlite3"
    with sqlite3.connect(path) as db:
        db.execute(
            "CREATE TABLE deliveries (report TEXT NOT NULL, period TEXT NOT NULL, message TEXT"
            " NOT NULL DEFAULT 'report', recipient TEXT NOT NULL, status TEXT NOT NULL,"
            " message_id TEXT, artifact TEXT, error TEXT, attempts INTEGER NOT NULL DEFAULT 0,"
            " updated_at TEXT NOT NULL, run_id TEXT,"
            " PRIMARY KEY (report, period, message, recipient))"
        )
        db.execute(
            "CREATE TABLE shown_totals (report TEXT NOT NULL, period TEXT NOT NULL, credits"
            " REAL NOT NULL, recorded_at TEXT NOT NULL, PRIMARY KEY (report, period))"
        )
        rows = [
            ("m", "report", "ann@x.com", "sent", "2026-11-01T07:00:00+00:00"),
            ("m", "report", "bob@x.com", "sent", "2026-11-01T07:00:00+00:00"),
            ("m", "correction:3350", "ann@x.com", "sent", "2026-11-03T07:00:00+00:00"),
            ("m", "correction:3350", "bob@x.com", "failed", "2026-11-03T07:00:00+00:00"),
            ("s", "report", "cy@x.com", "sent", "2026-11-01T07:00:00+00:00"),
        ]
        for report, message, recipient, status, at in rows:
            db.execute(
                "INSERT INTO deliveries (report, period, message, recipient, status,"
                " message_id, updated_at) VALUES (?, '2026-10', ?, ?, ?, '<id>', ?)",
                (report, message, recipient, status, at),
            )
        db.execute("INSERT INTO shown_totals VALUES ('s', '2026-10', 42, 'x')")
        db.execute(f"PRAGMA application_id={APPLICATION_ID}")
        db.execute("PRAGMA user_version=3")
    with Ledger(path) as ledger:
        assert ledger.held("m", "2026-10") == {
            "ann@x.com": Held(2, 3350.0),
            "bob@x.com": Held(1, None),  # its total was overwritten by the correction's
        }
        assert ledger.held("s", "2026-10") == {"cy@x.com": Held(1, 42.0)}
        assert ledger.latest_versions("2026-10") == {"m": 2, "s": 1}


def test_history_lists_alerts_beside_reports(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    with Ledger(path) as ledger:
        ledger.claim("marketing", "2026-11", ["ann@company.com"], force=False)
        ledger.mark(["marketing"], "2026-11", ["ann@company.com"], "sent")
        ledger.mark(
            ["marketing"], "2026-11", ["ann@company.com"], "sent", message="alert:spike:2026-11-12"
        )
    result = CliRunner().invoke(cli, ["history", "--state", str(path)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split()[:4] == ["period", "report", "message", "recipient"]
    kinds = sorted(line.split()[2] for line in lines[1:])
    assert kinds == ["alert:spike:2026-11-12", "report"]


def _open_at_once(path: Path, start: Any, results: Any) -> None:
    start.wait()
    try:
        with Ledger(path) as ledger:
            ledger.start_run()
            ledger.recover()
        results.put("ok")
    except LedgerError as exc:
        results.put(exc.message)


def test_two_runs_opening_a_new_ledger_at_the_same_instant_both_get_it(tmp_path: Path) -> None:
    """Two runs started together on a new --state each open it. Before the creation was
    serialised, about one pair in thirty had one run refused: the file seen half-made
    ("an SQLite file of another program") or SQLite's immediate busy answer. A race, so
    many pairs: 60 of them, each on a new file, two processes released by one barrier."""
    context = multiprocessing.get_context("fork")
    failures = []
    for i in range(60):
        path = tmp_path / f"state-{i}.sqlite3"
        start, results = context.Barrier(2), context.Queue()
        runs = [
            context.Process(target=_open_at_once, args=(path, start, results)) for _ in range(2)
        ]
        for run in runs:
            run.start()
        for run in runs:
            run.join(60)
        failures += [r for r in (results.get(timeout=5), results.get(timeout=5)) if r != "ok"]
    assert failures == []


def test_a_renamed_reports_rows_move_to_its_new_name_before_the_new_names_own(
    tmp_path: Path,
) -> None:
    """``renamed_from``: the old name's versions come first, the new name's (it ran before
    ``renamed_from`` was set) are renumbered after them; a row is kept from whichever name
    delivered it; a message the old name left pending is rebuilt, not resent."""
    period = "2026-10"
    with Ledger(tmp_path / "ledger.sqlite3") as ledger:
        ledger.start_run()
        old = ledger.new_version("marketing", period, 100.0)
        ledger.claim("marketing", period, ["ann@company.com", "bob@company.com"], force=False)
        ledger.mark(
            ["marketing"],
            period,
            ["ann@company.com"],
            "sent",
            message_id="<v1@x>",
            versions={"marketing": old},
        )
        ledger.mark(
            ["marketing"],
            period,
            ["bob@company.com"],
            "failed",
            message_id="<v1@x>",
            artifact="/out/old.eml",
            versions={"marketing": old},
        )
        ledger.claim(
            "marketing", period, ["ann@company.com"], force=False, message="alert:threshold:80"
        )
        ledger.mark(
            ["marketing"], period, ["ann@company.com"], "sent", message="alert:threshold:80"
        )
        new = ledger.new_version("growth", period, 120.0)
        ledger.claim("growth", period, ["ann@company.com", "cy@company.com"], force=False)
        ledger.mark(
            ["growth"],
            period,
            ["ann@company.com"],
            "failed",
            message_id="<g1@x>",
            versions={"growth": new},
        )
        ledger.mark(
            ["growth"],
            period,
            ["cy@company.com"],
            "sent",
            message_id="<g1@x>",
            versions={"growth": new},
        )
        assert (old, new) == (1, 1)

        assert ledger.rename({"marketing": "growth"}) == 3
        assert ledger.rename({"marketing": "growth"}) == 0  # idempotent

        assert ledger.latest_versions(period) == {"growth": 2}
        assert ledger.version_credits("growth", period, 1) == 100.0
        assert ledger.version_credits("growth", period, 2) == 120.0
        assert ledger.held("growth", period) == {
            "ann@company.com": Held(1, 100.0),
            "cy@company.com": Held(2, 120.0),
        }
        rows = {(r.report, r.recipient, r.message): r for r in ledger.rows(period, message=None)}
    assert {r for r, _, _ in rows} == {"growth"}
    assert rows[("growth", "ann@company.com", "report")].status == "sent"  # the old name's
    assert rows[("growth", "ann@company.com", "report")].version == 1
    assert rows[("growth", "cy@company.com", "report")].version == 2
    pending = rows[("growth", "bob@company.com", "report")]
    assert (pending.status, pending.message_id, pending.artifact) == ("failed", None, None)
    assert rows[("growth", "ann@company.com", "alert:threshold:80")].status == "sent"
