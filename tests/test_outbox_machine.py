"""The outbox's guarantees over whole months, not single defects: Hypothesis drives random
sequences of runs, re-checks, dry runs, previews, owner changes, one mail per owner on and
off, late data (a total flipping back too), a mail server that refuses or drops after the
final dot, and a Teams gateway answering 504 to a post it passed on, against the real
stand-in API, a real SMTP server and the chat stand-ins on loopback, and checks after every
step:

- nobody receives a message for a report they do not own, nor one whose To: is not them;
- a message's bytes never change once written for delivery (the outbox);
- a recipient never receives an older version of a report after a newer one;
- a duplicate is only ever the same Message-ID resent after the server dropped it (a
  repeated post only after a 504), and no dry run's draft is ever sent or posted;
- each recipient's newest message is the version the ledger says they hold, showing
  that version's figures (or their row says it is unconfirmed);
- after a clean run every owner holds the report; after a clean re-check, what each
  owner holds is within the correction threshold of the current total.

``REPORTER_MACHINE_EXAMPLES`` raises the number of sequences for a longer run;
``REPORTER_MACHINE_SHRINK=1`` shrinks a failing one to its shortest (slow).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import shutil
import sqlite3
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP as SMTPServer
from aiosmtpd.smtp import Envelope, Session
from click.testing import CliRunner
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from reporter.cli import cli
from reporter.jobs.recheck import changed_by
from reporter.sandbox import SandboxData, SandboxServer, synthetic_team
from tests.conftest import API_KEY, Recorder, free_port, write_config
from tests.test_chat import Platforms, TakenThen, serve_platforms

PERIOD = "2026-10"
OCTOBER = [dt.date(2026, 10, day) for day in range(1, 32)]
POOL = ["a@company.com", "b@company.com", "j.smith@company.com", "j_smith@company.com"]
CHANNELS = ["teams:TEAMS_WEBHOOK_REPORTS", "slack-upload:C0123ABCD"]
PREVIEW = "preview@company.com"
GROUPS = {"marketing": 20, "design": 30}
DAILY = {"marketing": 1000, "design": 200}
THRESHOLD = 0.5  # correction_threshold_percent's default
EXAMPLES = int(os.environ.get("REPORTER_MACHINE_EXAMPLES", "6"))
SHRINK = bool(os.environ.get("REPORTER_MACHINE_SHRINK"))


@dataclass
class DroppingRecorder(Recorder):
    """Notes the Message-ID of every message it kept but answered by dropping."""

    dropped: set[str] = field(default_factory=set)

    async def handle_DATA(self, server: SMTPServer, session: Session, envelope: Envelope) -> str:
        before = self.drop_after_data
        reply = await super().handle_DATA(server, session, envelope)
        if self.drop_after_data < before:
            self.dropped.add(str(self.messages[-1].message["Message-ID"]))
        return reply


@dataclass
class Servers:
    data: SandboxData
    api: SandboxServer
    recorder: DroppingRecorder
    smtp_port: int
    chat: Platforms


@pytest.fixture
def servers() -> Iterator[Servers]:
    data = SandboxData(synthetic_team(users=12, seed=3), today=dt.date(2026, 11, 10))
    recorder = DroppingRecorder()
    port = free_port()
    controller = Controller(recorder, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        with SandboxServer(data, api_key=API_KEY) as api, serve_platforms() as chat:
            yield Servers(data, api, recorder, port, chat)
    finally:
        controller.stop()


def versions_of(message: EmailMessage) -> dict[str, int]:
    """report -> version, from the X-Reporter-Version header ("design=2, marketing=3")."""
    header = str(message.get("X-Reporter-Version", ""))
    pairs = [p.strip().partition("=") for p in header.split(",") if p.strip()]
    return {name: int(number) for name, _, number in pairs}


def addressed(message: EmailMessage) -> set[str]:
    return {a.addr_spec.lower() for a in message["To"].addresses}


def plain_text(message: EmailMessage) -> str:
    body = message.get_body(("plain",))
    assert body is not None
    return str(body.get_content())


def test_delivery_invariants_hold_over_random_months(servers: Servers) -> None:
    class Month(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.dir = Path(tempfile.mkdtemp(prefix="reporter-machine-"))
            servers.recorder.messages.clear()
            servers.recorder.refuse.clear()
            servers.recorder.dropped.clear()
            servers.recorder.drop_after_data = 0
            servers.chat.posts.clear()
            servers.chat.faults.clear()
            self.gateway_errors = 0  # 504s answered after a post was taken
            self.late = {"marketing": 0, "design": 0}
            self._script()
            self.owners = {"marketing": [POOL[0], POOL[2]], "design": [POOL[1], POOL[3]]}
            self.bundle = False
            self.seen = 0  # messages checked so far
            self.outbox: dict[Path, str] = {}
            self.last_version: dict[tuple[str, str], int] = {}  # (recipient, report)
            self.received_ids: set[tuple[str, str]] = set()
            self.healthy_step = ""  # the command of a step no fault touched, if any

        def teardown(self) -> None:
            shutil.rmtree(self.dir, ignore_errors=True)

        # --- the world --------------------------------------------------------------

        def _script(self) -> None:
            for name, group in GROUPS.items():
                daily = dict.fromkeys(OCTOBER, DAILY[name])
                daily[OCTOBER[-1]] += self.late[name]
                servers.data.script(group, daily)

        def _current(self, name: str) -> float:
            return float(DAILY[name] * len(OCTOBER) + self.late[name])

        def _config(self, *, draft: bool = False) -> Path:
            reports = ""
            for name, group in GROUPS.items():
                title = f"Draft {name}" if draft else name.title()
                other = GROUPS["design" if name == "marketing" else "marketing"]
                reports += (
                    f'\n[[reports]]\nname = "{name}"\ntitle = "{title}"\n'
                    f"owners = {self.owners[name]!r}\ngroup_ids = [{other if draft else group}]\n"
                )
            extra = "one_mail_per_owner = true\n" if self.bundle else ""
            fast = "[api]\ninitial_wait_seconds = 0.01\nmax_wait_seconds = 0.05\n"
            chat = 'teams_webhook_env = "TEAMS_WEBHOOK_REPORTS"\nslack_channel = "C0123ABCD"'
            return write_config(
                self.dir / "reports.toml", fast + reports, email_extra=extra, defaults=chat
            )

        def _reporter(self, *extra: str, draft: bool = False) -> int:
            faulty = bool(
                servers.recorder.refuse
                or servers.recorder.drop_after_data
                or servers.chat.faults.get("teams")
            )
            env = {
                **servers.chat.env(bot=True),
                "MAGNIFIC_API_KEY": API_KEY,
                "MAGNIFIC_API_BASE_URL": servers.api.url,
                "SMTP_HOST": "127.0.0.1",
                "SMTP_PORT": str(servers.smtp_port),
                "SMTP_SECURITY": "none",
            }
            args = ["run", "--config", str(self._config(draft=draft)), "--period", PERIOD, "-q"]
            args += ["--out", str(self.dir / "out"), "--state", str(self.state), *extra]
            result = CliRunner().invoke(cli, args, env=env)
            assert result.exit_code in (0, 1), result.output
            assert "Traceback" not in result.output
            self.healthy_step = (
                ""
                if faulty or extra[:1] in (("--dry-run",), ("--to",))
                else ("recheck" if "--recheck" in extra else "run")
            )
            if not faulty:
                assert result.exit_code == 0, result.output
            return result.exit_code

        @property
        def state(self) -> Path:
            return self.dir / "state.sqlite3"

        # --- rules --------------------------------------------------------------------

        @initialize(first=st.booleans())
        def start(self, first: bool) -> None:
            """Most months start with the report delivered; some start from nothing."""
            if first:
                self._reporter()

        @rule()
        def run(self) -> None:
            self._reporter()

        @rule()
        def recheck(self) -> None:
            self._reporter("--recheck")

        @rule()
        def dry_run(self) -> None:
            self._reporter("--dry-run", draft=True)

        @rule()
        def preview(self) -> None:
            self._reporter("--to", PREVIEW)

        @rule(
            change=st.one_of(
                st.tuples(st.just("owner"), st.sampled_from(list(GROUPS)), st.sampled_from(POOL)),
                st.tuples(st.just("bundle"), st.just(""), st.just("")),
                # 0 after 3000 is a total flipping back.
                st.tuples(
                    st.just("late"),
                    st.sampled_from(list(GROUPS)),
                    st.sampled_from(["0", "3", "30"]),
                ),
            )
        )
        def change_the_world(self, change: tuple[str, str, str]) -> None:
            """An owner added or removed, one mail per owner switched, late usage arriving."""
            self.healthy_step = ""
            kind, report, value = change
            if kind == "owner":
                owners = self.owners[report]
                if value in owners and len(owners) > 1:
                    owners.remove(value)
                elif value not in owners:
                    owners.append(value)
            elif kind == "bundle":
                self.bundle = not self.bundle
            else:
                self.late[report] = int(value) * 100
                self._script()

        @rule(fault=st.sampled_from(["heal", "drop", "504", *POOL]))
        def mail_server(self, fault: str) -> None:
            """The servers heal; the mail server drops the next message after its final dot,
            or refuses one owner's mailbox from now on; or a gateway in front of the Teams
            webhook answers 504 to the next post, which it passed on."""
            self.healthy_step = ""
            if fault == "heal":
                servers.recorder.refuse.clear()
                servers.recorder.drop_after_data = 0
                servers.chat.faults.clear()
            elif fault == "504":
                servers.chat.faults["teams"] = [TakenThen(504)]
                self.gateway_errors += 1
            elif fault == "drop":
                servers.recorder.drop_after_data = 1
            else:
                servers.recorder.refuse[fault] = "550 5.2.1 Mailbox disabled"

        # --- invariants -----------------------------------------------------------------

        @invariant()
        def each_message_went_to_owners_it_names(self) -> None:
            for received in servers.recorder.messages[self.seen :]:
                message = received.message
                envelope = {r.lower() for r in received.recipients}
                assert envelope <= addressed(message), "a To: that does not name them"
                subject = str(message["Subject"])
                assert "Draft" not in message.as_string(), "a dry run's draft was sent"
                if PREVIEW in envelope or subject.startswith("Preview:"):
                    assert envelope == {PREVIEW}
                    assert subject.startswith("Preview:")
                    continue
                carried = versions_of(message)
                assert carried, f"a report message without versions: {subject}"
                for recipient in envelope:
                    for report, version in carried.items():
                        assert recipient in self.owners[report], (recipient, report)
                        key = (recipient, report)
                        assert version >= self.last_version.get(key, 0), "an older version"
                        self.last_version[key] = version
                    ident = (recipient, str(message["Message-ID"]))
                    if ident in self.received_ids:
                        assert ident[1] in servers.recorder.dropped, "a duplicate"
                    self.received_ids.add(ident)
            self.seen = len(servers.recorder.messages)

        @invariant()
        def each_post_is_the_real_report_and_a_copy_only_after_a_504(self) -> None:
            posts = servers.chat.to("/teams/")
            assert all(b"Draft" not in p.body for p in posts), "a dry run's draft was posted"
            assert len(posts) - len({p.body for p in posts}) <= self.gateway_errors
            uploads = servers.chat.to("/api/files.completeUploadExternal")
            assert all(b"Draft" not in p.body for p in uploads)

        @property
        def outbox_root(self) -> Path:
            return self.dir / "state.sqlite3.outbox"

        @invariant()
        def the_outbox_never_changes_what_it_wrote(self) -> None:
            root = self.outbox_root
            for path in root.rglob("*"):
                if not path.is_file() or path.parent.name == "tmp":
                    continue
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
                assert self.outbox.setdefault(path, digest) == digest, f"{path} was rewritten"
            assert all(p.is_file() for p in self.outbox), "an outbox file was removed"

        @invariant()
        def inboxes_agree_with_the_ledger(self) -> None:
            if not self.state.exists():
                return
            with sqlite3.connect(self.state) as db:
                rows = {
                    (report, recipient): (status, version)
                    for report, recipient, status, version, artifact in db.execute(
                        "SELECT report, recipient, status, version, artifact FROM deliveries"
                        " WHERE message='report' AND period=?",
                        (PERIOD,),
                    )
                    # What the ledger sends from is always an outbox file.
                    if artifact is None
                    or Path(artifact).is_relative_to(self.outbox_root)
                    or pytest.fail(f"{artifact} is outside the outbox")
                }
                held = {
                    (report, recipient): (version, credits)
                    for report, recipient, version, credits in db.execute(
                        "SELECT r.report, r.recipient, MAX(r.version), v.credits FROM received r"
                        " JOIN versions v USING (report, period, version)"
                        " WHERE r.period=? GROUP BY r.report, r.recipient",
                        (PERIOD,),
                    )
                }
            dropped = servers.recorder.dropped
            newest: dict[tuple[str, str], EmailMessage] = {}
            for received in servers.recorder.messages:
                for recipient in received.recipients:
                    for report in versions_of(received.message):
                        newest[(report, recipient.lower())] = received.message
            for (report, recipient), (status, version) in rows.items():
                message = newest.get((report, recipient))
                has = held.get((report, recipient))
                if recipient in CHANNELS:
                    assert status != "sent" or (has is not None and has[0] == version)
                    continue
                if status == "sent":
                    assert has is not None
                    assert message is not None
                    assert versions_of(message)[report] == has[0] == version
                    assert f"{has[1]:,.0f}" in plain_text(message), "not the figure it holds"
                elif message is not None and str(message["Message-ID"]) not in dropped:
                    # Failed or unconfirmed since: the newest they have is what they hold,
                    # unless it is a message the server took and never confirmed.
                    assert has is not None
                    assert versions_of(message)[report] == has[0]
            if self.healthy_step == "run":
                for report, owners in self.owners.items():
                    for owner in [*owners, *CHANNELS]:
                        assert (report, owner) in held, f"{owner} has no {report} after a run"
            if self.healthy_step == "recheck":
                for report, owners in self.owners.items():
                    for owner in [*owners, *CHANNELS]:
                        if (report, owner) in held:
                            had = held[(report, owner)][1]
                            assert changed_by(had, self._current(report)) <= THRESHOLD

    Month.TestCase.settings = settings(
        max_examples=EXAMPLES,
        stateful_step_count=10,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        database=None,
        # Shrinking a month of real runs takes many minutes: only when asked for.
        phases=[Phase.explicit, Phase.generate, *([Phase.shrink] if SHRINK else [])],
    )
    run_state_machine_as_test(Month, settings=Month.TestCase.settings)
