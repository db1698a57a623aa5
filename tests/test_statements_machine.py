"""Personal statements' guarantees over whole months: Hypothesis drives random sequences of
runs, forced runs, dry runs, previews, late data (a user appearing, vanishing, or their
usage changing), a mailbox that refuses and a mail server that drops the connection after
the final dot, against the real stand-in API and SMTP server on loopback, and checks after
every step:

- nobody sees another's data: a statement names one mailbox, is sent to it alone, and its
  bytes hold no other user's address and no figure of the team's total;
- every statement shows its user's own total as the data stood when it was written;
- exactly once: a mailbox gets a second message only as the same Message-ID after the
  server dropped it, or a changed statement after one was never confirmed, or after a
  ``--force``; no dry run's or preview's statement ever reaches a user;
- after a run with no fault, every user with credits holds a statement.
"""

from __future__ import annotations

import datetime as dt
import itertools
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from click.testing import CliRunner
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from reporter.cli import cli
from reporter.sandbox import SandboxData, synthetic_team
from tests.conftest import API_KEY, free_port, raw_usage, write_config
from tests.test_hostile_data import DoctoredApi
from tests.test_outbox_machine import DroppingRecorder

PERIOD = "2026-10"
DAYS = {"granularity": "day", "start_date": "2026-10-01", "end_date": "2026-10-31"}
PREVIEW = "preview@company.com"
EXAMPLES = int(os.environ.get("REPORTER_MACHINE_EXAMPLES", "5"))
SHRINK = bool(os.environ.get("REPORTER_MACHINE_SHRINK"))


@dataclass
class World:
    """What the stand-in's answers hide or scale, per user: late and changing data."""

    hidden: set[str] = field(default_factory=set)
    scale: dict[str, int] = field(default_factory=dict)

    def doctor(self, body: dict[str, Any], payload: dict[str, Any]) -> None:
        for bucket in payload["data"]:
            for consumption in bucket["consumptions"]:
                rows = consumption.get("user_usages")
                if not rows:
                    continue
                kept = []
                for row in rows:
                    who = row["user_email"]
                    if who in self.hidden:
                        continue
                    factor = self.scale.get(who, 1)
                    if factor != 1 and bucket["date"][:7] == PERIOD:
                        extra = row["user_credits"] * (factor - 1)
                        row["user_credits"] += extra
                        consumption["user_credits"] += extra  # the total moves with it
                    kept.append(row)
                consumption["user_usages"] = kept


@dataclass
class Servers:
    api: DoctoredApi
    world: World
    recorder: DroppingRecorder
    smtp_port: int
    users: list[str]


@pytest.fixture
def servers() -> Iterator[Servers]:
    data = SandboxData(synthetic_team(users=10, seed=5), today=dt.date(2026, 11, 10))
    world = World()
    recorder = DroppingRecorder()
    port = free_port()
    controller = Controller(recorder, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        with DoctoredApi(data, api_key=API_KEY, doctor=world.doctor) as api:
            users = sorted({str(e) for e in data.team.emails})
            yield Servers(api, world, recorder, port, users)
    finally:
        controller.stop()


def own_totals(servers: Servers) -> dict[str, float]:
    """Each user's credits in the period, summed from the stand-in's raw JSON."""
    totals: dict[str, float] = {}
    for bucket in raw_usage(servers.api, DAYS)["data"]:
        for consumption in bucket["consumptions"]:
            for row in consumption.get("user_usages") or []:
                who = row["user_email"].lower()
                totals[who] = totals.get(who, 0) + row["user_credits"]
    return {who: credits for who, credits in totals.items() if credits > 0}


def team_total(servers: Servers) -> float:
    return float(
        sum(
            c["user_credits"]
            for b in raw_usage(servers.api, DAYS)["data"]
            for c in b["consumptions"]
        )
    )


def body_text(message: EmailMessage) -> str:
    body = message.get_body(("plain",))
    assert body is not None
    return str(body.get_content())


def is_statement(message: EmailMessage) -> bool:
    return "Your Magnific credit usage" in str(message["Subject"])


def test_statement_invariants_hold_over_random_months(servers: Servers) -> None:
    class Month(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.dir = Path(tempfile.mkdtemp(prefix="reporter-statements-"))
            servers.recorder.messages.clear()
            servers.recorder.refuse.clear()
            servers.recorder.dropped.clear()
            servers.recorder.drop_after_data = 0
            servers.world.hidden = {servers.users[-1]}  # late data, until revealed
            servers.world.scale.clear()
            self.seen = 0
            self.forced_at: list[int] = []  # message counts when a --force run started
            self.written: dict[str, float] = {}  # Message-ID -> the total it must show
            self.clean = False

        def teardown(self) -> None:
            shutil.rmtree(self.dir, ignore_errors=True)

        def _config(self) -> Path:
            return write_config(
                self.dir / "reports.toml",
                '\n[[reports]]\nname = "team"\nowners = ["boss@company.com"]\n',
                defaults='statements = true\nstatement_domains = ["company.com"]\n',
            )

        def _run(self, *extra: str) -> None:
            faulty = bool(servers.recorder.refuse or servers.recorder.drop_after_data)
            env = {
                "MAGNIFIC_API_KEY": API_KEY,
                "MAGNIFIC_API_BASE_URL": servers.api.url,
                "SMTP_HOST": "127.0.0.1",
                "SMTP_PORT": str(servers.smtp_port),
                "SMTP_SECURITY": "none",
            }
            args = ["run", "--config", str(self._config()), "--period", PERIOD, "-q"]
            args += ["--out", str(self.dir / "out"), "--state", str(self.dir / "state"), *extra]
            if "--force" in extra:
                self.forced_at.append(len(servers.recorder.messages))
            totals = own_totals(servers)
            before = len(servers.recorder.messages)
            result = CliRunner().invoke(cli, args, env=env)
            assert result.exit_code in (0, 1), result.output
            assert "Traceback" not in result.output
            for received in servers.recorder.messages[before:]:
                if is_statement(received.message) and PREVIEW not in received.recipients:
                    (who,) = received.recipients
                    self.written.setdefault(
                        str(received.message["Message-ID"]), totals[who.lower()]
                    )
            self.clean = not faulty and not extra
            if self.clean:
                assert result.exit_code == 0, result.output
            servers.recorder.refuse.clear()
            servers.recorder.drop_after_data = 0

        @rule()
        def run(self) -> None:
            self._run()

        @rule()
        def force(self) -> None:
            self._run("--force")

        @rule()
        def dry_run(self) -> None:
            self._run("--dry-run")

        @rule()
        def preview(self) -> None:
            self._run("--to", PREVIEW)

        @rule(index=st.integers(0, 9))
        def reveal_or_hide(self, index: int) -> None:
            who = servers.users[index]
            servers.world.hidden ^= {who}

        @rule(index=st.integers(0, 9), factor=st.integers(2, 3))
        def usage_changes(self, index: int, factor: int) -> None:
            servers.world.scale[servers.users[index]] = factor

        @rule(index=st.integers(0, 9))
        def mailbox_refuses(self, index: int) -> None:
            servers.recorder.refuse[servers.users[index]] = "550 mailbox unavailable"
            self._run()

        @rule(count=st.integers(1, 3))
        def connection_drops(self, count: int) -> None:
            servers.recorder.drop_after_data = count
            self._run()

        @invariant()
        def nobody_sees_another_users_data(self) -> None:
            team = f"{team_total(servers):,.0f}"
            for received in servers.recorder.messages[self.seen :]:
                message = received.message
                if not is_statement(message):
                    continue
                addressed = [a.addr_spec.lower() for a in message["To"].addresses]
                assert len(addressed) == 1
                assert received.recipients == [addressed[0]] or PREVIEW in received.recipients
                raw = message.as_bytes().lower()
                for other in servers.users:
                    if other != addressed[0]:
                        pattern = rb"(?<![\w.+-])" + re.escape(other.encode())
                        assert not re.search(pattern, raw), other
                assert b"boss@company.com" not in raw
                assert b"whole team" not in raw  # no team total unless asked for
                assert team not in body_text(message)
                if PREVIEW not in received.recipients:  # a preview never reaches a user
                    assert not str(message["Subject"]).startswith("Preview:")

        @invariant()
        def each_statement_shows_its_users_own_total(self) -> None:
            for received in servers.recorder.messages[self.seen :]:
                message = received.message
                if not is_statement(message) or PREVIEW in received.recipients:
                    continue
                body = message.get_body(("plain",))
                assert body is not None
                total = self.written[str(message["Message-ID"])]
                assert f"Credits used: {total:,.0f}" in body.get_content()

        @invariant()
        def exactly_once(self) -> None:
            by_user: dict[str, list[tuple[int, str]]] = {}
            for index, received in enumerate(servers.recorder.messages):
                if is_statement(received.message) and PREVIEW not in received.recipients:
                    (who,) = received.recipients
                    by_user.setdefault(who, []).append((index, str(received.message["Message-ID"])))
            for who, messages in by_user.items():
                for (was, first), (at, second) in itertools.pairwise(messages):
                    forced = any(was < start <= at for start in self.forced_at)
                    # Again only after the server dropped the last one (the same message,
                    # or a newer one if the figures moved meanwhile), or when forced.
                    if forced:
                        continue
                    assert first in servers.recorder.dropped, (who, messages)
                    same = self.written[second] == self.written[first]
                    assert (first == second) == same, (who, messages)
            self.seen = len(servers.recorder.messages)

        @invariant()
        def a_clean_run_leaves_every_user_with_a_statement(self) -> None:
            if not self.clean:
                return
            holders = {
                rcpt.lower()
                for received in servers.recorder.messages
                if is_statement(received.message)
                for rcpt in received.recipients
                if rcpt != PREVIEW
            }
            assert set(own_totals(servers)) <= holders

    Month.TestCase.settings = settings(
        max_examples=EXAMPLES,
        stateful_step_count=8,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        database=None,
        phases=[Phase.explicit, Phase.generate, *([Phase.shrink] if SHRINK else [])],
    )
    run_state_machine_as_test(Month, settings=Month.TestCase.settings)
