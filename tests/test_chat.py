"""Slack and Teams beside email: a real HTTP server on loopback stands in for both
platforms' webhooks and Slack's upload API, checks every payload's shape, and misbehaves
on demand (429 with Retry-After, 503, a dropped connection, 404)."""

from __future__ import annotations

import datetime as dt
import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from reporter.chat.message import ChatMessage, report_message
from reporter.chat.post import ChatSender, ChatSettings
from reporter.chat.slack import MAX_BLOCKS, MAX_SECTION, slack_payload
from reporter.chat.teams import teams_payload
from reporter.check import chat_findings
from reporter.cli import cli
from reporter.ledger import Ledger
from reporter.magnific import RetryPolicy
from reporter.sandbox import SandboxData, SandboxServer, synthetic_team
from tests.conftest import API_KEY, SmtpServer, raw_usage, total_credits, write_config

PERIOD = "2026-10"
# Webhook URLs are credentials: the path is the secret, as in Slack's and Teams' URLs.
SLACK_SECRET = "T0SECRET/B0SECRET/slackHookSecret9f3a"
TEAMS_SECRET = "workflows/teamsHookSecret4b7c/triggers/manual"
BOT_TOKEN = "xoxb-test-token-1e2d3c4b"

REPORTS = """
[[reports]]
name = "marketing"
title = "Marketing Campaign"
owners = ["manager@company.com"]
project_references = ["a1b2c3d4-1111-4000-8000-000000000001"]
budget_credits = 1000000

[[reports]]
name = "design"
owners = ["design.lead@company.com"]
group_ids = [10]
"""
CHANNELS = (
    'slack_webhook_env = "SLACK_WEBHOOK_REPORTS"\nteams_webhook_env = "TEAMS_WEBHOOK_REPORTS"'
)
FAST = "[api]\ninitial_wait_seconds = 0.01\nmax_wait_seconds = 0.05\n"

SLACK_BLOCK_TYPES = {"header", "section", "context"}
CARD_ELEMENT_TYPES = {"TextBlock", "RichTextBlock", "FactSet", "ColumnSet", "Container", "Image"}


# --- the stand-in platforms ----------------------------------------------------------


def slack_problems(payload: Any) -> list[str]:
    """What Slack would refuse or cut in an incoming-webhook payload."""
    problems = []
    if not isinstance(payload, dict) or not isinstance(payload.get("text"), str):
        return ["no text fallback"]
    blocks = payload.get("blocks")
    if not isinstance(blocks, list) or not blocks:
        return ["no blocks"]
    if len(blocks) > MAX_BLOCKS:
        problems.append(f"{len(blocks)} blocks")
    for block in blocks:
        kind = block.get("type")
        if kind not in SLACK_BLOCK_TYPES:
            problems.append(f"block type {kind}")
        if kind == "header" and (
            block["text"]["type"] != "plain_text" or len(block["text"]["text"]) > 150
        ):
            problems.append("header")
        if kind == "section" and len(block["text"]["text"]) > MAX_SECTION:
            problems.append("section over 3,000 characters")
        if kind == "context" and not all(e["type"] == "mrkdwn" for e in block["elements"]):
            problems.append("context element")
    return problems


def card_problems(payload: Any) -> list[str]:
    """The essentials of a Workflows webhook body with an Adaptive Card 1.4."""
    try:
        (attachment,) = payload["attachments"]
        card = attachment["content"]
    except (KeyError, TypeError, ValueError):
        return ["not a message with one attachment"]
    problems = []
    if payload.get("type") != "message":
        problems.append("type is not message")
    if attachment.get("contentType") != "application/vnd.microsoft.card.adaptive":
        problems.append("contentType")
    if card.get("type") != "AdaptiveCard" or card.get("version") != "1.4":
        problems.append("not an AdaptiveCard 1.4")
    body = card.get("body")
    if not isinstance(body, list) or not body:
        return [*problems, "empty body"]
    for element in body:
        if element.get("type") not in CARD_ELEMENT_TYPES:
            problems.append(f"element {element.get('type')}")
        if element.get("type") == "RichTextBlock" and not all(
            i.get("type") == "TextRun" and isinstance(i.get("text"), str)
            for i in element["inlines"]
        ):
            problems.append("inline")
    for action in card.get("actions", []):
        if action.get("type") != "Action.OpenUrl" or not action.get("url"):
            problems.append("action")
    return problems


@dataclass
class Post:
    path: str
    body: bytes
    headers: dict[str, str]

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass(frozen=True)
class TakenThen:
    """A fault: the platform takes the post, but the answer is this status (a gateway in
    front of it that lost the platform's answer, or the platform failing after posting)."""

    status: int


@dataclass
class Platforms:
    """Slack and Teams on one loopback port: ``/slack/...``, ``/teams/...``, ``/api/...``."""

    posts: list[Post] = field(default_factory=list)  # every request that was taken
    requests: list[str] = field(default_factory=list)  # every request's path, taken or not
    problems: list[str] = field(default_factory=list)  # shapes the platforms would refuse
    faults: dict[str, list[Any]] = field(default_factory=dict)  # path -> answers, in order
    lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""
    hanging: threading.Event = field(default_factory=threading.Event)  # a "hang" is held
    release: threading.Event = field(default_factory=threading.Event)

    def to(self, prefix: str) -> list[Post]:
        return [p for p in self.posts if p.path.startswith(prefix)]

    def asked(self, prefix: str) -> list[str]:
        """Every request to ``prefix``, whatever it was answered."""
        return [path for path in self.requests if path.startswith(prefix)]

    def env(self, *, bot: bool = False) -> dict[str, str]:
        env = {
            "SLACK_WEBHOOK_REPORTS": f"{self.url}/slack/{SLACK_SECRET}",
            "TEAMS_WEBHOOK_REPORTS": f"{self.url}/teams/{TEAMS_SECRET}",
        }
        if bot:
            env |= {"SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_API_URL": f"{self.url}/api"}
        return env


def _handler(platforms: Platforms) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def answer(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:
            path = self.path
            with platforms.lock:
                platforms.requests.append(path)
                faults = platforms.faults.get(path.split("/")[1], [])
                fault = faults.pop(0) if faults else None
            if fault == "drop-early":  # gone before the body is even read
                self.close_connection = True
                self.connection.shutdown(2)
                return
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            if isinstance(fault, int):
                headers = {"retry-after": "1"} if fault == 429 else {}
                self.answer(fault, b"no_service" if fault == 404 else b"busy", headers)
                return
            if isinstance(fault, tuple):  # (status, body, headers): any answer at all
                status, text, headers = fault
                url = f"{platforms.url}{path}"
                self.answer(status, text.format(url=url, path=path).encode(), headers)
                return
            post = Post(path, body, {k.lower(): v for k, v in self.headers.items()})
            with platforms.lock:
                platforms.posts.append(post)
                if path.startswith("/slack/"):
                    platforms.problems += slack_problems(post.json())
                if path.startswith("/teams/"):
                    platforms.problems += card_problems(post.json())
            if isinstance(fault, TakenThen):
                page = f"<html><body>{fault.status}</body></html>".encode()
                self.answer(fault.status, page, {"content-type": "text/html"})
                return
            if fault == "drop":  # taken, but the client never hears so
                self.close_connection = True
                self.connection.shutdown(2)
                return
            if fault == "hang":  # taken; the answer waits until the test releases it
                platforms.hanging.set()
                platforms.release.wait(60)
            if isinstance(fault, float):  # taken; answered after this many seconds
                time.sleep(fault)
            if path.startswith("/slack/"):
                self.answer(200, b"ok")
            elif path.startswith("/teams/"):
                self.answer(202, b"")
            elif path == "/api/files.getUploadURLExternal":
                ok = post.headers.get("authorization") == f"Bearer {BOT_TOKEN}"
                reply = {
                    "ok": ok,
                    "upload_url": f"{platforms.url}/upload/F0001",
                    "file_id": "F0001",
                }
                self.answer(
                    200,
                    json.dumps(reply if ok else {"ok": False, "error": "invalid_auth"}).encode(),
                )
            elif path.startswith("/upload/"):
                self.answer(200, b"OK - " + str(len(body)).encode())
            elif path == "/api/files.completeUploadExternal":
                self.answer(200, json.dumps({"ok": True, "files": [{"id": "F0001"}]}).encode())
            else:
                self.answer(404, b"not here")

    return Handler


@pytest.fixture
def platforms() -> Iterator[Platforms]:
    with serve_platforms() as state:
        yield state


@contextmanager
def serve_platforms() -> Iterator[Platforms]:
    """The stand-in platforms on a loopback port, checking every payload they take."""
    state = Platforms()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        state.release.set()
        server.shutdown()
        server.server_close()
    assert state.problems == []


# --- helpers ---------------------------------------------------------------------------


def run(
    tmp_path: Path,
    api: SandboxServer,
    smtp: SmtpServer,
    platforms: Platforms,
    *extra: str,
    reports: str = REPORTS,
    defaults: str = CHANNELS,
    env: dict[str, str] | None = None,
) -> Result:
    config = write_config(tmp_path / "reports.toml", FAST + reports, defaults=defaults)
    environment = {
        "MAGNIFIC_API_KEY": API_KEY,
        "MAGNIFIC_API_BASE_URL": api.url,
        **smtp.env(),
        **platforms.env(),
        **(env or {}),
    }
    args = ["run", "--config", str(config), "--period", PERIOD, "-q"]
    args += ["--out", str(tmp_path / "out"), "--state", str(tmp_path / "state.sqlite3")]
    return CliRunner().invoke(cli, [*args, *extra], env=environment)


def ledger_rows(tmp_path: Path) -> dict[tuple[str, str, str], str]:
    """(report, message, recipient) -> status."""
    with sqlite3.connect(tmp_path / "state.sqlite3") as db:
        rows = db.execute("SELECT report, message, recipient, status FROM deliveries")
        return {(r, m, rc): s for r, m, rc, s in rows}


def write_config_fast(path: Path, reports: str, defaults: str) -> Path:
    return write_config(path, FAST + reports, defaults=defaults)


# --- monthly run ------------------------------------------------------------------------


def test_a_run_posts_once_per_report_and_channel_and_a_rerun_posts_nothing(
    tmp_path: Path, api: SandboxServer, smtp: SmtpServer, platforms: Platforms
) -> None:
    result = run(tmp_path, api, smtp, platforms)
    assert result.exit_code == 0, result.output
    slack, teams = platforms.to("/slack/"), platforms.to("/teams/")
    assert len(slack) == 2
    assert len(teams) == 2
    assert len(smtp.recorder.messages) == 2  # email still goes out, once per report

    # The figures are the report's: the total computed from the API's answer directly.
    expected = total_credits(
        raw_usage(
            api,
            {
                "start_date": "2026-10-01T00:00:00Z",
                "end_date": "2026-10-31T23:59:59Z",
                "granularity": "month",
                "project_references": ["a1b2c3d4-1111-4000-8000-000000000001"],
            },
        )
    )
    headers = [p.json()["blocks"][0]["text"]["text"] for p in slack]
    assert sorted(headers) == [
        "Marketing Campaign — credit usage, October 2026",
        "design — credit usage, October 2026",
    ]
    marketing = next(p.json() for p in slack if "Marketing Campaign —" in p.body.decode())
    assert f"*Credits used:* {expected:,}" in json.dumps(marketing["blocks"])
    assert "*Budget:*" in json.dumps(marketing["blocks"])  # marketing has a budget
    card = next(p.json() for p in teams if "Marketing Campaign —" in p.body.decode())
    facts = next(e for e in card["attachments"][0]["content"]["body"] if e["type"] == "FactSet")
    assert facts["facts"][0]["value"].startswith(f"{expected:,}")

    rows = ledger_rows(tmp_path)
    for report in ("marketing", "design"):
        assert rows[(report, "report", "slack:SLACK_WEBHOOK_REPORTS")] == "sent"
        assert rows[(report, "report", "teams:TEAMS_WEBHOOK_REPORTS")] == "sent"

    again = run(tmp_path, api, smtp, platforms)
    assert again.exit_code == 0, again.output
    assert len(platforms.posts) == 4
    assert len(smtp.recorder.messages) == 2

    forced = run(tmp_path, api, smtp, platforms, "--force")
    assert forced.exit_code == 0, forced.output
    assert len(platforms.to("/slack/")) == 4
    assert len(platforms.to("/teams/")) == 4


def test_a_channel_added_later_is_posted_without_mailing_the_owners_again(
    tmp_path: Path, api: SandboxServer, smtp: SmtpServer, platforms: Platforms
) -> None:
    first = run(tmp_path, api, smtp, platforms, defaults="")
    assert first.exit_code == 0, first.output
    assert platforms.posts == []
    assert len(smtp.recorder.messages) == 2
    second = run(tmp_path, api, smtp, platforms)
    assert second.exit_code == 0, second.output
    assert len(platforms.to("/slack/")) == 2
    assert len(platforms.to("/teams/")) == 2
    assert len(smtp.recorder.messages) == 2


def test_a_revoked_webhook_fails_only_its_channel_and_never_the_email(
    tmp_path: Path, api: SandboxServer, smtp: SmtpServer, platforms: Platforms
) -> None:
    platforms.faults["teams"] = [404, 404]
    result = run(tmp_path, api, smtp, platforms)
    assert result.exit_code == 1
    assert len(smtp.recorder.messages) == 2
    assert len(platforms.to("/slack/")) == 2
    assert platforms.to("/teams/") == []
    line = "the Teams webhook in TEAMS_WEBHOOK_REPORTS refused the message (HTTP 404: no_service)"
    assert line in result.stdout
    assert "PARTLY FAILED" in result.stdout
    assert TEAMS_SECRET not in result.output
    assert "/teams/" not in result.output
    rows = ledger_rows(tmp_path)
    assert rows[("marketing", "report", "teams:TEAMS_WEBHOOK_REPORTS")] == "failed"
    assert rows[("marketing", "report", "manager@company.com")] == "sent"

    # Once the webhook is fixed, the next run posts to Teams only.
    fixed = run(tmp_path, api, smtp, platforms)
    assert fixed.exit_code == 0, fixed.output
    assert len(platforms.to("/teams/")) == 2
    assert len(platforms.to("/slack/")) == 2
    assert len(smtp.recorder.messages) == 2


def test_a_503_is_retried_and_posted_once(
    tmp_path: Path, api: SandboxServer, smtp: SmtpServer, platforms: Platforms
) -> None:
    platforms.faults["slack"] = [503, 503]  # a 500 may mean taken: test_chat_statuses.py
    result = run(tmp_path, api, smtp, platforms, "--report", "design")
    assert result.exit_code == 0, result.output
    assert len(platforms.to("/slack/")) == 1


def test_a_429_waits_what_retry_after_says_then_posts(platforms: Platforms) -> None:
    platforms.faults["slack"] = [429]
    waits: list[float] = []
    settings = ChatSettings({"slack:HOOK": f"{platforms.url}/slack/x"})
    message = ChatMessage(
        "Title", "October", (("Credits used", "5"),), "What changed", (), None, ""
    )
    with ChatSender(settings, retry=RetryPolicy(initial_wait=0.01), sleep=waits.append) as chat:
        assert chat.post("slack:HOOK", slack_payload(message)) == "sent"
    assert waits == [1.0]  # the server's Retry-After, not the backoff's 0.01
    assert len(platforms.to("/slack/")) == 1


def test_a_dropped_connection_is_unconfirmed_and_the_next_run_posts_again(
    tmp_path: Path, api: SandboxServer, smtp: SmtpServer, platforms: Platforms
) -> None:
    platforms.faults["slack"] = ["drop"]
    result = run(tmp_path, api, smtp, platforms, "--report", "design")
    assert result.exit_code == 1
    assert "UNCONFIRMED" in result.stdout or "PARTLY FAILED" in result.stdout
    assert "the next run posts it again" in result.stdout
    assert len(platforms.to("/slack/")) == 1  # it did arrive; not retried in this run
    assert ledger_rows(tmp_path)[("design", "report", "slack:SLACK_WEBHOOK_REPORTS")] == (
        "unconfirmed"
    )
    again = run(tmp_path, api, smtp, platforms, "--report", "design")
    assert again.exit_code == 0, again.output
    assert len(platforms.to("/slack/")) == 2
    assert len(platforms.to("/teams/")) == 1
    assert len(smtp.recorder.messages) == 1


def test_dry_run_writes_each_payload_beside_the_eml_and_posts_nothing(
    tmp_path: Path, api: SandboxServer, smtp: SmtpServer, platforms: Platforms
) -> None:
    result = run(tmp_path, api, smtp, platforms, "--dry-run", env={"TEAMS_WEBHOOK_REPORTS": ""})
    assert result.exit_code == 0, result.output
    assert platforms.posts == []
    assert smtp.recorder.messages == []
    folder = tmp_path / "out" / PERIOD
    for name in ("marketing", "design"):
        assert (folder / f"{name}.eml").is_file()
        assert slack_problems(json.loads((folder / f"{name}.slack.json").read_text())) == []
        assert card_problems(json.loads((folder / f"{name}.teams.json").read_text())) == []
    assert not (tmp_path / "state.sqlite3").exists()


def test_a_preview_does_not_post_to_chat(
    tmp_path: Path, api: SandboxServer, smtp: SmtpServer, platforms: Platforms
) -> None:
    result = run(tmp_path, api, smtp, platforms, "--to", "me@company.com")
    assert result.exit_code == 0, result.output
    assert platforms.posts == []
    assert len(smtp.recorder.messages) == 2


def test_an_unset_webhook_variable_is_a_config_error_before_any_request(
    tmp_path: Path, api: SandboxServer, smtp: SmtpServer, platforms: Platforms
) -> None:
    reports = REPORTS.replace(
        "group_ids = [10]", 'group_ids = [10]\nteams_webhook_env = "TEAMS_WEBHOOK_DESIGN"'
    )
    result = run(tmp_path, api, smtp, platforms, reports=reports)
    assert result.exit_code == 2
    assert result.stderr.splitlines()[0] == (
        "Error: report 'design': teams_webhook_env = 'TEAMS_WEBHOOK_DESIGN', but the"
        " environment variable TEAMS_WEBHOOK_DESIGN is not set"
    )
    assert result.stderr.splitlines()[1].startswith("Hint: ")
    assert api.requests == []
    assert platforms.posts == []
    assert smtp.recorder.messages == []
    assert not (tmp_path / "out" / PERIOD).exists()


def test_a_webhook_url_pasted_into_the_config_is_refused_without_echoing_it(
    tmp_path: Path, api: SandboxServer, smtp: SmtpServer, platforms: Platforms
) -> None:
    url = f"https://hooks.slack.com/services/{SLACK_SECRET}"
    result = run(tmp_path, api, smtp, platforms, defaults=f'slack_webhook_env = "{url}"')
    assert result.exit_code == 2
    assert "slack_webhook_env: must be the NAME of an environment variable" in result.stderr
    assert SLACK_SECRET not in result.output


def test_the_pdf_is_uploaded_with_the_summary_as_its_comment(
    tmp_path: Path, api: SandboxServer, smtp: SmtpServer, platforms: Platforms
) -> None:
    defaults = f'{CHANNELS}\nslack_channel = "C0123ABCD"'
    result = run(
        tmp_path,
        api,
        smtp,
        platforms,
        "--report",
        "marketing",
        defaults=defaults,
        env=platforms.env(bot=True),
    )
    assert result.exit_code == 0, result.output
    paths = [p.path for p in platforms.posts if not p.path.startswith(("/slack/", "/teams/"))]
    assert paths == [
        "/api/files.getUploadURLExternal",
        "/upload/F0001",
        "/api/files.completeUploadExternal",
    ]
    pdf = (tmp_path / "out" / PERIOD / "marketing.pdf").read_bytes()
    assert platforms.to("/upload/")[0].body == pdf
    complete = platforms.to("/api/files.completeUploadExternal")[0]
    assert complete.headers["authorization"] == f"Bearer {BOT_TOKEN}"
    sent = complete.json()
    assert sent["channel_id"] == "C0123ABCD"
    assert sent["files"] == [{"id": "F0001", "title": "marketing.pdf"}]
    assert sent["initial_comment"].startswith("Marketing Campaign — credit usage, October 2026")
    assert ledger_rows(tmp_path)[("marketing", "report", "slack-upload:C0123ABCD")] == "sent"

    again = run(
        tmp_path,
        api,
        smtp,
        platforms,
        "--report",
        "marketing",
        defaults=defaults,
        env=platforms.env(bot=True),
    )
    assert again.exit_code == 0
    assert len(platforms.to("/api/")) == 2


def test_secrets_never_reach_output_ledger_or_files(
    tmp_path: Path, api: SandboxServer, smtp: SmtpServer, platforms: Platforms
) -> None:
    platforms.faults["teams"] = [404]
    defaults = f'{CHANNELS}\nslack_channel = "C0123ABCD"'
    outputs = []
    for extra in ((), ("--dry-run",), ("--force",)):
        result = run(
            tmp_path,
            api,
            smtp,
            platforms,
            *extra,
            defaults=defaults,
            env=platforms.env(bot=True),
        )
        outputs.append(result.output)
    history = CliRunner().invoke(
        cli, ["history", "--state", str(tmp_path / "state.sqlite3")], env=platforms.env(bot=True)
    )
    assert "slack:SLACK_WEBHOOK_REPORTS" in history.output  # channels beside owners
    assert "teams:TEAMS_WEBHOOK_REPORTS" in history.output
    outputs.append(history.output)
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    blobs = [p.read_bytes() for p in files] + [o.encode() for o in outputs]
    for secret in (SLACK_SECRET, TEAMS_SECRET, BOT_TOKEN, platforms.url + "/slack"):
        assert not [b for b in blobs if secret.encode() in b], secret


# --- watch ---------------------------------------------------------------------------------


@pytest.fixture
def month_api() -> Iterator[SandboxServer]:
    data = SandboxData(synthetic_team(users=48, seed=7), today=dt.date(2026, 12, 1))
    data.script(20, {dt.date(2026, 11, d): 100 for d in range(1, 31)})
    with SandboxServer(data, api_key=API_KEY) as server:
        yield server


def test_a_watch_alert_is_posted_once_to_each_channel(
    tmp_path: Path, month_api: SandboxServer, smtp: SmtpServer, platforms: Platforms
) -> None:
    config = write_config_fast(
        tmp_path / "reports.toml",
        '[[reports]]\nname = "marketing"\ntitle = "Marketing & <Growth>"\n'
        'owners = ["lead@company.com"]\ngroup_ids = [20]\nbudget_credits = 1500\n'
        "alert_thresholds = [80]\nforecast_alert = false\nspike_factor = 0\n",
        CHANNELS,
    )
    env = {"MAGNIFIC_API_KEY": API_KEY, "MAGNIFIC_API_BASE_URL": month_api.url}
    env |= smtp.env() | platforms.env()
    args = ["watch", "--config", str(config), "-q", "--out", str(tmp_path / "out")]
    args += ["--state", str(tmp_path / "state.sqlite3")]
    for day in ("2026-11-12", "2026-11-13"):  # 80% of 1,500 is reached on the 12th
        result = CliRunner().invoke(cli, [*args, "--date", day], env=env)
        assert result.exit_code == 0, result.output
    assert len(smtp.recorder.messages) == 1
    (slack,) = platforms.to("/slack/")
    (teams,) = platforms.to("/teams/")
    header = slack.json()["blocks"][0]["text"]["text"]
    assert header == "Marketing & <Growth>: 80% of the November budget used"  # plain_text
    assert "Marketing &amp; &lt;Growth&gt;" in slack.json()["text"]
    assert "Marketing & <Growth>" in teams.body.decode()
    rows = ledger_rows(tmp_path)
    assert rows[("marketing", "alert:threshold:80", "slack:SLACK_WEBHOOK_REPORTS")] == "sent"


# --- the payloads (pure) -------------------------------------------------------------------


def _message(items: tuple[str, ...]) -> ChatMessage:
    return ChatMessage(
        "Team <ops> & co",
        "Oct 1 – 31, 2026",
        (("Credits used", "1,234"),),
        "What changed",
        items,
        ("The run", "https://github.com/o/r/actions/runs/1"),
        "footer",
    )


def test_names_from_the_api_are_escaped_for_each_platform() -> None:
    message = _message(
        ("<!channel> spent 10 & more via <https://evil|click>", "**bold** {{DATE(x)}}")
    )
    slack = json.dumps(slack_payload(message))
    assert "<!channel>" not in slack
    assert "&lt;!channel&gt; spent 10 &amp; more" in slack
    assert "<https://evil|click>" not in slack
    assert "<https://github.com/o/r/actions/runs/1|The run>" in slack  # our own link stays
    card = teams_payload(message)
    texts = [
        inline["text"]
        for element in card["attachments"][0]["content"]["body"]
        if element["type"] == "RichTextBlock"
        for inline in element["inlines"]
    ]
    assert "• **bold** {\u200b{DATE(x)}\u200b}" in texts  # a text run: never Markdown
    assert card_problems(card) == []


def test_a_long_message_keeps_within_slacks_limits() -> None:
    items = tuple(f"user{i} & <team> " + "x" * 700 for i in range(400))
    payload = slack_payload(_message(items))
    assert slack_problems(payload) == []
    assert len(payload["blocks"]) == MAX_BLOCKS
    assert payload["blocks"][-1]["type"] == "context"  # the link survives the cut
    assert len(json.dumps(teams_payload(_message(items)))) < 28 * 1024


def test_the_summary_is_localised_like_the_email() -> None:
    from reporter.files import default_templates_dir
    from reporter.render import translations
    from reporter.usage import Budget

    class Totals:
        credits, change_pct = 12345.0, 5.0

    context = {
        "title": "Marketing",
        "period_title": "Octubre de 2026",
        "period_name": "octubre de 2026",
        "period_range": "1–31 oct 2026",
        "totals": Totals(),
        "compare_label": "vs septiembre de 2026",
        "empty": False,
        "budget": Budget(20000, 12345, 61.7, None, "ok"),
        "insights": [{"text": "Algo"}],
    }
    gettext = translations(default_templates_dir(), "es").gettext
    message = report_message(context, locale="es", gettext=gettext, link=None)
    assert message.title == "Marketing — uso de créditos, octubre de 2026"
    assert message.facts[0] == ("Créditos usados", "12.345 (+5,0% vs septiembre de 2026)")
    assert message.facts[1][0] == "Presupuesto"


def test_check_reports_each_webhook_variable_and_posts_nothing() -> None:
    channels = {
        "marketing": ["slack:HOOK_A", "teams:HOOK_B", "slack-upload:C1"],
        "design": ["slack:HOOK_A", "teams:HOOK_C"],
    }
    environ = {"HOOK_A": "https://hooks.slack.com/services/x", "HOOK_B": "http://plain/x"}
    lines = [f.line() for f in chat_findings(channels, environ)]
    assert lines == [
        "ok    Slack webhook HOOK_A: set to an https URL; nothing posted",
        "warn  Teams webhook HOOK_B: holds a plain http:// URL: posts travel unencrypted"
        " (report marketing) Hint: set HOOK_B to the https URL the platform gave you",
        "FAIL  Slack upload to C1: SLACK_BOT_TOKEN is not set (report marketing, slack_channel)"
        " Hint: set SLACK_BOT_TOKEN to a bot token with files:write",
        "FAIL  Teams webhook HOOK_C: not set (report design, teams_webhook_env)"
        " Hint: set HOOK_C to the channel's webhook URL",
    ]


@pytest.mark.parametrize(
    ("url", "finding", "warned"),
    [
        ("http://hooks.example.com/x", "warn", True),
        ("http://127.0.0.1:8080/x", "ok", False),
        ("http://localhost/x", "ok", False),
        ("http://[::1]:9/x", "ok", False),
        ("https://hooks.example.com/x", "ok", False),
    ],
)
def test_check_and_run_agree_on_a_plain_http_webhook(url: str, finding: str, warned: bool) -> None:
    """Both warn for http:// to another machine and post to it; neither minds loopback."""
    import logging

    from reporter.chat.post import chat_settings

    channels = {"marketing": ["teams:HOOK"]}
    (found,) = chat_findings(channels, {"HOOK": url})
    assert found.status == finding
    said: list[str] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: said.append(record.getMessage())  # type: ignore[method-assign]
    logger = logging.getLogger("reporter.chat.post")
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.WARNING)  # an earlier `run -q` in this process set ERROR
    try:
        settings = chat_settings(channels, {"HOOK": url})
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    assert settings.webhooks == {"teams:HOOK": url}  # run posts to it either way
    assert any("plain http:// URL" in line for line in said) is warned


# --- the ledger's recipients ---------------------------------------------------------------


def test_recipient_key_keeps_chat_channels_as_written_and_folds_email_case() -> None:
    from reporter.ledger import recipient_key

    assert recipient_key("Ann.Lee@Company.COM") == "ann.lee@company.com"
    assert recipient_key("slack:SLACK_WEBHOOK_MARKETING") == "slack:SLACK_WEBHOOK_MARKETING"
    assert recipient_key("teams:Teams_Hook") == "teams:Teams_Hook"
    assert recipient_key("slack-upload:C0123ABCD") == "slack-upload:C0123ABCD"


def test_history_shows_channels_as_written_and_owners_case_insensitively(
    tmp_path: Path, api: SandboxServer, smtp: SmtpServer, platforms: Platforms
) -> None:
    reports = REPORTS.replace('"manager@company.com"', '"Manager@Company.com"')
    defaults = f'{CHANNELS}\nslack_channel = "C0123ABCD"'
    env = platforms.env(bot=True)
    result = run(tmp_path, api, smtp, platforms, reports=reports, defaults=defaults, env=env)
    assert result.exit_code == 0, result.output
    history = CliRunner().invoke(cli, ["history", "--state", str(tmp_path / "state.sqlite3")])
    recipients = {line.split()[3] for line in history.output.splitlines()[1:]}
    assert recipients == {
        "manager@company.com",
        "design.lead@company.com",
        "slack:SLACK_WEBHOOK_REPORTS",
        "teams:TEAMS_WEBHOOK_REPORTS",
        "slack-upload:C0123ABCD",
    }
    # The owner written in another case is the same owner: not mailed again.
    lower = run(tmp_path, api, smtp, platforms, defaults=defaults, env=env)
    assert lower.exit_code == 0, lower.output
    assert len(smtp.recorder.messages) == 2
    assert len(platforms.posts) == 10  # 2 Slack, 2 Teams, 2 uploads of 3 calls each


def test_a_channel_an_earlier_version_stored_lower_cased_is_not_posted_again(
    tmp_path: Path,
) -> None:
    path = tmp_path / "state.sqlite3"
    with Ledger(path) as ledger:
        ledger.claim("marketing", PERIOD, ["slack:slack_webhook_reports"], force=False)
        ledger.mark(["marketing"], PERIOD, ["slack:slack_webhook_reports"], "sent")
    with Ledger(path) as ledger:
        claim = ledger.claim(
            "marketing", PERIOD, ["slack:SLACK_WEBHOOK_REPORTS", "teams:T"], force=False
        )
        assert claim.done == ["slack:SLACK_WEBHOOK_REPORTS"]
        assert claim.mine == ["teams:T"]
        assert {(r.recipient, r.status) for r in ledger.rows()} == {
            ("slack:SLACK_WEBHOOK_REPORTS", "sent"),
            ("teams:T", "claimed"),
        }


def test_recovery_says_what_is_true_of_a_chat_post_cut_off_mid_request(
    tmp_path: Path,
) -> None:
    path = tmp_path / "state.sqlite3"
    recipients = ["ann@company.com", "slack:hook", "slack-upload:c1"]
    with Ledger(path) as dead, Ledger(path) as next_run:
        dead.claim("marketing", PERIOD, recipients, force=False)
        dead.mark(["marketing"], PERIOD, recipients, "committing")
        assert dead._lock is not None
        dead._lock.release()  # the run is killed: the kernel drops its lock
        dead._lock = None
        assert next_run.recover() == {"failed": 0, "unconfirmed": 3}
        notes = {r.recipient: r.error or "" for r in next_run.rows()}
    assert "same Message-ID" in notes["ann@company.com"]
    for channel in ("slack:hook", "slack-upload:c1"):
        assert "Message-ID" in notes[channel]
        assert "same Message-ID" not in notes[channel]
        assert "may or may not have appeared" in notes[channel]
        assert "the next run posts it again" in notes[channel]


# --- a post that did not get through is posted again as it was written ----------------


def outbox_file(tmp_path: Path, report: str, recipient: str) -> Path:
    """The payload the ledger points at for ``recipient``: its file in the outbox."""
    with sqlite3.connect(tmp_path / "state.sqlite3") as db:
        (artifact,) = db.execute(
            "SELECT artifact FROM deliveries WHERE report=? AND recipient=? AND message='report'",
            (report, recipient),
        ).fetchone()
    path = Path(artifact)
    assert path.is_relative_to(tmp_path / "state.sqlite3.outbox")
    return path


def test_an_unconfirmed_post_is_posted_again_from_its_stored_payload_not_rebuilt(
    tmp_path: Path, api: SandboxServer, smtp: SmtpServer, platforms: Platforms
) -> None:
    platforms.faults["slack"] = ["drop"]
    platforms.faults["teams"] = [404]
    first = run(tmp_path, api, smtp, platforms, "--report", "design")
    assert first.exit_code == 1
    posted = platforms.to("/slack/")[0].json()
    stored = outbox_file(tmp_path, "design", "slack:SLACK_WEBHOOK_REPORTS")
    assert json.loads(stored.read_text()) == posted
    # The copy under --out is for people to read (a dry run writes it too): changing it
    # changes nothing that is posted.
    copy = tmp_path / "out" / PERIOD / "design.slack.json"
    copy.write_text(json.dumps({**posted, "text": "a draft"}))
    teams_file = outbox_file(tmp_path, "design", "teams:TEAMS_WEBHOOK_REPORTS")
    fetched = len(api.requests)

    again = run(tmp_path, api, smtp, platforms, "--report", "design")
    assert again.exit_code == 0, again.output
    assert len(api.requests) == fetched  # nothing to rebuild: the API is not asked
    slack = platforms.to("/slack/")
    assert len(slack) == 2
    assert slack[1].body == slack[0].body
    (teams,) = platforms.to("/teams/")
    assert teams.json() == json.loads(teams_file.read_text())
    assert len(smtp.recorder.messages) == 1
    rows = ledger_rows(tmp_path)
    assert rows[("design", "report", "slack:SLACK_WEBHOOK_REPORTS")] == "sent"
    assert rows[("design", "report", "teams:TEAMS_WEBHOOK_REPORTS")] == "sent"


def test_a_dry_run_in_between_never_changes_what_a_channel_is_posted(
    tmp_path: Path, api: SandboxServer, smtp: SmtpServer, platforms: Platforms
) -> None:
    """Teams refuses the post; a dry run of a draft (same report name, another title and
    filter) writes its payloads; the next real run posts what the first attempt wrote."""
    platforms.faults["teams"] = [404]
    assert run(tmp_path, api, smtp, platforms, "--report", "design").exit_code == 1
    stored = outbox_file(tmp_path, "design", "teams:TEAMS_WEBHOOK_REPORTS")
    written = stored.read_bytes()
    draft = REPORTS.replace('name = "design"', 'name = "design"\ntitle = "Draft"').replace(
        "group_ids = [10]", "group_ids = [30]"
    )
    dry = run(tmp_path, api, smtp, platforms, "--report", "design", "--dry-run", reports=draft)
    assert dry.exit_code == 0, dry.output
    assert "Draft" in (tmp_path / "out" / PERIOD / "design.teams.json").read_text()
    again = run(tmp_path, api, smtp, platforms, "--report", "design")
    assert again.exit_code == 0, again.output
    (teams,) = platforms.to("/teams/")
    assert teams.json() == json.loads(written)
    assert "Draft" not in teams.body.decode()
    assert stored.read_bytes() == written


def test_a_stored_payload_changed_on_disk_is_not_posted(
    tmp_path: Path, api: SandboxServer, smtp: SmtpServer, platforms: Platforms
) -> None:
    """An outbox payload is named by its content: one edited since is rebuilt, not posted."""
    platforms.faults["teams"] = [404]
    assert run(tmp_path, api, smtp, platforms, "--report", "design").exit_code == 1
    stored = outbox_file(tmp_path, "design", "teams:TEAMS_WEBHOOK_REPORTS")
    stored.write_text(json.dumps({"type": "message", "text": "edited by hand"}))
    again = run(tmp_path, api, smtp, platforms, "--report", "design")
    assert again.exit_code == 0, again.output
    (teams,) = platforms.to("/teams/")
    assert "edited by hand" not in teams.body.decode()
    assert teams.json()["attachments"][0]["content"]["type"] == "AdaptiveCard"


def test_a_stored_payload_that_is_gone_is_rebuilt(
    tmp_path: Path, api: SandboxServer, smtp: SmtpServer, platforms: Platforms
) -> None:
    platforms.faults["slack"] = ["drop"]
    assert run(tmp_path, api, smtp, platforms, "--report", "design").exit_code == 1
    stored = outbox_file(tmp_path, "design", "slack:SLACK_WEBHOOK_REPORTS")
    written = stored.read_bytes()
    stored.unlink()
    fetched = len(api.requests)
    again = run(tmp_path, api, smtp, platforms, "--report", "design")
    assert again.exit_code == 0, again.output
    assert len(api.requests) > fetched  # rebuilt from the API
    rebuilt = outbox_file(tmp_path, "design", "slack:SLACK_WEBHOOK_REPORTS")
    assert rebuilt.read_bytes() == written  # same data: the same payload
    assert platforms.to("/slack/")[1].body == platforms.to("/slack/")[0].body
    assert len(smtp.recorder.messages) == 1


def test_a_stored_payload_survives_a_rebuild_for_a_new_owner(
    tmp_path: Path, api: SandboxServer, smtp: SmtpServer, platforms: Platforms
) -> None:
    platforms.faults["slack"] = ["drop"]
    assert run(tmp_path, api, smtp, platforms, "--report", "design").exit_code == 1
    stored = outbox_file(tmp_path, "design", "slack:SLACK_WEBHOOK_REPORTS")
    written = stored.read_bytes()
    # A new owner makes this run rebuild the report, which writes its payloads anew: the
    # stored one is a file of its own, and stays as it was.
    reports = REPORTS.replace('"design.lead@company.com"', '"design.lead@company.com", "new@c.com"')
    again = run(tmp_path, api, smtp, platforms, "--report", "design", reports=reports)
    assert again.exit_code == 0, again.output
    assert [m.recipients for m in smtp.recorder.messages] == [
        ["design.lead@company.com"],
        ["new@c.com"],
    ]
    slack = platforms.to("/slack/")
    assert len(slack) == 2
    assert slack[1].json() == json.loads(written)
    assert len(platforms.to("/teams/")) == 1
    assert outbox_file(tmp_path, "design", "slack:SLACK_WEBHOOK_REPORTS") == stored
    assert stored.read_bytes() == written


# --- corrections (run --recheck) ---------------------------------------------------------

OCTOBER = [dt.date(2026, 10, day) for day in range(1, 32)]
RECHECKED = """
[[reports]]
name = "marketing"
title = "Marketing Campaign"
owners = ["lead@company.com"]
group_ids = [20]
"""


@pytest.fixture
def late_data() -> SandboxData:
    data = SandboxData(synthetic_team(users=48, seed=7), today=dt.date(2026, 11, 10))
    data.script(20, dict.fromkeys(OCTOBER, 100))  # 3,100 credits in October
    return data


@pytest.fixture
def late_api(late_data: SandboxData) -> Iterator[SandboxServer]:
    with SandboxServer(late_data, api_key=API_KEY) as server:
        yield server


def test_a_correction_is_posted_once_per_changed_total_and_channel(
    tmp_path: Path,
    late_data: SandboxData,
    late_api: SandboxServer,
    smtp: SmtpServer,
    platforms: Platforms,
) -> None:
    def recheck(*extra: str) -> Result:
        return run(tmp_path, late_api, smtp, platforms, *extra, reports=RECHECKED)

    assert recheck().exit_code == 0
    assert len(platforms.posts) == 2
    assert recheck("--recheck").exit_code == 0  # nothing changed: nothing posted
    assert len(platforms.posts) == 2

    # 250 late credits (8.1%): Slack takes the correction, Teams' webhook is revoked.
    late_data.script(20, dict.fromkeys(OCTOBER, 100) | {OCTOBER[-1]: 350})
    platforms.faults["teams"] = [404]
    first = recheck("--recheck")
    assert first.exit_code == 1
    assert "the Teams webhook in TEAMS_WEBHOOK_REPORTS refused the message" in first.stdout
    assert len(smtp.recorder.messages) == 2  # the report, then its correction
    (slack,) = platforms.to("/slack/")[1:]
    header = slack.json()["blocks"][0]["text"]["text"]
    assert header == "Corrected: Marketing Campaign — credit usage, October 2026"
    sentence = (
        "Corrected report: the last report sent showed 3,100 credits;"
        " late usage data brings the total to 3,350."
    )
    assert f":warning: *{sentence}*" == slack.json()["blocks"][1]["text"]["text"]
    assert "*Credits used:* 3,350" in json.dumps(slack.json()["blocks"])

    # The next re-check posts to Teams only: not to Slack, not to the owner again.
    second = recheck("--recheck")
    assert second.exit_code == 0, second.output
    assert len(platforms.to("/slack/")) == 2
    assert len(smtp.recorder.messages) == 2
    (teams,) = platforms.to("/teams/")[1:]
    card = teams.json()["attachments"][0]["content"]
    texts = [i["text"] for e in card["body"] if e["type"] == "RichTextBlock" for i in e["inlines"]]
    assert texts[:2] == [
        "Corrected: Marketing Campaign — credit usage, October 2026",
        sentence,
    ]
    assert card["body"][1]["inlines"][0]["color"] == "Attention"
    rows = ledger_rows(tmp_path)
    for channel in ("slack:SLACK_WEBHOOK_REPORTS", "teams:TEAMS_WEBHOOK_REPORTS"):
        assert rows[("marketing", "report", channel)] == "sent"
    with Ledger(tmp_path / "state.sqlite3") as ledger:
        held = ledger.held("marketing", "2026-10")
    assert {held[c].credits for c in held} == {3350.0}  # every owner and channel

    # Every owner and channel has it: the corrected total is the new reference.
    third = recheck("--recheck")
    assert third.exit_code == 0, third.output
    assert "unchanged" in third.stdout
    assert len(platforms.posts) == 4
    assert len(smtp.recorder.messages) == 2


# --- reporter check, as a user types it --------------------------------------------------


def reporter_process(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The installed console script in a process of its own, with only ``env`` set."""
    base = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}
    return subprocess.run(
        [str(Path(sys.executable).parent / "reporter"), *args],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize("teams_set", [True, False])
def test_check_names_each_webhook_variable_and_its_exit_status(
    tmp_path: Path, api: SandboxServer, smtp: SmtpServer, teams_set: bool
) -> None:
    config = write_config_fast(tmp_path / "reports.toml", REPORTS, CHANNELS)
    env = {"MAGNIFIC_API_KEY": API_KEY, "MAGNIFIC_API_BASE_URL": api.url, **smtp.env()}
    env["SLACK_WEBHOOK_REPORTS"] = f"https://hooks.slack.com/services/{SLACK_SECRET}"
    if teams_set:
        env["TEAMS_WEBHOOK_REPORTS"] = f"https://prod.example.logic.azure.com/{TEAMS_SECRET}"
    args = ["check", "--config", str(config), "--out", str(tmp_path / "out")]
    result = reporter_process([*args, "--state", str(tmp_path / "state.sqlite3")], env)
    lines = result.stdout.splitlines()
    assert "ok    Slack webhook SLACK_WEBHOOK_REPORTS: set to an https URL; nothing posted" in lines
    teams = [line for line in lines if "TEAMS_WEBHOOK_REPORTS" in line]
    if teams_set:
        assert teams == [
            "ok    Teams webhook TEAMS_WEBHOOK_REPORTS: set to an https URL; nothing posted"
        ]
        assert result.returncode == 0, result.stdout + result.stderr
        assert lines[-1].startswith("All ")
        assert lines[-1].endswith(" OK; nothing was sent.")
    else:
        assert teams == [
            "FAIL  Teams webhook TEAMS_WEBHOOK_REPORTS: not set (reports marketing, design,"
            " teams_webhook_env) Hint: set TEAMS_WEBHOOK_REPORTS to the channel's webhook URL"
        ]
        assert result.returncode == 1
        assert lines[-1].startswith("1 of ")
        assert lines[-1].endswith(" item(s) need attention; nothing was sent.")
    assert [line for line in lines if line.startswith("FAIL")] == ([] if teams_set else teams)
    assert result.stderr == ""
    assert SLACK_SECRET not in result.stdout
    assert TEAMS_SECRET not in result.stdout
    assert smtp.recorder.messages == []
