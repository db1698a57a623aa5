"""Shared fixtures: a real stand-in API and a real SMTP server, both on loopback."""

from __future__ import annotations

import asyncio
import datetime as dt
import email
import email.policy
import http.server
import json
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP as SMTPServer
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session

from reporter.sandbox import SandboxData, SandboxServer, synthetic_team

TODAY = dt.date(2026, 11, 25)
API_KEY = "sk-test-5f1c9b0e7d2a4c8e"
SMTP_PASSWORD = "smtp-pass-0c4e1a7b"
DATA = Path(__file__).parent / "data"

_ENV_PREFIXES = ("MAGNIFIC_", "SMTP_", "GITHUB_")


# Tests send Ctrl-C (SIGINT) to the processes they start. A suite started in the background
# by a non-interactive shell has SIGINT ignored, and children inherit an ignored signal (a
# handled one is reset on exec), so a test's Ctrl-C would never reach them: handle it here.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test sees the developer's or CI's real keys or mail server."""
    import os

    for name in list(os.environ):
        if name.startswith(_ENV_PREFIXES):
            monkeypatch.delenv(name)


@pytest.fixture(scope="session")
def sandbox_data() -> SandboxData:
    return SandboxData(synthetic_team(users=48, seed=7), today=TODAY)


@pytest.fixture
def api(sandbox_data: SandboxData) -> Iterator[SandboxServer]:
    """The stand-in API on a free loopback port, accepting only ``API_KEY``."""
    with SandboxServer(sandbox_data, api_key=API_KEY) as server:
        yield server


def raw_usage(server: SandboxServer, body: dict[str, Any]) -> dict[str, Any]:
    """The API's answer fetched directly, for computing expected figures independently."""
    response = httpx.post(
        f"{server.url}/v1/analytics/team-credit-usage",
        json=body,
        headers={"x-magnific-api-key": API_KEY},
    )
    response.raise_for_status()
    result: dict[str, Any] = response.json()
    return result


def _pdftotext(path: Path, *options: str) -> str:
    result = subprocess.run(
        ["pdftotext", *options, "-enc", "UTF-8", str(path), "-"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return result.stdout


def pdf_text(path: Path) -> str:
    """All text of a PDF in reading order, white space folded: what a reader would copy."""
    return " ".join(_pdftotext(path).split())


def pdf_rows(path: Path) -> list[str]:
    """The PDF's visual rows, runs of spaces folded: ``"AI Image Models 2,149 101,960 ..."``.

    Table cells come out of a PDF one by one; poppler's layout mode keeps each table row
    on one line, which lets a test say "this figure is on this tool's row".
    """
    lines = _pdftotext(path, "-layout").splitlines()
    return [" ".join(line.split()).removeprefix("● ") for line in lines if line.strip()]


def total_credits(payload: dict[str, Any]) -> int:
    """Sum of the tool-level totals: the figure a report must show, computed with no pandas."""
    return sum(c["user_credits"] for b in payload["data"] for c in b["consumptions"])


# --- SMTP --------------------------------------------------------------------


@dataclass
class Received:
    envelope_from: str
    recipients: list[str]
    message: EmailMessage


@dataclass
class Recorder:
    """An aiosmtpd handler that keeps every message and can misbehave on demand."""

    messages: list[Received] = field(default_factory=list)
    refuse: dict[str, str] = field(default_factory=dict)  # address -> reply
    fail_data: list[str] = field(default_factory=list)  # replies to DATA, consumed in order
    data_delay: float = 0.0  # seconds to hold each message before answering the final dot
    drop_after_data: int = 0  # messages to keep but answer by dropping the connection
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_RCPT(
        self,
        server: SMTPServer,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTPServer, session: Session, envelope: Envelope) -> str:
        if self.data_delay:
            await asyncio.sleep(self.data_delay)
        with self.lock:
            if self.fail_data:
                return self.fail_data.pop(0)
            content = envelope.original_content or envelope.content
            assert isinstance(content, bytes)
            message = email.message_from_bytes(content, policy=email.policy.SMTP)
            assert isinstance(message, EmailMessage)
            self.messages.append(
                Received(str(envelope.mail_from), list(envelope.rcpt_tos), message)
            )
            if self.drop_after_data:
                # The message arrived, but the client never hears so: the lost-reply case.
                self.drop_after_data -= 1
                assert isinstance(server.transport, asyncio.Transport)
                server.transport.abort()
        return "250 Message accepted"

    def by_recipient(self) -> dict[str, list[EmailMessage]]:
        out: dict[str, list[EmailMessage]] = {}
        for received in self.messages:
            for rcpt in received.recipients:
                out.setdefault(rcpt, []).append(received.message)
        return out


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# The columns `reporter history` prints, split on whitespace ("updated (UTC)" is two).
HISTORY_HEADER = ["period", "report", "message", "recipient", "status", "updated", "(UTC)", "note"]


@dataclass
class WebServer:
    """A plain web server on loopback that records every path asked of it: a renderer
    that must load nothing from the network is pointed at it and ``hits`` stays empty."""

    url: str
    hits: list[str]


@pytest.fixture
def web() -> Iterator[WebServer]:
    hits: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hits.append(self.path)
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", free_port()), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield WebServer(f"http://127.0.0.1:{server.server_address[1]}", hits)
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class SmtpServer:
    port: int
    recorder: Recorder
    controller: Controller

    def env(self) -> dict[str, str]:
        return {"SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(self.port), "SMTP_SECURITY": "none"}


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    """A plain SMTP server on loopback that records every message."""
    recorder = Recorder()
    port = free_port()
    controller = Controller(recorder, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield SmtpServer(port, recorder, controller)
    finally:
        controller.stop()


@pytest.fixture
def smtp_ascii() -> Iterator[SmtpServer]:
    """Like ``smtp``, but without SMTPUTF8 (RFC 6531), which aiosmtpd offers by default."""
    recorder = Recorder()
    port = free_port()
    controller = Controller(recorder, hostname="127.0.0.1", port=port, enable_SMTPUTF8=False)
    controller.start()
    try:
        yield SmtpServer(port, recorder, controller)
    finally:
        controller.stop()


def smtp_authenticator(
    server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
) -> AuthResult:
    """Accepts SMTP_USERNAME=reports with ``SMTP_PASSWORD``, like the README's server."""
    ok = (
        isinstance(auth_data, LoginPassword)
        and auth_data.login == b"reports"
        and auth_data.password == SMTP_PASSWORD.encode()
    )
    return AuthResult(success=ok, handled=False)


@pytest.fixture
def smtp_auth() -> Iterator[SmtpServer]:
    """A plain SMTP server that offers AUTH, which SMTP_USERNAME=reports uses."""
    recorder, port = Recorder(), free_port()
    controller = Controller(
        recorder,
        hostname="127.0.0.1",
        port=port,
        auth_require_tls=False,
        authenticator=smtp_authenticator,
    )
    controller.start()
    try:
        yield SmtpServer(port, recorder, controller)
    finally:
        controller.stop()


# --- config ------------------------------------------------------------------


def write_config(path: Path, reports: str, *, email_extra: str = "", defaults: str = "") -> Path:
    path.write_text(
        '[email]\nfrom = "Usage Reports <reports@company.com>"\n'
        + email_extra
        + "\n"
        + (f"[defaults]\n{defaults}\n" if defaults else "")
        + reports,
        encoding="utf-8",
    )
    return path


def dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def user_environ(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment without any MAGNIFIC_ or SMTP_ variable, plus ``extra``:
    what a command run as a user sees, whatever the machine running the tests exports."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("MAGNIFIC_", "SMTP_"))}
    return {**base, **(extra or {})}


def reporter(
    *args: str, env: Mapping[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the installed console script as a user would."""
    return subprocess.run(
        [str(Path(sys.executable).parent / "reporter"), *args],
        env=user_environ(env),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        check=False,
    )
