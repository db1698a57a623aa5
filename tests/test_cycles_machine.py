"""Billing cycles over many runs: Hypothesis drives random sequences of runs, re-checks,
reports switched between calendar months and cycles, one mail per owner on and off, and
late usage on a day inside one period and outside the other, against the real stand-in API
and a real SMTP server on loopback. After every step:

- a message carries one period's reports, to their owners only: its attachments are those
  reports' files of that period, and its subject names that period;
- every figure a message shows is its report's total of that period at the time it was
  sent, computed here from the scripted days (never a calendar month's under a cycle's
  name, nor a stale one);
- per recipient, report and period, versions only rise, and none arrives twice;
- after a run, every owner holds each report of its current period.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import sqlite3
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from click.testing import CliRunner
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from reporter.cli import cli
from reporter.sandbox import SandboxData, SandboxServer, synthetic_team
from tests.conftest import API_KEY, Recorder, free_port, write_config
from tests.test_outbox_machine import versions_of

TODAY = dt.date(2026, 11, 20)
DAYS = [
    dt.date(2026, 9, 1) + dt.timedelta(days=n) for n in range((TODAY - dt.date(2026, 9, 1)).days)
]
GROUPS = {"marketing": 20, "design": 30}
DAILY = {"marketing": 1000, "design": 200}
OWNERS = {
    "marketing": ["a@company.com", "b@company.com"],
    "design": ["b@company.com", "c@company.com"],
}
LATE_DAYS = {
    "oct31": dt.date(2026, 10, 31),
    "nov14": dt.date(2026, 11, 14),
}  # in both; in the cycle only
SPANS = {  # --period 2026-10, by billing day
    1: ("2026-10", "October 2026", dt.date(2026, 10, 1), dt.date(2026, 10, 31)),
    15: (
        "2026-10-15_2026-11-14",
        "Oct 15 – Nov 14, 2026",
        dt.date(2026, 10, 15),
        dt.date(2026, 11, 14),
    ),
}
EXAMPLES = int(os.environ.get("REPORTER_MACHINE_EXAMPLES", "4"))


@dataclass
class Servers:
    data: SandboxData
    api: SandboxServer
    recorder: Recorder
    smtp_port: int


@pytest.fixture
def servers() -> Iterator[Servers]:
    data = SandboxData(synthetic_team(users=12, seed=3), today=TODAY)
    recorder = Recorder()
    port = free_port()
    controller = Controller(recorder, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        with SandboxServer(data, api_key=API_KEY) as api:
            yield Servers(data, api, recorder, port)
    finally:
        controller.stop()


def plain_text(message: EmailMessage) -> str:
    body = message.get_body(("plain",))
    assert body is not None
    return str(body.get_content()).replace("\u2009", " ")


def test_cycles_hold_over_random_sequences_of_runs(servers: Servers) -> None:
    class Runs(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.dir = Path(tempfile.mkdtemp(prefix="reporter-cycles-"))
            servers.recorder.messages.clear()
            self.billing = {"marketing": 1, "design": 15}
            self.late = {(name, day): 0 for name in GROUPS for day in LATE_DAYS}
            self.bundle = False
            self.seen = 0
            self.last: dict[tuple[str, str, str], int] = {}  # (recipient, report, key)
            self._script()

        def teardown(self) -> None:
            shutil.rmtree(self.dir, ignore_errors=True)

        def _script(self) -> None:
            for name, group in GROUPS.items():
                daily = dict.fromkeys(DAYS, DAILY[name])
                for label, day in LATE_DAYS.items():
                    daily[day] += self.late[(name, label)]
                servers.data.script(group, daily)

        def _total(self, name: str) -> int:
            """The report's total of its current period, from the scripted days."""
            _, _, first, last = SPANS[self.billing[name]]
            total = DAILY[name] * ((last - first).days + 1)
            return total + sum(
                self.late[(name, label)] for label, day in LATE_DAYS.items() if first <= day <= last
            )

        def _run(self, *extra: str) -> None:
            reports = ""
            for name, group in GROUPS.items():
                reports += (
                    f'\n[[reports]]\nname = "{name}"\ntitle = "{name.title()}"\n'
                    f"owners = {OWNERS[name]!r}\ngroup_ids = [{group}]\n"
                    f"billing_day = {self.billing[name]}\n"
                )
            config = write_config(
                self.dir / "c.toml",
                "[api]\ninitial_wait_seconds = 0.01\n" + reports,
                email_extra="one_mail_per_owner = true\n" if self.bundle else "",
            )
            env = {
                "MAGNIFIC_API_KEY": API_KEY,
                "MAGNIFIC_API_BASE_URL": servers.api.url,
                "SMTP_HOST": "127.0.0.1",
                "SMTP_PORT": str(servers.smtp_port),
                "SMTP_SECURITY": "none",
            }
            args = ["run", "--config", str(config), "--period", "2026-10", "-q"]
            args += ["--out", str(self.dir / "out"), "--state", str(self.state), *extra]
            result = CliRunner().invoke(cli, args, env=env)
            assert result.exit_code == 0, result.output
            self._check_new_messages()

        @property
        def state(self) -> Path:
            return self.dir / "state.sqlite3"

        # --- rules --------------------------------------------------------------------

        @initialize()
        def start(self) -> None:
            self._run()

        @rule()
        def run(self) -> None:
            self._run()
            self._everyone_holds_the_current_period()

        @rule()
        def recheck(self) -> None:
            self._run("--recheck")

        @rule(name=st.sampled_from(list(GROUPS)))
        def switch_calendar(self, name: str) -> None:
            self.billing[name] = 15 if self.billing[name] == 1 else 1

        @rule()
        def switch_bundle(self) -> None:
            self.bundle = not self.bundle

        @rule(
            name=st.sampled_from(list(GROUPS)),
            day=st.sampled_from(list(LATE_DAYS)),
            credits=st.sampled_from([0, 300, 3000]),
        )
        def late_usage(self, name: str, day: str, credits: int) -> None:
            self.late[(name, day)] = credits
            self._script()

        # --- invariants -----------------------------------------------------------------

        def _check_new_messages(self) -> None:
            """Checked right after the step that sent them, while their totals are current."""
            for received in servers.recorder.messages[self.seen :]:
                message = received.message
                carried = versions_of(message)
                assert carried, str(message["Subject"])
                keys = {SPANS[self.billing[name]][0] for name in carried}
                assert len(keys) == 1, f"one message, several periods: {message['Subject']}"
                (key,) = keys
                label = next(span[1] for span in SPANS.values() if span[0] == key)
                assert label in str(message["Subject"]).replace("\u2009", " ")
                files = sorted(str(p.get_filename()) for p in message.iter_attachments())
                assert files == sorted(
                    f"{name}-{key}.{ext}" for name in carried for ext in ("csv", "pdf")
                )
                text = plain_text(message)
                for name in carried:
                    assert f"{self._total(name):,}" in text, (name, key, "a stale figure")
                for recipient in received.recipients:
                    for name, version in carried.items():
                        assert recipient in OWNERS[name], "someone else's report"
                        seen = self.last.get((recipient, name, key), 0)
                        assert version > seen, "a version again, or an older one"
                        self.last[(recipient, name, key)] = version
            self.seen = len(servers.recorder.messages)

        def _everyone_holds_the_current_period(self) -> None:
            with sqlite3.connect(self.state) as db:
                held = set(db.execute("SELECT report, period, recipient FROM received"))
            for name, owners in OWNERS.items():
                key = SPANS[self.billing[name]][0]
                for owner in owners:
                    assert (name, key, owner) in held, f"{owner} lacks {name} {key}"

        @invariant()
        def nothing_was_sent_between_steps(self) -> None:
            assert self.seen == len(servers.recorder.messages)

    Runs.TestCase.settings = settings(
        max_examples=EXAMPLES,
        stateful_step_count=8,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        database=None,
        phases=[Phase.explicit, Phase.generate],
    )
    from hypothesis.stateful import run_state_machine_as_test

    run_state_machine_as_test(Runs, settings=Runs.TestCase.settings)
