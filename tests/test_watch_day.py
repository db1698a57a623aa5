"""``reporter watch`` as the workflow runs it: every morning at 07:00 UTC, without
``--date``, against an API that has nothing yet for the day in progress.

The clock is fixed by time-machine, and the stand-in API reads the same clock, so it
answers only for days that have ended. What each run must send is computed here,
independently, from the scripted daily series: every alert once, on the first run
that can see it, including what became due on a month's last day (sent on the 1st,
labelled with the month that ended).
"""

from __future__ import annotations

import calendar
import datetime as dt
import os
import re
import sqlite3
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from email.message import EmailMessage
from pathlib import Path

import pytest
import time_machine
from click.testing import CliRunner, Result

from reporter.cli import cli
from reporter.ledger import Ledger
from reporter.sandbox import SandboxData, SandboxServer, synthetic_team
from tests.conftest import API_KEY, SmtpServer, reporter, write_config

OWNER = "lead@company.com"
SPIKE_FACTOR = 3.0


def days(first: dt.date, last: dt.date) -> list[dt.date]:
    return [first + dt.timedelta(days=n) for n in range((last - first).days + 1)]


def text_of(message: EmailMessage) -> str:
    return message.get_body(("plain",)).get_content()  # type: ignore[union-attr]


def headlines(message: EmailMessage) -> set[str]:
    """The alerts a message names: its "* ..." lines."""
    return {line[2:].strip() for line in text_of(message).splitlines() if line.startswith("* ")}


# --- what is due, computed independently of reporter --------------------------------


def due_through(
    series: Mapping[dt.date, int], budget: float, thresholds: list[int], through: dt.date
) -> set[str]:
    """Every alert due on the data through ``through`` (its month so far), as the
    message's line names it."""
    start = through.replace(day=1)
    length = calendar.monthrange(through.year, through.month)[1]
    month_days = days(start, through)
    used = sum(series.get(d, 0) for d in month_days)
    name = calendar.month_name[through.month]
    due = {f"{t}% of the {name} budget used" for t in thresholds if used >= budget * t / 100}
    elapsed = len(month_days)
    if elapsed < length and used / elapsed * length > budget and used < budget:
        due.add(f"Forecast to exceed the {name} budget")
    for day in month_days:
        before = [series.get(day - dt.timedelta(days=k), 0) for k in range(1, 29)]
        typical = statistics.median(before)
        if typical > 0 and series.get(day, 0) >= SPIKE_FACTOR * typical:
            due.add(f"Usage spike on {calendar.month_abbr[day.month]} {day.day}")
    return due


def expected_runs(
    series: Mapping[dt.date, int], budget: float, thresholds: list[int], runs: list[dt.date]
) -> dict[dt.date, set[str]]:
    """Run day -> the alerts its run (data through the day before) sends: those due that
    no earlier run sent."""
    sent: set[str] = set()
    expected = {}
    for run in runs:
        due = due_through(series, budget, thresholds, run - dt.timedelta(days=1))
        expected[run] = {d[:1].upper() + d[1:] for d in due} - sent
        sent |= expected[run]
    return expected


# --- the simulation ---------------------------------------------------------------


def config_for(tmp_path: Path, budget: int, thresholds: list[int]) -> Path:
    return write_config(
        tmp_path / "reports.toml",
        f"""
[[reports]]
name = "marketing"
title = "Marketing Campaign"
owners = ["{OWNER}"]
group_ids = [20]
budget_credits = {budget}
alert_thresholds = {thresholds!r}
spike_factor = {SPIKE_FACTOR}
""",
    )


def watch(
    tmp_path: Path, config: Path, api: SandboxServer, smtp: SmtpServer, *extra: str
) -> Result:
    env = {"MAGNIFIC_API_KEY": API_KEY, "MAGNIFIC_API_BASE_URL": api.url, **smtp.env()}
    args = ["watch", "--config", str(config), "-q", *extra]
    args += ["--out", str(tmp_path / "out"), "--state", str(tmp_path / "state.sqlite3")]
    return CliRunner().invoke(cli, args, env=env)


@pytest.fixture
def live_api() -> Iterator[tuple[SandboxData, SandboxServer]]:
    """The stand-in on the (travelled) clock: no data for the day in progress."""
    data = SandboxData(synthetic_team(users=48, seed=7))
    with SandboxServer(data, api_key=API_KEY) as server:
        yield data, server


def series_for(
    first: dt.date, last: dt.date, daily: int, extra: Mapping[dt.date, int]
) -> dict[dt.date, int]:
    return {d: extra.get(d, daily) for d in days(first, last)}


# October: 800 a day, then 9,000 on Oct 31, a spike that also passes the budget on the
# month's last day; November: 1,100 a day, a forecast above the budget from its 1st day.
OCTOBER_SERIES = series_for(dt.date(2026, 8, 1), dt.date(2026, 10, 30), 800, {}) | series_for(
    dt.date(2026, 10, 31), dt.date(2026, 11, 30), 1100, {dt.date(2026, 10, 31): 9000}
)
# A year end and February: the last day of the month passes the budget and is a spike.
DECEMBER_SERIES = series_for(
    dt.date(2026, 10, 1), dt.date(2027, 1, 10), 800, {dt.date(2026, 12, 31): 9000}
)
FEBRUARY_SERIES = series_for(
    dt.date(2026, 12, 1), dt.date(2027, 3, 10), 800, {dt.date(2027, 2, 28): 9000}
)


@pytest.mark.parametrize(
    ("series", "budget", "thresholds", "runs", "last_day"),
    [
        pytest.param(
            OCTOBER_SERIES,
            30000,
            [50, 80, 100],
            days(dt.date(2026, 10, 20), dt.date(2026, 11, 24)),
            dt.date(2026, 10, 31),
            id="october-into-november",
        ),
        pytest.param(
            DECEMBER_SERIES,
            30 * 800 + 5000,
            [100],
            days(dt.date(2026, 12, 27), dt.date(2027, 1, 4)),
            dt.date(2026, 12, 31),
            id="year-end",
        ),
        pytest.param(
            FEBRUARY_SERIES,
            27 * 800 + 5000,
            [100],
            days(dt.date(2027, 2, 24), dt.date(2027, 3, 4)),
            dt.date(2027, 2, 28),
            id="february",
        ),
    ],
)
def test_daily_runs_at_seven_send_each_alert_once_on_the_first_run_that_can_see_it(
    tmp_path: Path,
    live_api: tuple[SandboxData, SandboxServer],
    smtp: SmtpServer,
    series: dict[dt.date, int],
    budget: int,
    thresholds: list[int],
    runs: list[dt.date],
    last_day: dt.date,
) -> None:
    data, api = live_api
    data.script(20, series)
    config = config_for(tmp_path, budget, thresholds)
    expected = expected_runs(series, budget, thresholds, runs)
    # The month's last day holds alerts, and only the 1st's run can see them.
    first_of_next = last_day + dt.timedelta(days=1)
    month_name = calendar.month_name[last_day.month]
    assert f"100% of the {month_name} budget used" in expected[first_of_next]
    assert (
        f"Usage spike on {calendar.month_abbr[last_day.month]} {last_day.day}"
        in (expected[first_of_next])
    )
    seen = 0
    for run in runs:
        at_seven = dt.datetime.combine(run, dt.time(7, 0), tzinfo=dt.UTC)
        with time_machine.travel(at_seven, tick=False):
            result = watch(tmp_path, config, api, smtp)
        assert result.exit_code == 0, (run, result.output)
        new = smtp.recorder.messages[seen:]
        seen = len(smtp.recorder.messages)
        if not expected[run]:
            assert new == [], (run, [str(n.message["Subject"]) for n in new])
            continue
        (received,) = new
        assert received.recipients == [OWNER]
        assert headlines(received.message) == expected[run], run
        through = run - dt.timedelta(days=1)
        assert (
            f"Data through {calendar.month_abbr[through.month]} {through.day}, {through.year}"
            " (complete days, UTC)." in text_of(received.message)
        )
    # The alerts of the month that ended went out on the 1st, under that month's period.
    with sqlite3.connect(tmp_path / "state.sqlite3") as db:
        rows = db.execute(
            "SELECT period, message FROM deliveries WHERE status='sent' AND updated_at LIKE ?",
            (f"{first_of_next.isoformat()}%",),
        ).fetchall()
    assert {period for period, _ in rows} == {f"{last_day:%Y-%m}"}
    assert ("alert:spike:" + last_day.isoformat()) in {m for _, m in rows}


def test_a_run_on_the_first_watches_the_month_that_ended_and_today_is_never_a_full_day(
    tmp_path: Path, live_api: tuple[SandboxData, SandboxServer], smtp: SmtpServer
) -> None:
    """The issue's first case: 1,000 credits a day against 30,000. Watched on Dec 2 with
    today's few hours counted as a day, the forecast was 15,500; through Dec 1 it is
    31,000 and due."""
    data, api = live_api
    data.script(20, series_for(dt.date(2026, 10, 1), dt.date(2026, 12, 31), 1000, {}))
    config = config_for(tmp_path, 30000, [100])
    with time_machine.travel(dt.datetime(2026, 12, 2, 7, tzinfo=dt.UTC), tick=False):
        result = watch(tmp_path, config, api, smtp)
    assert result.exit_code == 0, result.output
    (received,) = smtp.recorder.messages
    assert str(received.message["Subject"]) == (
        "Marketing Campaign: forecast to exceed the December budget"
    )
    text = text_of(received.message)
    assert "Data through Dec 1, 2026 (complete days, UTC)." in text
    assert (
        "Forecast for the month: 31,000 credits, from 1,000 credits so far ÷ 1 day × 31 days"
        " in the month." in text
    )
    assert "At this pace the budget is reached on Dec 30, 2026." in text


def test_a_future_date_is_refused_and_today_is_accepted(
    tmp_path: Path, live_api: tuple[SandboxData, SandboxServer], smtp: SmtpServer
) -> None:
    _, api = live_api
    config = config_for(tmp_path, 30000, [100])
    with time_machine.travel(dt.datetime(2026, 12, 2, 7, tzinfo=dt.UTC), tick=False):
        future = watch(tmp_path, config, api, smtp, "--date", "2030-01-01")
        tomorrow = watch(tmp_path, config, api, smtp, "--date", "2026-12-03")
        today = watch(tmp_path, config, api, smtp, "--date", "2026-12-02", "--dry-run")
    assert future.exit_code == 2
    assert future.output.startswith(
        "Error: --date 2030-01-01 is in the future (today is 2026-12-02"
    )
    assert "Traceback" not in future.output
    assert tomorrow.exit_code == 2
    assert today.exit_code == 0, today.output
    assert smtp.recorder.messages == []
    assert not (tmp_path / "state.sqlite3").exists()  # refused before the ledger opened


# --- a threshold added mid-month --------------------------------------------------

# 1,000 a day against 20,000: 100% on Nov 20, 113% (22,600 rounded) through Nov 22.
MIDMONTH = series_for(dt.date(2026, 9, 1), dt.date(2026, 11, 30), 1000, {})


def test_a_threshold_added_below_what_is_used_is_recorded_not_sent(
    tmp_path: Path, live_api: tuple[SandboxData, SandboxServer], smtp: SmtpServer
) -> None:
    data, api = live_api
    data.script(20, MIDMONTH)
    state = tmp_path / "state.sqlite3"

    def watch_on(day: int, thresholds: list[int]) -> Result:
        config = config_for(tmp_path, 20000, thresholds)
        with time_machine.travel(dt.datetime(2026, 11, day, 7, tzinfo=dt.UTC), tick=False):
            return watch(tmp_path, config, api, smtp)

    assert watch_on(21, [100]).exit_code == 0  # data through Nov 20: 100%
    (first,) = smtp.recorder.messages
    assert headlines(first.message) == {"100% of the November budget used"}
    assert (
        "100% of the budget used with 10 days left; at this pace the month ends at 150%."
        in text_of(first.message)
    )
    # 90% added when 113% is used: never "90% used" now; recorded, so never later either.
    second = watch_on(24, [90, 100])
    assert second.exit_code == 0, second.output
    assert len(smtp.recorder.messages) == 1
    assert "already delivered" in second.output or "no alert due" in second.output
    with sqlite3.connect(state) as db:
        status, note = db.execute(
            "SELECT status, error FROM deliveries WHERE message='alert:threshold:90'"
        ).fetchone()
    assert status == "superseded"
    assert "higher threshold was already sent" in note
    assert watch_on(25, [90, 100]).exit_code == 0
    assert len(smtp.recorder.messages) == 1
    # 110% added while 120% is used: the highest passed and never sent, so it is sent, and
    # says how far past it the month is.
    third = watch_on(25, [90, 100, 110])
    assert third.exit_code == 0, third.output
    (_, received) = smtp.recorder.messages
    assert headlines(received.message) == {"110% of the November budget used"}
    assert (
        "120% of the budget used with 6 days left; at this pace the month ends at 150%."
        in text_of(received.message)
    )


def test_lower_thresholds_due_with_the_highest_are_listed_under_it(
    tmp_path: Path, live_api: tuple[SandboxData, SandboxServer], smtp: SmtpServer
) -> None:
    """First run of the month after 113% is reached: 50, 80 and 100 are all new; the
    message leads with 100% (the subject names only it) and the body lists them all."""
    data, api = live_api
    data.script(20, MIDMONTH)
    config = config_for(tmp_path, 20000, [50, 80, 100])
    with time_machine.travel(dt.datetime(2026, 11, 24, 7, tzinfo=dt.UTC), tick=False):
        assert watch(tmp_path, config, api, smtp).exit_code == 0
    (received,) = smtp.recorder.messages
    assert str(received.message["Subject"]) == (
        "Marketing Campaign: 100% of the November budget used"
    )
    assert headlines(received.message) == {
        f"{t}% of the November budget used" for t in (50, 80, 100)
    }
    # The pace is said once, under the highest.
    assert text_of(received.message).count("at this pace the month ends at") == 1


# --- taken by a live run ---------------------------------------------------------


def test_alerts_held_by_a_live_run_are_reported_as_taken_not_as_delivered(
    tmp_path: Path, live_api: tuple[SandboxData, SandboxServer], smtp: SmtpServer
) -> None:
    data, api = live_api
    data.script(20, MIDMONTH)
    config = config_for(tmp_path, 20000, [100])
    state = tmp_path / "state.sqlite3"
    holder = Ledger(state)  # another run, alive: this process holds its lock
    try:
        holder.start_run()
        claim = holder.claim(
            "marketing", "2026-11", [OWNER], force=False, message="alert:threshold:100"
        )
        assert claim.mine == [OWNER]
        with time_machine.travel(dt.datetime(2026, 11, 24, 7, tzinfo=dt.UTC), tick=False):
            result = watch(tmp_path, config, api, smtp)
        assert result.exit_code == 0, result.output
        assert smtp.recorder.messages == []
        assert "taken by another run" in result.output
        assert f"another run (pid {os.getpid()}) is sending it to 1 owner" in result.output
        assert "already delivered" not in result.output
        # That run dies without sending: the next run sends the alert.
    finally:
        holder.close()
    with time_machine.travel(dt.datetime(2026, 11, 25, 7, tzinfo=dt.UTC), tick=False):
        again = watch(tmp_path, config, api, smtp)
    assert again.exit_code == 0, again.output
    (received,) = smtp.recorder.messages
    assert headlines(received.message) == {"100% of the November budget used"}


# --- renamed reports -------------------------------------------------------------


def test_a_renamed_report_sends_its_owners_nothing_they_already_got(
    tmp_path: Path, live_api: tuple[SandboxData, SandboxServer], smtp: SmtpServer
) -> None:
    data, api = live_api
    data.script(20, MIDMONTH)
    env = {"MAGNIFIC_API_KEY": API_KEY, "MAGNIFIC_API_BASE_URL": api.url, **smtp.env()}
    state = tmp_path / "state.sqlite3"

    def config(name: str, renamed: str = "") -> Path:
        return write_config(
            tmp_path / "reports.toml",
            f'[[reports]]\nname = "{name}"\nowners = ["{OWNER}"]\ngroup_ids = [20]\n'
            f"budget_credits = 20000\nalert_thresholds = [50, 100]\n{renamed}",
        )

    def invoke(*args: str) -> Result:
        common = ["--out", str(tmp_path / "out"), "--state", str(state), "-q"]
        return CliRunner().invoke(cli, [*args, *common], env=env)

    with time_machine.travel(dt.datetime(2026, 11, 3, 7, tzinfo=dt.UTC), tick=False):
        old = config("marketing")
        assert invoke("run", "--config", str(old)).exit_code == 0  # October's report
        assert invoke("watch", "--config", str(old)).exit_code == 0  # the forecast
    with time_machine.travel(dt.datetime(2026, 11, 11, 7, tzinfo=dt.UTC), tick=False):
        assert invoke("watch", "--config", str(old)).exit_code == 0  # 50% through Nov 10
    before = len(smtp.recorder.messages)
    subjects = [str(m.message["Subject"]) for m in smtp.recorder.messages]
    assert subjects[0].startswith("marketing — credit usage, October 2026")
    assert subjects[1:] == [
        "marketing: forecast to exceed the November budget",
        "marketing: 50% of the November budget used",
    ]
    renamed = config("growth-marketing", 'renamed_from = "marketing"\n')
    with time_machine.travel(dt.datetime(2026, 11, 12, 7, tzinfo=dt.UTC), tick=False):
        watched = invoke("watch", "--config", str(renamed))
        ran = invoke("run", "--config", str(renamed), "--period", "2026-10")
    assert watched.exit_code == 0, watched.output
    assert ran.exit_code == 0, ran.output
    assert len(smtp.recorder.messages) == before  # neither the alert nor the report again
    assert "already delivered" in ran.output
    history = CliRunner().invoke(cli, ["history", "--state", str(state)])
    assert history.exit_code == 0, history.output
    assert "growth-marketing" in history.output
    assert re.search(r"\bmarketing\b", history.output.replace("growth-marketing", "")) is None
    # What is new is still sent, under the new name.
    with time_machine.travel(dt.datetime(2026, 11, 22, 7, tzinfo=dt.UTC), tick=False):
        assert invoke("watch", "--config", str(renamed)).exit_code == 0
    (*_, last) = smtp.recorder.messages
    assert headlines(last.message) == {"100% of the November budget used"}


# --- alert settings without a budget, and what `check` says is active -------------


@pytest.mark.parametrize(
    ("setting", "key"),
    [("alert_thresholds = [80]", "alert_thresholds"), ("forecast_alert = true", "forecast_alert")],
)
def test_a_reports_own_alert_setting_without_a_budget_is_a_config_error(
    tmp_path: Path, setting: str, key: str
) -> None:
    config = write_config(
        tmp_path / "reports.toml",
        '[[reports]]\nname = "ok"\nowners = ["a@company.com"]\nbudget_credits = 10\n\n'
        f'[[reports]]\nname = "design"\nowners = ["b@company.com"]\n{setting}\n',
    )
    for command in ("watch", "run", "check"):
        done = reporter(command, "--config", str(config))
        assert done.returncode == 2, (command, done.stderr)
        (first, *_) = done.stderr.splitlines()
        assert first.startswith(
            f"Error: {config}: reports[1] ('design'): {key}: needs budget_credits"
        )
        assert "Traceback" not in done.stderr


def test_defaults_alert_settings_simply_do_not_apply_to_a_report_without_a_budget(
    tmp_path: Path, live_api: tuple[SandboxData, SandboxServer], smtp: SmtpServer
) -> None:
    """`check` lists each report's active alerts: the defaults' thresholds and forecast
    for the report with a budget, spikes only for the one without."""
    _, api = live_api
    config = write_config(
        tmp_path / "reports.toml",
        '[[reports]]\nname = "marketing"\nowners = ["a@company.com"]\nbudget_credits = 30000\n\n'
        '[[reports]]\nname = "design"\nowners = ["b@company.com"]\n\n'
        '[[reports]]\nname = "quiet"\nowners = ["c@company.com"]\nspike_factor = 0\n',
        defaults="alert_thresholds = [50, 90]\nforecast_alert = true\nspike_factor = 2.5",
    )
    env = {"MAGNIFIC_API_KEY": API_KEY, "MAGNIFIC_API_BASE_URL": api.url, **smtp.env()}
    done = reporter("check", "--config", str(config), "--out", str(tmp_path / "out"), env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert (
        "ok    alerts marketing: budget thresholds 50%, 90% of 30,000 credits; forecast above"
        " the budget; spikes at 2.5x the typical day" in lines
    )
    assert (
        "ok    alerts design: spikes at 2.5x the typical day (no budget_credits, so no"
        " threshold or forecast alerts)" in lines
    )
    assert "note  alerts quiet: none: watch sends nothing for this report" in lines


@pytest.mark.parametrize(
    ("reports", "problem"),
    [
        (
            '[[reports]]\nname = "a"\nowners = ["a@company.com"]\nrenamed_from = "a"\n',
            "reports[0] ('a'): renamed_from: is the report's own name",
        ),
        (
            '[[reports]]\nname = "a"\nowners = ["a@company.com"]\n\n'
            '[[reports]]\nname = "b"\nowners = ["b@company.com"]\nrenamed_from = "a"\n',
            "reports[1] ('b'): renamed_from: 'a' is still the name of reports[0]",
        ),
        (
            '[[reports]]\nname = "b"\nowners = ["a@company.com"]\nrenamed_from = "a"\n\n'
            '[[reports]]\nname = "c"\nowners = ["b@company.com"]\nrenamed_from = "a"\n',
            "renamed_from: 'a' is named by more than one report",
        ),
    ],
)
def test_a_renamed_from_that_cannot_be_meant_is_a_config_error(
    tmp_path: Path, reports: str, problem: str
) -> None:
    config = write_config(tmp_path / "reports.toml", reports)
    done = reporter("watch", "--config", str(config), "--dry-run")
    assert done.returncode == 2
    assert problem in done.stderr.splitlines()[0]


# --- several processes at once ---------------------------------------------------------


def start_watch(tmp_path: Path, config: Path, env: Mapping[str, str]) -> subprocess.Popen[str]:
    args = ["watch", "--config", str(config), "--date", "2026-11-24", "-q"]
    args += ["--out", str(tmp_path / "out"), "--state", str(tmp_path / "state.sqlite3")]
    return subprocess.Popen(
        [str(Path(sys.executable).parent / "reporter"), *args],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.fixture
def fixed_api() -> Iterator[SandboxServer]:
    data = SandboxData(synthetic_team(users=48, seed=7), today=dt.date(2026, 11, 25))
    data.script(20, MIDMONTH)
    with SandboxServer(data, api_key=API_KEY) as server:
        yield server


def test_three_watches_at_once_send_once_and_the_others_name_the_run_that_holds_it(
    tmp_path: Path, fixed_api: SandboxServer, smtp: SmtpServer
) -> None:
    smtp.recorder.data_delay = 8.0  # the sender holds its alert while the others look
    config = config_for(tmp_path, 20000, [100])
    env = {"MAGNIFIC_API_KEY": API_KEY, "MAGNIFIC_API_BASE_URL": fixed_api.url, **smtp.env()}
    runs = [start_watch(tmp_path, config, env) for _ in range(3)]
    outputs = {run.pid: run.communicate(timeout=120) for run in runs}
    assert [run.returncode for run in runs] == [0, 0, 0], outputs
    (received,) = smtp.recorder.messages
    assert headlines(received.message) == {"100% of the November budget used"}
    (sender,) = [pid for pid, (out, _) in outputs.items() if " delivered " in out]
    for pid, (out, _) in outputs.items():
        if pid != sender:
            assert "taken by another run" in out, out
            assert f"another run (pid {sender})" in out, out
            assert "already delivered" not in out


def in_transaction(state: Path) -> bool:
    """Whether a run has marked a message as being sent (the ledger may not exist yet)."""
    if not state.exists():
        return False
    try:
        with sqlite3.connect(f"file:{state}?mode=ro", uri=True) as db:
            found = db.execute(
                "SELECT 1 FROM deliveries WHERE status IN ('sending', 'committing')"
            ).fetchone()
    except sqlite3.OperationalError:  # still being created
        return False
    return found is not None


def test_a_run_killed_while_holding_an_alert_leaves_it_due_and_the_others_said_taken(
    tmp_path: Path, fixed_api: SandboxServer, smtp: SmtpServer
) -> None:
    smtp.recorder.data_delay = 60.0
    config = config_for(tmp_path, 20000, [100])
    env = {"MAGNIFIC_API_KEY": API_KEY, "MAGNIFIC_API_BASE_URL": fixed_api.url, **smtp.env()}
    holder = start_watch(tmp_path, config, env)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # until the holder is in the SMTP transaction
            if in_transaction(tmp_path / "state.sqlite3"):
                break
            time.sleep(0.1)
        else:
            pytest.fail("the first watch never reached the SMTP transaction")
        other = start_watch(tmp_path, config, env)
        out, err = other.communicate(timeout=120)
        assert other.returncode == 0, err
        assert "taken by another run" in out, out
        assert f"(pid {holder.pid})" in out, out
    finally:
        holder.kill()  # SIGKILL, mid-message
        holder.communicate(timeout=60)
    assert smtp.recorder.messages == []
    smtp.recorder.data_delay = 0.0
    again = start_watch(tmp_path, config, env)
    out, err = again.communicate(timeout=120)
    assert again.returncode == 0, err
    (received,) = smtp.recorder.messages
    assert headlines(received.message) == {"100% of the November budget used"}
