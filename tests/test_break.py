"""Servers that misbehave on purpose: raw SMTP and HTTP peers on loopback, scripted
to drop, stall or answer nonsense at one chosen moment, and real ``reporter`` runs
against them. Each test pins a promise an earlier version broke."""

from __future__ import annotations

import datetime as dt
import os
import signal
import socket
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path

import pytest
from click.testing import CliRunner
from pydantic import SecretStr

from reporter.cli import cli
from reporter.environment import ApiSettings, SmtpSettings
from reporter.errors import DeliveryError
from reporter.ledger import Ledger
from reporter.magnific import MagnificClient, RetryPolicy, UsageQuery, parse_retry_after
from reporter.mail import SmtpRetry, SmtpSender, build_message
from reporter.sandbox import SandboxServer
from tests.conftest import API_KEY, free_port, write_config
from tests.test_exactly_once import (
    PERIOD,
    REPORTER,
    assert_one_error_line,
    env_for,
    reporter,
    run_args,
)

ONE_REPORT = '[[reports]]\nname = "marketing"\nowners = ["manager@company.com"]\n'


# --- a scripted SMTP peer ---------------------------------------------------------------


@dataclass
class ScriptedSmtp:
    """A raw SMTP server; ``script[n]`` says how connection ``n`` misbehaves, by stage
    (greet, ehlo, auth, mail, rcpt, data, dot): ``"hang"``, ``"drop"``, a literal reply,
    or a reply then a hang-up (``"421 busy|drop"``)."""

    script: list[dict[str, str]] = field(default_factory=list)
    handed: list[bytes] = field(default_factory=list)  # whole messages, final dot seen
    connections: int = 0

    def __post_init__(self) -> None:
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(8)
        self._listener.settimeout(0.2)
        self.port = self._listener.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def env(self) -> dict[str, str]:
        return {"SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(self.port), "SMTP_SECURITY": "none"}

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self._listener.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            plan = self.script[self.connections] if self.connections < len(self.script) else {}
            self.connections += 1
            threading.Thread(target=self._talk, args=(conn, plan), daemon=True).start()

    def _answer(self, conn: socket.socket, plan: dict[str, str], stage: str, normal: str) -> bool:
        action = plan.get(stage)
        if action == "hang":
            self._stop.wait(30)
            return False
        if action == "drop":
            return False
        reply, _, then = (action or normal).partition("|")
        conn.sendall((reply + "\r\n").encode())
        return then != "drop"

    def _talk(self, conn: socket.socket, plan: dict[str, str]) -> None:
        replies = {b"EHLO": ("ehlo", "250-hello\r\n250 8BITMIME"), b"MAIL": ("mail", "250 ok")}
        replies[b"RCPT"] = ("rcpt", "250 ok")
        replies[b"DATA"] = ("data", "354 go on")
        replies[b"AUTH"] = ("auth", "235 welcome")
        with conn, conn.makefile("rb") as lines:
            try:
                if not self._answer(conn, plan, "greet", "220 scripted"):
                    return
                for line in lines:
                    verb = line[:4].upper()
                    if verb == b"QUIT":
                        conn.sendall(b"221 bye\r\n")
                        return
                    stage, normal = replies.get(verb, ("other", "250 ok"))
                    if not self._answer(conn, plan, stage, normal):
                        return
                    if verb == b"DATA":
                        body = b"".join(iter(lines.readline, b".\r\n"))
                        self.handed.append(body)
                        if not self._answer(conn, plan, "dot", "250 queued"):
                            return
            except OSError:
                return


@pytest.fixture
def scripted() -> Iterator[ScriptedSmtp]:
    server = ScriptedSmtp()
    try:
        yield server
    finally:
        server.close()


def _sender(port: int) -> SmtpSender:
    settings = SmtpSettings("127.0.0.1", port, "none", None, None, timeout=5.0)
    return SmtpSender(settings, retry=SmtpRetry(attempts=2, initial_wait=0.01, max_wait=0.05))


def _message() -> EmailMessage:
    return build_message(
        sender="reports@company.com",
        recipients=["manager@company.com"],
        subject="October",
        text="t",
        html="<p>h</p>",
        msg_id="<reporter.test@company.com>",
        date=dt.datetime(2026, 11, 1, tzinfo=dt.UTC),
    )


# --- server texts on several lines ------------------------------------------------------


@pytest.mark.parametrize(
    ("stage", "reply"),
    [("rcpt", "550-no such user\r\n550 here"), ("dot", "554-rejected\r\n554 spam")],
)
def test_a_mail_servers_reply_on_several_lines_is_reported_on_one(
    scripted: ScriptedSmtp, stage: str, reply: str
) -> None:
    scripted.script = [{stage: reply}]
    with pytest.raises(DeliveryError) as caught:
        _sender(scripted.port).send(_message(), ["manager@company.com"])
    assert "\n" not in caught.value.message
    assert reply.splitlines()[1][4:] in caught.value.message
    assert all("\n" not in why for why in caught.value.refused.values())


# --- a reply after the final dot that is no answer ----------------------------------------


@pytest.mark.parametrize(
    "reply",
    ["queued, thanks", " ", "2.0.0 ok", "354 go on", "x" * 9000],
    ids=["words", "blank", "no-code", "not-a-final-code", "past-smtplib-line-limit"],
)
def test_a_reply_after_the_final_dot_that_is_no_verdict_leaves_the_message_unconfirmed(
    scripted: ScriptedSmtp, reply: str
) -> None:
    """The server had the whole message: only a 2xx, 4xx or 5xx says what became of it.
    Anything else may follow a message it took, so it is unconfirmed, not refused."""
    scripted.script = [{"dot": reply}]
    result = _sender(scripted.port).send(_message(), ["manager@company.com"])
    assert result.unconfirmed
    assert result.accepted == ["manager@company.com"]
    assert scripted.connections == 1  # not sent twice in one run
    assert len(scripted.handed) == 1


@pytest.mark.parametrize("reply", ["451 4.3.0 try again", "554 5.7.1 rejected"])
def test_a_refusal_after_the_final_dot_is_still_a_verdict(
    scripted: ScriptedSmtp, reply: str
) -> None:
    scripted.script = [{"dot": reply}] * 2
    with pytest.raises(DeliveryError) as caught:
        _sender(scripted.port).send(_message(), ["manager@company.com"])
    assert reply.partition(" ")[2] in caught.value.message
    assert caught.value.transient is reply.startswith("4")


def test_a_run_that_met_garbage_after_the_final_dot_says_unconfirmed_and_history_shows_it(
    tmp_path: Path, api: SandboxServer, scripted: ScriptedSmtp
) -> None:
    scripted.script = [{"dot": "queued, thanks"}]
    config = write_config(tmp_path / "reports.toml", ONE_REPORT)
    env = {**env_for(api.url), **scripted.env()}
    run = reporter(run_args(config, tmp_path), env)
    assert run.returncode == 1, run.stderr
    assert "Traceback" not in run.stderr
    (row,) = [line for line in run.stdout.splitlines() if line.startswith("  marketing")]
    assert row.split()[2] == "UNCONFIRMED"
    assert "refused" not in run.stdout + run.stderr
    history = reporter([REPORTER, "history", "--state", str(tmp_path / "state.sqlite3")], env)
    assert history.returncode == 0, history.stderr
    (entry,) = [line for line in history.stdout.splitlines() if "manager@company.com" in line]
    assert entry.split()[4] == "unconfirmed"


# --- a server too busy to log in --------------------------------------------------------

OFFERS_AUTH = "250-hello\r\n250-AUTH PLAIN LOGIN\r\n250 8BITMIME"
BUSY = "421 4.3.2 Too busy, try later|drop"  # RFC 5321: 421, then the server hangs up


def _login_sender(port: int) -> SmtpSender:
    settings = SmtpSettings(
        "127.0.0.1", port, "none", "reports", SecretStr("smtp-pass-0c4e1a7b"), timeout=5.0
    )
    return SmtpSender(settings, retry=SmtpRetry(attempts=2, initial_wait=0.01, max_wait=0.05))


@pytest.mark.parametrize(
    "reply", [BUSY, "421 4.3.2 Too busy, try later", "454 4.7.0 Temporary authentication failure"]
)
def test_a_login_the_server_is_too_busy_for_is_retried_and_not_called_wrong_credentials(
    scripted: ScriptedSmtp, reply: str
) -> None:
    scripted.script = [{"ehlo": OFFERS_AUTH, "auth": reply}] * 2
    with pytest.raises(DeliveryError) as caught:
        _login_sender(scripted.port).send(_message(), ["manager@company.com"])
    assert caught.value.transient
    code_and_text = reply.partition("|")[0]
    assert caught.value.message == (
        f"the mail server 127.0.0.1:{scripted.port} did not take the message: it is busy"
        f" and did not log in ({code_and_text}) (gave up after 2 attempts)"
    )
    assert caught.value.hint == (
        "the mail server is busy: run again later (reports already delivered are not sent again)"
    )
    assert scripted.connections == 2
    assert scripted.handed == []


def test_a_login_refused_once_for_being_busy_is_delivered_on_the_next_attempt(
    scripted: ScriptedSmtp,
) -> None:
    scripted.script = [{"ehlo": OFFERS_AUTH, "auth": BUSY}, {"ehlo": OFFERS_AUTH}]
    result = _login_sender(scripted.port).send(_message(), ["manager@company.com"])
    assert result.accepted == ["manager@company.com"]
    assert not result.unconfirmed
    assert scripted.connections == 2
    assert len(scripted.handed) == 1


def test_a_run_whose_mail_server_stays_too_busy_to_log_in_says_so(
    tmp_path: Path, api: SandboxServer, scripted: ScriptedSmtp
) -> None:
    scripted.script = [{"ehlo": OFFERS_AUTH, "auth": BUSY}] * 4
    config = write_config(tmp_path / "reports.toml", ONE_REPORT)
    env = {**env_for(api.url), **scripted.env()}
    env |= {"SMTP_USERNAME": "reports", "SMTP_PASSWORD": "smtp-pass-0c4e1a7b"}
    run = reporter(run_args(config, tmp_path), env)
    assert run.returncode == 1, run.stderr
    assert "Traceback" not in run.stderr
    assert "SMTP_USERNAME" not in run.stdout + run.stderr
    busy = "it is busy and did not log in (421 4.3.2 Too busy, try later)"
    assert busy in run.stdout + run.stderr
    assert scripted.connections == 4  # the usual retries
    assert _status(tmp_path) == "failed"


@dataclass
class RawHttp:
    """An HTTP peer that answers each request with the next canned bytes (the last repeats)."""

    answers: list[bytes]
    requests: int = 0

    def __post_init__(self) -> None:
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(8)
        self._listener.settimeout(0.2)
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self._listener.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            answer = self.answers[min(self.requests, len(self.answers) - 1)]
            self.requests += 1
            with conn, conn.makefile("rb") as lines:
                length = 0
                for line in lines:
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                    if line == b"\r\n":
                        break
                lines.read(length)
                conn.sendall(answer)


def http_answer(status: str, body: bytes, *headers: bytes) -> bytes:
    head = b"".join(h + b"\r\n" for h in headers)
    return (
        f"HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n".encode()
        + head
        + b"\r\n"
        + body
    )


@pytest.fixture
def raw_http() -> Iterator[RawHttp]:
    server = RawHttp([])
    try:
        yield server
    finally:
        server.close()


@pytest.mark.parametrize(
    "body",
    [b"key rejected\nsee the console\n", b'{"message": "key rejected\\nsee the console"}'],
)
def test_an_api_error_on_several_lines_is_one_error_line(
    tmp_path: Path, raw_http: RawHttp, body: bytes
) -> None:
    raw_http.answers = [http_answer("401 Unauthorized", body)]
    config = write_config(tmp_path / "reports.toml", ONE_REPORT)
    env = {"MAGNIFIC_API_KEY": API_KEY, "MAGNIFIC_API_BASE_URL": raw_http.url}
    env |= {"SMTP_HOST": "127.0.0.1", "SMTP_PORT": "25", "SMTP_SECURITY": "none"}
    args = ["run", "--config", str(config), "--period", PERIOD, "--out", str(tmp_path / "out")]
    result = CliRunner().invoke(cli, [*args, "--state", str(tmp_path / "state.sqlite3")], env=env)
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    (error,) = [line for line in lines if line.startswith("Error: ")]
    assert error.endswith("(401): key rejected see the console")
    assert lines[lines.index(error) + 1].startswith("Hint: ")


# --- an odd Retry-After -----------------------------------------------------------------


@pytest.mark.parametrize("value", ["\u00b2", "\u00b9\u00b2", "\u2075"])
def test_a_retry_after_of_digits_that_are_no_number_is_ignored(value: str) -> None:
    assert parse_retry_after(value) is None


def test_a_retry_after_header_with_a_latin1_digit_is_retried_not_an_internal_error(
    raw_http: RawHttp,
) -> None:
    """b"\\xb2" reads as "²" in latin-1, which str.isdigit() accepts and float() refuses."""
    raw_http.answers = [
        http_answer("429 Too Many Requests", b"slow down", b"Retry-After: \xb2"),
        http_answer("200 OK", b'{"data": []}', b"Content-Type: application/json"),
    ]
    policy = RetryPolicy(attempts=3, initial_wait=0.01, max_wait=0.05, total_timeout=20)
    with MagnificClient(ApiSettings(SecretStr(API_KEY), raw_http.url), retry=policy) as client:
        query = UsageQuery("day", dt.date(2026, 10, 1), dt.date(2026, 10, 31))
        assert client.fetch_raw(query) == b'{"data": []}'
    assert raw_http.requests == 2


# --- a signal while the mail server holds its answer ---------------------------------------


@pytest.mark.parametrize("stage", ["rcpt", "dot"])
def test_sigterm_while_the_mail_server_stalls_stops_within_two_seconds(
    tmp_path: Path, api: SandboxServer, scripted: ScriptedSmtp, stage: str
) -> None:
    """QUIT after an interrupted command would wait the whole SMTP timeout for a reply."""
    scripted.script = [{stage: "hang"}]
    config = write_config(tmp_path / "reports.toml", ONE_REPORT)
    env = {**env_for(api.url), **scripted.env()}
    process = subprocess.Popen(
        run_args(config, tmp_path), env=env, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (scripted.connections and _status(tmp_path)):
        time.sleep(0.05)
    while time.monotonic() < deadline and stage == "dot" and not scripted.handed:
        time.sleep(0.05)
    time.sleep(0.5)  # the run is now waiting for the server's answer
    assert process.poll() is None
    sent_at = time.monotonic()
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    took = time.monotonic() - sent_at
    assert process.returncode == 143, stderr
    assert took < 2.0, f"took {took:.1f} s to stop"
    assert "Traceback" not in stderr
    assert _status(tmp_path) == ("unconfirmed" if stage == "dot" else "failed")


def _status(tmp_path: Path) -> str | None:
    if not (tmp_path / "state.sqlite3").exists():
        return None
    with sqlite3.connect(tmp_path / "state.sqlite3") as db:
        row = db.execute("SELECT status FROM deliveries").fetchone()
    return None if row is None else str(row[0])


# --- a ledger this user may read but not write --------------------------------------------


@contextmanager
def unwritable(*paths: Path) -> Iterator[None]:
    """Files and directories this process cannot change, even as root (chattr +i)."""
    if os.geteuid() == 0:
        subprocess.run(["chattr", "+i", *map(str, paths)], check=True, timeout=10)
    else:
        modes = {path: path.stat().st_mode for path in paths}
        for path in paths:
            path.chmod(0o555 if path.is_dir() else 0o444)
    try:
        yield
    finally:
        if os.geteuid() == 0:
            subprocess.run(["chattr", "-i", *map(str, paths)], check=True, timeout=10)
        else:
            for path, mode in modes.items():
                path.chmod(mode)


@pytest.mark.parametrize("command", ["history", "run"])
def test_a_read_only_ledger_is_not_called_unreadable(tmp_path: Path, command: str) -> None:
    """The old hint said to move the file away, which would send every report again."""
    shared = tmp_path / "shared"
    state = shared / "state.sqlite3"
    with Ledger(state) as ledger:
        ledger.claim("marketing", PERIOD, ["manager@company.com"], force=False)
        ledger.mark(["marketing"], PERIOD, ["manager@company.com"], "sent")
    config = write_config(tmp_path / "reports.toml", ONE_REPORT)
    args = [REPORTER, command, "--state", str(state)]
    if command == "run":
        args += ["--config", str(config), "--out", str(tmp_path / "out"), "--period", PERIOD]
    with unwritable(state, shared):
        result = subprocess.run(
            args,
            env=env_for(f"http://127.0.0.1:{free_port()}"),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode == 2, result.stderr
    assert_one_error_line(result.stderr, "cannot be written")
    assert "move the file away" not in result.stderr
    assert "write access" in result.stderr
