"""One SMTP connection for many messages (``SmtpSender.session``), against a real aiosmtpd
server on loopback that counts its connections and can close or drop them."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP as SMTPServer
from aiosmtpd.smtp import Envelope, Session

from reporter.mail import SmtpRetry, SmtpSender, build_message, message_id
from tests.conftest import Recorder, free_port
from tests.test_mail import settings


@dataclass
class Counting(Recorder):
    """Counts connections (EHLOs); closes the connection, after answering, every
    ``close_every`` messages: a server that hangs up on an idle client."""

    connections: int = 0
    close_every: int = 0

    async def handle_EHLO(
        self,
        server: SMTPServer,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        self.connections += 1
        session.host_name = hostname  # the hook's job, once it is defined
        return responses

    async def handle_DATA(self, server: SMTPServer, session: Session, envelope: Envelope) -> str:
        reply = await super().handle_DATA(server, session, envelope)
        if self.close_every and len(self.messages) % self.close_every == 0:
            transport = server.transport
            assert isinstance(transport, asyncio.Transport)
            asyncio.get_running_loop().call_later(0.05, transport.close)
        return reply


@pytest.fixture
def server() -> Iterator[tuple[Counting, int]]:
    recorder = Counting()
    port = free_port()
    controller = Controller(recorder, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield recorder, port
    finally:
        controller.stop()


def mail(number: int) -> EmailMessage:
    to = [f"user{number}@company.com"]
    return build_message(
        sender="Reports <reports@company.com>",
        recipients=to,
        subject=f"Statement {number}",
        text=f"Credits used: {number}",
        html=f"<p>{number}</p>",
        msg_id=message_id(["team"], "2026-10", to, "reports@company.com", variant=str(number)),
        date=dt.datetime(2026, 11, 1, tzinfo=dt.UTC),
    )


def send(sender: SmtpSender, number: int) -> None:
    result = sender.send(mail(number), [f"user{number}@company.com"])
    assert result.accepted == [f"user{number}@company.com"]
    assert not result.unconfirmed


def subjects(recorder: Counting) -> list[str]:
    return [str(r.message["Subject"]) for r in recorder.messages]


def test_a_session_carries_a_hundred_messages_a_connection(
    server: tuple[Counting, int],
) -> None:
    recorder, port = server
    sender = SmtpSender(settings(port))
    with sender.session():
        for number in range(250):
            send(sender, number)
    assert recorder.connections == 3
    assert subjects(recorder) == [f"Statement {n}" for n in range(250)]


def test_outside_a_session_each_message_has_its_own_connection(
    server: tuple[Counting, int],
) -> None:
    recorder, port = server
    sender = SmtpSender(settings(port))
    send(sender, 1)
    send(sender, 2)
    assert recorder.connections == 2


def test_a_connection_the_server_closed_while_idle_is_replaced_without_a_retry(
    server: tuple[Counting, int], caplog: pytest.LogCaptureFixture
) -> None:
    recorder, port = server
    recorder.close_every = 3
    sender = SmtpSender(settings(port), retry=SmtpRetry(attempts=2, initial_wait=30))
    caplog.set_level(logging.WARNING)
    with sender.session():
        for number in range(10):
            if number % 3 == 0:
                asyncio.run(asyncio.sleep(0.1))  # the server hangs up meanwhile
            send(sender, number)
    assert subjects(recorder) == [f"Statement {n}" for n in range(10)]  # each once
    assert recorder.connections == 4
    assert not [r for r in caplog.records if "retrying" in r.getMessage()]


def test_a_drop_after_the_final_dot_is_unconfirmed_and_the_next_message_reconnects(
    server: tuple[Counting, int],
) -> None:
    recorder, port = server
    sender = SmtpSender(settings(port))
    with sender.session():
        send(sender, 1)
        recorder.drop_after_data = 1
        result = sender.send(mail(2), ["user2@company.com"])
        assert result.unconfirmed
        send(sender, 3)
    assert subjects(recorder) == ["Statement 1", "Statement 2", "Statement 3"]
    assert recorder.connections == 2


def test_a_refused_recipient_keeps_the_session_going(server: tuple[Counting, int]) -> None:
    recorder, port = server
    recorder.refuse["user2@company.com"] = "550 no such user"
    sender = SmtpSender(settings(port))
    with sender.session():
        send(sender, 1)
        with pytest.raises(Exception, match="refused every recipient"):
            sender.send(mail(2), ["user2@company.com"])
        send(sender, 3)
    assert subjects(recorder) == ["Statement 1", "Statement 3"]
    assert recorder.connections <= 2
