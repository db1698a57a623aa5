"""``reporter watch`` run every day of a month against the stand-in API and a real SMTP
server: each alert reaches the right owners once, on the day it became due."""

from __future__ import annotations

import datetime as dt
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from reporter.cli import cli
from reporter.jobs.watch import PARALLEL_FROM
from reporter.sandbox import SandboxData, SandboxServer, synthetic_team
from tests.conftest import API_KEY, SmtpServer, write_config

NOVEMBER = [dt.date(2026, 11, day) for day in range(1, 31)]
OCTOBER = [dt.date(2026, 10, day) for day in range(1, 32)]
OWNERS = ["lead@company.com", "finance@company.com"]
REPORTER = Path(sys.executable).parent / "reporter"

# Marketing (group 20) spends 100 credits a day, 400 on Nov 12, against 3,000 a month:
# 1,500 (50%) through the 12th, 2,400 (80%) through the 21st, 3,000 (100%) on the 27th;
# from the 12th on the run rate (1,500 / 12 days x 30) forecasts 3,750, over the budget.
SERIES = dict.fromkeys(OCTOBER, 100) | {day: (400 if day.day == 12 else 100) for day in NOVEMBER}
DUE = {
    dt.date(2026, 11, 12): {
        "50% of the November budget used",
        "forecast to exceed the November budget",
        "usage spike on Nov 12",
    },
    dt.date(2026, 11, 21): {"80% of the November budget used"},
    dt.date(2026, 11, 27): {"100% of the November budget used"},
}

CONFIG = f"""
[[reports]]
name = "marketing"
title = "Marketing Campaign"
owners = {OWNERS!r}
group_ids = [20]
budget_credits = 3000
alert_thresholds = [50, 80, 100]

[[reports]]
name = "design"
owners = ["design@company.com"]
group_ids = [10]
budget_credits = 100000000
spike_factor = 0
"""


@pytest.fixture
def month_api() -> Iterator[SandboxServer]:
    data = SandboxData(synthetic_team(users=48, seed=7), today=dt.date(2026, 12, 1))
    data.script(20, SERIES)
    with SandboxServer(data, api_key=API_KEY) as server:
        yield server


def watch(
    tmp_path: Path, api: SandboxServer, smtp: SmtpServer, day: dt.date, *extra: str
) -> Result:
    config = write_config(tmp_path / "reports.toml", CONFIG)
    env = {"MAGNIFIC_API_KEY": API_KEY, "MAGNIFIC_API_BASE_URL": api.url, **smtp.env()}
    args = ["watch", "--config", str(config), "--date", day.isoformat(), "-q"]
    args += ["--out", str(tmp_path / "out"), "--state", str(tmp_path / "state.sqlite3"), *extra]
    return CliRunner().invoke(cli, args, env=env)


def test_a_month_day_by_day_sends_each_alert_once_on_its_day(
    tmp_path: Path, month_api: SandboxServer, smtp: SmtpServer
) -> None:
    seen = 0
    sent_on: dict[dt.date, list[EmailMessage]] = {}
    for day in NOVEMBER:
        result = watch(tmp_path, month_api, smtp, day)
        assert result.exit_code == 0, (day, result.output)
        new = smtp.recorder.messages[seen:]
        seen = len(smtp.recorder.messages)
        if new:
            assert [sorted(r.recipients) for r in new] == [sorted(OWNERS)], day
            sent_on[day] = [r.message for r in new]
    assert set(sent_on) == set(DUE)
    for day, messages in sent_on.items():
        (message,) = messages
        subject = str(message["Subject"])
        assert subject.startswith("Marketing Campaign: ")
        assert set(subject.removeprefix("Marketing Campaign: ").split("; ")) == DUE[day]
    # The spike day's message carries its figures, the chart and "data through".
    message = sent_on[dt.date(2026, 11, 12)][0]
    text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "Data through Nov 12, 2026 (complete days, UTC)." in text
    assert "Nov 12, 2026: 400 credits, 4.0 times a typical day (100 credits" in text
    assert "Credits used: 1,500 of a budget of 3,000 (50.0%)" in text
    assert "Forecast for the month: 3,750 (reaches the budget on Nov 24, 2026)" in text
    assert (
        "Tools above their typical day: AI Image Models 400 credits against a typical 100." in text
    )
    html = message.get_body(("html",)).get_content()  # type: ignore[union-attr]
    images = [p for p in message.walk() if p.get_content_type() == "image/png"]
    assert len(images) == 1
    assert images[0].get_payload(decode=True).startswith(b"\x89PNG")
    assert f"cid:{images[0]['Content-ID'].strip('<>')}" in html
    assert [p.get_content_type() for p in message.iter_attachments()] == []  # no PDF
    # The ledger has one sent row per alert and owner, beside nothing for design.
    with sqlite3.connect(tmp_path / "state.sqlite3") as db:
        rows = db.execute("SELECT report, message, recipient, status FROM deliveries").fetchall()
    assert sorted((m, r) for _, m, r, s in rows if s == "sent") == sorted(
        (m, r)
        for m in [
            "alert:threshold:50",
            "alert:threshold:80",
            "alert:threshold:100",
            "alert:forecast",
            "alert:spike:2026-11-12",
        ]
        for r in OWNERS
    )
    assert all(report == "marketing" and status == "sent" for report, _, _, status in rows)


def test_an_smtp_failure_leaves_the_alert_due_for_the_next_run(
    tmp_path: Path, month_api: SandboxServer, smtp: SmtpServer
) -> None:
    smtp.recorder.fail_data.append("554 5.7.1 Message rejected")
    first = watch(tmp_path, month_api, smtp, dt.date(2026, 11, 21))
    assert first.exit_code == 1
    assert smtp.recorder.messages == []
    second = watch(tmp_path, month_api, smtp, dt.date(2026, 11, 22))
    assert second.exit_code == 0, second.output
    (received,) = smtp.recorder.messages
    subject = str(received.message["Subject"])
    # Both thresholds passed meanwhile: the subject names the higher, the body both.
    assert subject.startswith("Marketing Campaign: 80% of the November budget used; ")
    assert "50%" not in subject
    text = received.message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "* 80% of the November budget used" in text
    assert "* 50% of the November budget used" in text
    third = watch(tmp_path, month_api, smtp, dt.date(2026, 11, 23))
    assert third.exit_code == 0
    assert len(smtp.recorder.messages) == 1


def test_a_dry_run_writes_the_message_and_records_nothing(
    tmp_path: Path, month_api: SandboxServer, smtp: SmtpServer
) -> None:
    result = watch(tmp_path, month_api, smtp, dt.date(2026, 11, 12), "--dry-run")
    assert result.exit_code == 0, result.output
    assert smtp.recorder.messages == []
    assert not (tmp_path / "state.sqlite3").exists()
    (eml,) = (tmp_path / "out" / "2026-11" / "alerts").glob("*.eml")
    assert eml.name == "marketing-alert-2026-11-12.eml"
    assert b"usage spike on Nov 12" in eml.read_bytes()
    again = watch(tmp_path, month_api, smtp, dt.date(2026, 11, 12))
    assert again.exit_code == 0
    assert len(smtp.recorder.messages) == 1  # the dry run did not use the alerts up


def test_alerts_are_in_the_reports_locale(
    tmp_path: Path, month_api: SandboxServer, smtp: SmtpServer
) -> None:
    config = write_config(
        tmp_path / "reports.toml",
        CONFIG.replace(
            "alert_thresholds = [50, 80, 100]", 'alert_thresholds = [50, 80, 100]\nlocale = "es"'
        ),
    )
    env = {"MAGNIFIC_API_KEY": API_KEY, "MAGNIFIC_API_BASE_URL": month_api.url, **smtp.env()}
    args = ["watch", "--config", str(config), "--date", "2026-11-12", "--report", "marketing"]
    args += ["--out", str(tmp_path / "out"), "--state", str(tmp_path / "state.sqlite3")]
    result = CliRunner().invoke(cli, args, env=env)
    assert result.exit_code == 0, result.output
    (received,) = smtp.recorder.messages
    # (Folded into encoded words, the subject may come back with a doubled space.)
    assert " ".join(str(received.message["Subject"]).split()) == (
        "Marketing Campaign: 50% del presupuesto de noviembre usado;"
        " previsión por encima del presupuesto de noviembre; pico de uso el 12 nov"
    )
    text = received.message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "Datos hasta el 12 nov 2026 inclusive (días completos, UTC)." in text
    assert "Créditos usados: 1.500 de un presupuesto de 3.000" in text


def test_many_reports_are_decided_and_written_in_worker_processes_each_alert_once(
    tmp_path: Path, month_api: SandboxServer, smtp: SmtpServer
) -> None:
    """From ``PARALLEL_FROM`` reports, alerts are decided and written in worker processes
    (a real ``reporter`` process here, as a scheduler runs it): each report's owners get
    their one message, and the next day nothing again."""
    count = PARALLEL_FROM + 2
    config = write_config(
        tmp_path / "many.toml",
        "".join(
            f'[[reports]]\nname = "team-{i}"\ntitle = "Team {i}"\n'
            f'owners = ["lead{i}@company.com"]\ngroup_ids = [20]\nbudget_credits = 3000\n'
            "alert_thresholds = [50, 80, 100]\n"
            for i in range(count)
        ),
    )
    env = {
        **os.environ,
        "MAGNIFIC_API_KEY": API_KEY,
        "MAGNIFIC_API_BASE_URL": month_api.url,
        **smtp.env(),
    }
    for day in (dt.date(2026, 11, 12), dt.date(2026, 11, 13)):
        args = ["watch", "--config", str(config), "--date", day.isoformat(), "-q"]
        args += ["--out", str(tmp_path / "out"), "--state", str(tmp_path / "state.sqlite3")]
        done = subprocess.run(
            [str(REPORTER), *args],
            check=False,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr
    by_owner = {r.recipients[0]: r.message for r in smtp.recorder.messages}
    assert len(smtp.recorder.messages) == count
    assert sorted(by_owner) == sorted(f"lead{i}@company.com" for i in range(count))
    for i in range(count):
        subject = str(by_owner[f"lead{i}@company.com"]["Subject"])
        assert subject.startswith(f"Team {i}: ")
        assert set(subject.removeprefix(f"Team {i}: ").split("; ")) == DUE[dt.date(2026, 11, 12)]


def test_the_readmes_example_alert_is_what_watch_sends(
    tmp_path: Path, month_api: SandboxServer, smtp: SmtpServer
) -> None:
    """The README shows the message for this module's data on Nov 12, word for word."""
    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Alerts while the month runs") :]
    example = section[
        section.index("```text\n") + 8 : section.index("\n```", section.index("```text"))
    ]
    subject, _, body = example.partition("\n\n")
    result = watch(tmp_path, month_api, smtp, dt.date(2026, 11, 12), "--report", "marketing")
    assert result.exit_code == 0, result.output
    (received,) = smtp.recorder.messages
    assert subject == f"Subject: {' '.join(str(received.message['Subject']).split())}"
    text = received.message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    sent = [line.rstrip() for line in text.replace("\r\n", "\n").split("\n")]
    assert body.split("\n") == sent[: len(body.split("\n"))]
