"""Personal statements: each user gets their own usage, once a period, and nobody else's.

Real ``reporter`` processes run against the stand-in API (its answers doctored to
hold the awkward addresses a real ``user_email`` may) and a real SMTP server on
loopback. Every expected figure is summed here from the stand-in's raw JSON.
"""

from __future__ import annotations

import dataclasses
import email.policy
import re
import signal
import sqlite3
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from decimal import ROUND_HALF_UP, Decimal
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pikepdf
import pytest

from reporter.sandbox import SandboxData, SandboxServer
from tests.conftest import API_KEY, SmtpServer, pdf_text, raw_usage, write_config
from tests.test_exactly_once import PERIOD, REPORTER, env_for, reporter, run_args
from tests.test_hostile_data import DoctoredApi

PREVIOUS = "2026-09"
DAYS = {"granularity": "day", "start_date": "2026-09-01", "end_date": "2026-10-31"}
GROUP = 10  # the design team's group: its users are in both reports
PRICE = Decimal("0.0045")


@dataclasses.dataclass
class Cast:
    """Users of the stand-in's team picked for a part, and what their rows become."""

    case: str  # spelt in two cases: one mailbox
    bad: str  # "not an address"
    outside: str  # moved to another domain
    opted: str  # in statement_opt_out
    gone: str  # usage only in the previous period
    one_tool: str  # a single tool this period
    late: str  # hidden until `reveal`
    hidden: bool = True

    def dropped(self, who: str, in_period: bool, tool: str) -> bool:
        """Rows the stand-in's answer loses: the gone user's this period, the one-tool
        user's other tools this period, and the late user's until revealed."""
        if who == self.late:
            return self.hidden
        if who == self.gone:
            return in_period
        return who == self.one_tool and in_period and tool != TOOL

    def doctor(self, body: dict[str, Any], payload: dict[str, Any]) -> None:
        for b, bucket in enumerate(payload["data"]):
            in_period = bucket["date"][:7] == PERIOD
            for consumption in bucket["consumptions"]:
                rows = consumption.get("user_usages") or []
                kept = []
                for row in rows:
                    who = row["user_email"]
                    if who == self.case and b % 2:
                        row["user_email"] = who.upper()
                    elif who == self.bad:
                        row["user_email"] = "not an address"
                    elif who == self.outside:
                        row["user_email"] = who.split("@")[0] + "@elsewhere.org"
                    elif self.dropped(who, in_period, consumption["tool"]):
                        continue  # unattributed: the tool total keeps the credits
                    kept.append(row)
                if rows:
                    consumption["user_usages"] = kept


TOOL = "AI Image Models"


def _spenders(payload: dict[str, Any], month: str) -> Counter[str]:
    out: Counter[str] = Counter()
    for bucket in payload["data"]:
        if bucket["date"][:7] != month:
            continue
        for consumption in bucket["consumptions"]:
            for row in consumption.get("user_usages") or []:
                out[row["user_email"]] += row["user_credits"]
    return out


@pytest.fixture(scope="module")
def cast(sandbox_data: SandboxData) -> Cast:
    """Seven users with credits in both months, at least one of them on ``TOOL``."""
    with SandboxServer(sandbox_data, api_key=API_KEY) as plain:
        raw = raw_usage(plain, DAYS)
    now, before = _spenders(raw, PERIOD), _spenders(raw, PREVIOUS)
    on_tool = {
        row["user_email"]
        for bucket in raw["data"]
        if bucket["date"][:7] == PERIOD
        for c in bucket["consumptions"]
        if c["tool"] == TOOL
        for row in c.get("user_usages") or []
    }
    both = sorted(u for u in now if now[u] > 0 and before[u] > 0)
    one_tool = next(u for u in both if u in on_tool)
    rest = [u for u in both if u != one_tool]
    return Cast(rest[0], rest[1], rest[2], rest[3], rest[4], one_tool, rest[5])


@pytest.fixture
def doctored_api(sandbox_data: SandboxData, cast: Cast) -> Iterator[DoctoredApi]:
    cast.hidden = True
    with DoctoredApi(sandbox_data, api_key=API_KEY, doctor=cast.doctor) as server:
        yield server


def config_text(cast: Cast, *, defaults: str = "", first: str = "team") -> str:
    team = '\n[[reports]]\nname = "team"\ntitle = "Whole team"\nowners = ["boss@company.com"]\n'
    design = (
        '\n[[reports]]\nname = "design"\ntitle = "Design team"\nowners = ["lead@company.com"]\n'
        f'group_ids = [{GROUP}]\nlocale = "es"\n'
    )
    return team + design if first == "team" else design + team


def setup(tmp_path: Path, cast: Cast, *, defaults: str = "", first: str = "team") -> Path:
    base = (
        'statements = true\nstatement_domains = ["company.com"]\n'
        f'statement_opt_out = ["{cast.opted}"]\n'
    )
    return write_config(
        tmp_path / "reports.toml",
        config_text(cast, first=first),
        defaults=base + defaults,
    )


# --- what each user should get, from the raw JSON ------------------------------------


@dataclasses.dataclass
class Expected:
    tools: dict[str, float]  # this period, by tool
    uses: int
    previous: float
    reports: set[str]


def expected(api: SandboxServer, cast: Cast) -> dict[str, Expected]:
    """Mailbox -> its figures, for every user who should get a statement."""
    everyone = raw_usage(api, DAYS)
    design = raw_usage(api, {**DAYS, "group_ids": [GROUP]})
    out: dict[str, Expected] = {}
    for name, payload in (("team", everyone), ("design", design)):
        for bucket in payload["data"]:
            month = bucket["date"][:7]
            for consumption in bucket["consumptions"]:
                for row in consumption.get("user_usages") or []:
                    who = row["user_email"].lower()
                    if not who.endswith("@company.com") or who == cast.opted:
                        continue
                    mine = out.setdefault(who, Expected({}, 0, 0.0, set()))
                    if month == PERIOD:
                        tool = consumption["tool"]
                        if name == "team":  # the team report holds every one of their rows
                            mine.tools[tool] = mine.tools.get(tool, 0) + row["user_credits"]
                            mine.uses += row["user_uses"]
                        if row["user_credits"] > 0:
                            mine.reports.add(name)
                    elif month == PREVIOUS and name == "team":
                        mine.previous += row["user_credits"]
    return {who: e for who, e in out.items() if sum(e.tools.values()) > 0}


def by_mailbox(smtp: SmtpServer) -> dict[str, list[EmailMessage]]:
    """The statements the server received, by recipient (lower case)."""
    out: dict[str, list[EmailMessage]] = {}
    for received in smtp.recorder.messages:
        if not _is_statement(received.message):
            continue
        for rcpt in received.recipients:
            out.setdefault(rcpt.lower(), []).append(received.message)
    return out


def _is_statement(message: EmailMessage) -> bool:
    subject = str(message["Subject"])
    return subject.startswith(("Your Magnific credit usage", "Tu uso de créditos de Magnific"))


def text_of(message: EmailMessage, kind: str) -> str:
    part = message.get_body((kind,))
    assert part is not None
    content = part.get_content()
    assert isinstance(content, str)
    return content


def statement_run(tmp_path: Path, config: Path, api: SandboxServer, smtp: SmtpServer, *extra: str):  # type: ignore[no-untyped-def]
    return reporter(run_args(config, tmp_path, *extra), env_for(api.url, smtp))


# --- the figures ---------------------------------------------------------------------


def test_each_user_gets_one_statement_with_their_own_figures_and_nobody_elses(
    tmp_path: Path, doctored_api: DoctoredApi, smtp: SmtpServer, cast: Cast
) -> None:
    config = setup(tmp_path, cast)
    result = statement_run(tmp_path, config, doctored_api, smtp)
    assert result.returncode == 0, result.stdout + result.stderr
    want = expected(doctored_api, cast)
    got = by_mailbox(smtp)
    assert set(got) == set(want)
    # Left out, each for its reason; the case-split user is one mailbox.
    assert cast.gone not in got
    assert cast.opted not in got
    assert cast.outside not in got
    assert cast.case in got
    assert len(got[cast.case]) == 1
    everyone = {who.lower() for who in _spenders(raw_usage(doctored_api, DAYS), PERIOD)}
    everyone |= {who.lower() for who in _spenders(raw_usage(doctored_api, DAYS), PREVIOUS)}
    everyone |= {"boss@company.com", "lead@company.com", cast.opted, cast.gone}
    for who, messages in got.items():
        assert len(messages) == 1, who
        message = messages[0]
        assert [a.lower() for a in _to(message)] == [who]
        mine = want[who]
        text, html = text_of(message, "plain"), text_of(message, "html")
        total = sum(mine.tools.values())
        assert f"Credits used: {total:,.0f}" in text
        assert f"{total:,.0f}" in html
        assert f"Uses: {mine.uses:,}" in text
        for tool, credits in mine.tools.items():
            assert f"- {tool}: {credits:,.0f} credits" in text, (who, tool)
            assert tool in html
        if mine.previous:
            change = (total - mine.previous) / mine.previous * 100
            sign = "+" if change > 0 else "\u2212"
            assert f"({sign}{abs(change):.1f}% vs September 2026)" in text
        # Nothing of anyone else: no other address anywhere in the bytes sent.
        raw = message.as_bytes().lower()
        for other in everyone - {who}:
            assert not re.search(rb"(?<![\w.+-])" + re.escape(other.encode()), raw), (who, other)
        assert b"whole team (" not in raw  # no team total unless asked for
        titles = [t for t in ("Whole team", "Design team") if t in text]
        assert len(titles) == len(mine.reports) or len(mine.reports) == 1
    one = want[cast.one_tool]
    assert list(one.tools) == [TOOL]
    summary = result.stdout + result.stderr
    assert f"statements: {sum('team' in w.reports for w in want.values())} sent" in summary
    assert "3 skipped" in summary  # not an address, another domain, opted out


def _to(message: EmailMessage) -> list[str]:
    return [a.addr_spec for a in message["To"].addresses]


def test_a_user_in_two_reports_gets_one_message_with_both_parts_in_the_first_reports_language(
    tmp_path: Path, doctored_api: DoctoredApi, smtp: SmtpServer, cast: Cast
) -> None:
    config = setup(tmp_path, cast, first="design")
    result = statement_run(tmp_path, config, doctored_api, smtp)
    assert result.returncode == 0, result.stderr
    want = expected(doctored_api, cast)
    got = by_mailbox(smtp)
    both = [who for who, e in want.items() if e.reports == {"team", "design"}]
    only_team = [who for who, e in want.items() if e.reports == {"team"}]
    assert both
    assert only_team
    for who in both:
        (message,) = got[who]
        assert str(message["Subject"]) == "Tu uso de créditos de Magnific, octubre de 2026"
        text = text_of(message, "plain")
        assert "Design team" in text
        assert "Whole team" in text
    for who in only_team:
        (message,) = got[who]
        assert str(message["Subject"]) == "Your Magnific credit usage, October 2026"
        assert "Design team" not in text_of(message, "plain")


def test_amounts_and_the_team_total_when_asked_for(
    tmp_path: Path, doctored_api: DoctoredApi, smtp: SmtpServer, cast: Cast
) -> None:
    config = setup(
        tmp_path,
        cast,
        defaults=f'currency = "EUR"\ncredit_price = {PRICE}\nstatement_team_total = true\n',
    )
    result = statement_run(tmp_path, config, doctored_api, smtp)
    assert result.returncode == 0, result.stderr
    want = expected(doctored_api, cast)
    team_total = sum(
        c["user_credits"]
        for b in raw_usage(doctored_api, DAYS)["data"]
        if b["date"][:7] == PERIOD
        for c in b["consumptions"]
    )
    for who, (message,) in by_mailbox(smtp).items():
        text = text_of(message, "plain")
        total = Decimal(str(sum(want[who].tools.values())))
        amount = (total * PRICE).quantize(Decimal("0.01"), ROUND_HALF_UP)
        assert f"Amount: €{amount:,}" in text, who
        assert f"The whole team (Whole team) used {team_total:,.0f} credits" in text


# --- delivery: once per user and period -----------------------------------------------


def statement_rows(tmp_path: Path) -> list[tuple[str, str, str]]:
    if not (tmp_path / "state.sqlite3").exists():
        return []
    with sqlite3.connect(tmp_path / "state.sqlite3") as db:
        return sorted(
            db.execute("SELECT report, recipient, status FROM deliveries WHERE message='statement'")
        )


def test_a_rerun_sends_only_what_is_missing_and_a_late_user_gets_theirs(
    tmp_path: Path, doctored_api: DoctoredApi, smtp: SmtpServer, cast: Cast
) -> None:
    config = setup(tmp_path, cast)
    first = statement_run(tmp_path, config, doctored_api, smtp)
    assert first.returncode == 0, first.stderr
    sent_first = len(smtp.recorder.messages)
    again = statement_run(tmp_path, config, doctored_api, smtp)
    assert again.returncode == 0, again.stderr
    assert len(smtp.recorder.messages) == sent_first  # nothing new: reports nor statements
    assert "already sent" in again.stdout + again.stderr
    cast.hidden = False  # late data: the user appears
    late = statement_run(tmp_path, config, doctored_api, smtp)
    assert late.returncode == 0, late.stderr
    new = smtp.recorder.messages[sent_first:]
    assert [r.recipients for r in new] == [[cast.late]]
    assert _is_statement(new[0].message)
    statuses = Counter(status for _, _, status in statement_rows(tmp_path))
    assert statuses["skipped"] >= 3
    assert set(statuses) <= {"sent", "skipped"}


def test_a_dropped_connection_mid_batch_resends_that_statement_with_its_message_id(
    tmp_path: Path, doctored_api: DoctoredApi, smtp: SmtpServer, cast: Cast
) -> None:
    # The owners have their reports from a run before statements were turned on: this
    # run only fetches, and the connection drops after its first statement.
    plain = write_config(tmp_path / "plain.toml", config_text(cast))
    assert statement_run(tmp_path, plain, doctored_api, smtp).returncode == 0
    reports = len(smtp.recorder.messages)
    config = setup(tmp_path, cast)
    smtp.recorder.drop_after_data = 1  # the message arrives; its reply is lost
    first = statement_run(tmp_path, config, doctored_api, smtp)
    assert first.returncode == 1, first.stdout
    assert "1 UNCONFIRMED" in first.stdout
    assert len(smtp.recorder.messages) > reports + 1  # the batch went on after the drop
    again = statement_run(tmp_path, config, doctored_api, smtp)
    assert again.returncode == 0, again.stdout + again.stderr
    got = by_mailbox(smtp)
    assert set(got) == set(expected(doctored_api, cast))
    for who, messages in got.items():
        ids = {str(m["Message-ID"]) for m in messages}
        assert len(ids) == 1, who  # a copy, if any, is the very same message
    assert sum(len(m) for m in got.values()) == len(got) + 1  # the unconfirmed one, twice


def test_a_user_gone_from_the_data_is_not_sent_their_failed_statement(
    tmp_path: Path, doctored_api: DoctoredApi, smtp: SmtpServer, cast: Cast
) -> None:
    config = setup(tmp_path, cast)
    cast.hidden = False
    smtp.recorder.refuse[cast.late] = "550 mailbox unavailable"
    first = statement_run(tmp_path, config, doctored_api, smtp)
    assert first.returncode == 1
    assert ("team", cast.late, "failed") in statement_rows(tmp_path)
    del smtp.recorder.refuse[cast.late]
    cast.hidden = True  # a later breakdown no longer has them
    count = len(smtp.recorder.messages)
    again = statement_run(tmp_path, config, doctored_api, smtp)
    assert again.returncode == 0, again.stdout
    assert all(cast.late not in r.recipients for r in smtp.recorder.messages[count:])


def test_force_resends_every_statement_and_dry_run_and_to_send_none_to_users(
    tmp_path: Path, doctored_api: DoctoredApi, smtp: SmtpServer, cast: Cast
) -> None:
    config = setup(tmp_path, cast)
    want = expected(doctored_api, cast)
    dry = statement_run(tmp_path, config, doctored_api, smtp, "--dry-run")
    assert dry.returncode == 0
    assert not smtp.recorder.messages
    written = sorted((tmp_path / "out" / PERIOD / "statements").glob("*.eml"))
    assert len(written) == len(want)
    preview = statement_run(tmp_path, config, doctored_api, smtp, "--to", "me@company.com")
    assert preview.returncode == 0, preview.stdout
    statements = [r for r in smtp.recorder.messages if _is_statement_any(r.message)]
    assert len(statements) == 3
    assert all(r.recipients == ["me@company.com"] for r in smtp.recorder.messages)
    assert all(str(r.message["Subject"]).startswith("Preview: ") for r in statements)
    assert not statement_rows(tmp_path)  # neither wrote to the ledger
    statement_run(tmp_path, config, doctored_api, smtp)
    count = len(smtp.recorder.messages)
    forced = statement_run(tmp_path, config, doctored_api, smtp, "--force")
    assert forced.returncode == 0
    again = {rcpt for r in smtp.recorder.messages[count:] for rcpt in r.recipients}
    assert set(want) <= {a.lower() for a in again}


def _is_statement_any(message: EmailMessage) -> bool:
    subject = str(message["Subject"]).removeprefix("Preview: ")
    return subject.startswith(("Your Magnific credit usage", "Tu uso de créditos de Magnific"))


def test_the_managers_report_and_email_say_how_many_people_get_a_statement(
    tmp_path: Path, doctored_api: DoctoredApi, smtp: SmtpServer, cast: Cast
) -> None:
    config = setup(tmp_path, cast)
    result = statement_run(tmp_path, config, doctored_api, smtp)
    assert result.returncode == 0
    want = expected(doctored_api, cast)
    count = len(want)
    (boss,) = [r.message for r in smtp.recorder.messages if r.recipients == ["boss@company.com"]]
    line = f"{count} people in this report get a personal statement of their own usage"
    assert line in text_of(boss, "plain")
    assert line in pdf_text(tmp_path / "out" / PERIOD / "team.pdf")


def test_a_statement_pdf_is_one_page_of_that_users_figures(
    tmp_path: Path, doctored_api: DoctoredApi, smtp: SmtpServer, cast: Cast
) -> None:
    config = setup(tmp_path, cast, defaults="statement_pdf = true\n")
    result = statement_run(tmp_path, config, doctored_api, smtp)
    assert result.returncode == 0, result.stderr
    want = expected(doctored_api, cast)
    (message,) = by_mailbox(smtp)[cast.one_tool]
    (pdf,) = [p for p in message.iter_attachments() if p.get_content_type() == "application/pdf"]
    path = tmp_path / "statement.pdf"
    path.write_bytes(pdf.get_content())
    text = pdf_text(path)
    assert f"{sum(want[cast.one_tool].tools.values()):,.0f}" in text
    assert TOOL in text
    with pikepdf.open(path) as document:
        assert len(document.pages) == 1


def test_statements_without_domains_is_a_config_error_naming_the_report(
    tmp_path: Path, doctored_api: DoctoredApi, smtp: SmtpServer, cast: Cast
) -> None:
    config = write_config(
        tmp_path / "reports.toml", config_text(cast), defaults="statements = true\n"
    )
    result = statement_run(tmp_path, config, doctored_api, smtp)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "statement_domains" in result.stderr
    assert "'team'" in result.stderr
    assert not doctored_api.requests
    assert not smtp.recorder.messages


def test_the_history_counts_statements_by_status(
    tmp_path: Path, doctored_api: DoctoredApi, smtp: SmtpServer, cast: Cast
) -> None:
    config = setup(tmp_path, cast)
    statement_run(tmp_path, config, doctored_api, smtp)
    result = reporter(
        [REPORTER, "history", "--state", str(tmp_path / "state.sqlite3")],
        env_for(doctored_api.url, smtp),
    )
    want = expected(doctored_api, cast)
    in_team = sum("team" in e.reports for e in want.values())
    assert f"statements: {in_team} sent, 3 skipped" in result.stdout
    assert cast.case not in result.stdout  # one line a report, not one a user


def test_statements_cost_no_api_request(
    tmp_path: Path, doctored_api: DoctoredApi, smtp: SmtpServer, cast: Cast
) -> None:
    with_them = setup(tmp_path, cast)
    statement_run(tmp_path, with_them, doctored_api, smtp, "--dry-run")
    count = len(doctored_api.requests)
    without = write_config(tmp_path / "plain.toml", config_text(cast))
    statement_run(tmp_path, without, doctored_api, smtp, "--dry-run")
    assert len(doctored_api.requests) - count == count > 0


def read(path: Path) -> EmailMessage:
    message = email.message_from_bytes(path.read_bytes(), policy=email.policy.SMTP)
    assert isinstance(message, EmailMessage)
    return message


# --- two runs at once, and a run killed mid-batch ---------------------------------------


def statement_ids(smtp: SmtpServer) -> dict[str, set[str]]:
    """Mailbox -> the Message-IDs of the statements it received."""
    return {
        who: {str(m["Message-ID"]) for m in messages} for who, messages in by_mailbox(smtp).items()
    }


def test_two_runs_started_together_send_each_statement_once(
    tmp_path: Path, doctored_api: DoctoredApi, smtp: SmtpServer, cast: Cast
) -> None:
    config = setup(tmp_path, cast)
    smtp.recorder.data_delay = 0.02  # both runs are in their batch at the same time
    args = run_args(config, tmp_path)
    runs = [
        subprocess.Popen(args, env=env_for(doctored_api.url, smtp), stdout=subprocess.PIPE)
        for _ in range(2)
    ]
    for run in runs:
        assert run.wait(timeout=180) in (0, 1)
        run.communicate()
    want = expected(doctored_api, cast)
    got = by_mailbox(smtp)
    assert set(got) == set(want)
    assert all(len(messages) == 1 for messages in got.values()), got


def test_a_run_killed_mid_batch_leaves_every_statement_sent_once_after_the_next(
    tmp_path: Path, doctored_api: DoctoredApi, smtp: SmtpServer, cast: Cast
) -> None:
    config = setup(tmp_path, cast)
    smtp.recorder.data_delay = 0.05
    run = subprocess.Popen(
        run_args(config, tmp_path),
        env=env_for(doctored_api.url, smtp),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while len(by_mailbox(smtp)) < 5 and time.monotonic() < deadline:
        time.sleep(0.02)
    run.send_signal(signal.SIGKILL)  # no handler, no cleanup: mid-message, maybe
    run.wait(timeout=30)
    assert 5 <= len(by_mailbox(smtp)) < len(expected(doctored_api, cast))
    smtp.recorder.data_delay = 0
    again = statement_run(tmp_path, config, doctored_api, smtp)
    assert again.returncode == 0, again.stdout
    ids = statement_ids(smtp)
    assert set(ids) == set(expected(doctored_api, cast))
    # A statement the kill caught after its last byte may arrive twice: as the same message.
    assert all(len(found) == 1 for found in ids.values()), ids
