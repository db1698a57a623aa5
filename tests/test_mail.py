"""Building messages and sending them to real SMTP servers on loopback."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import ssl
from collections.abc import Iterator
from typing import Any

import pytest
import trustme
from aiosmtpd.controller import Controller
from pydantic import SecretStr

from reporter.environment import SmtpSettings
from reporter.errors import DeliveryError
from reporter.mail import (
    Attachment,
    InlineImage,
    SmtpRetry,
    SmtpSender,
    build_message,
    message_id,
)
from tests.conftest import SMTP_PASSWORD, Recorder, SmtpServer, free_port, smtp_authenticator

FAST = SmtpRetry(attempts=3, initial_wait=0.01, max_wait=0.05)
OWNERS = ["manager@company.com", "cfo@company.com"]


def message(
    subject: str = "Marketing — credit usage, October 2026", recipients: list[str] = OWNERS
) -> Any:
    return build_message(
        sender="Usage Reports <reports@company.com>",
        recipients=recipients,
        subject=subject,
        text="Credits used: 1,234",
        html="<p>Credits used: <b>1,234</b></p><img src='cid:chart.m@reporter'>",
        inline_images=[InlineImage("chart.m@reporter", b"\x89PNG fake")],
        attachments=[
            Attachment("m-2026-10.pdf", b"%PDF-1.7 fake", "application/pdf"),
            Attachment("m-2026-10.csv", b"date,tool\n", "text/csv"),
        ],
        msg_id=message_id(["marketing"], "2026-10", recipients, "reports@company.com"),
        date=dt.datetime(2026, 11, 1, 6, 0, tzinfo=dt.UTC),
    )


def settings(port: int, security: str = "none", **kwargs: Any) -> SmtpSettings:
    return SmtpSettings(
        host="127.0.0.1",
        port=port,
        security=security,  # type: ignore[arg-type]
        username=kwargs.get("username"),
        password=kwargs.get("password"),
        timeout=5,
    )


def test_message_structure() -> None:
    msg = message()
    assert msg.get_content_type() == "multipart/mixed"
    assert msg["To"] == "manager@company.com, cfo@company.com"
    assert msg["Message-ID"].startswith("<reporter.2026-10.")
    assert msg["Message-ID"].endswith("@company.com>")
    body = msg.get_body(("related", "html", "plain"))
    assert body is not None
    related = msg.get_body(("related",))
    assert related is not None
    image = [p for p in related.walk() if p.get_content_type() == "image/png"]
    assert image[0]["Content-ID"] == "<chart.m@reporter>"
    names = sorted(p.get_filename() for p in msg.iter_attachments())
    assert names == ["m-2026-10.csv", "m-2026-10.pdf"]


def test_each_part_comes_back_whole_between_boundaries_of_its_own() -> None:
    """Boundaries are chosen when the message is built (the library would search the
    whole text for each of its own): every multipart has a different one, none of them
    occurs in any part, and every part reads back byte for byte, even one whose bytes
    spell a boundary-like line."""
    pdf = b"%PDF-1.7\n--==0123456789abcdef0123456789abcdef==\n" + bytes(range(256)) * 300
    sent = build_message(
        sender="Usage Reports <reports@company.com>",
        recipients=OWNERS,
        subject="s",
        text="--==not-a-boundary==\n" * 3,
        html="<p>==</p>",
        inline_images=[InlineImage("chart.m@reporter", bytes(range(256)) * 500)],
        attachments=[Attachment("m.pdf", pdf, "application/pdf")],
        msg_id="<m@reporter>",
        date=dt.datetime(2026, 11, 1, 6, 0, tzinfo=dt.UTC),
    )
    raw = sent.as_bytes()
    back = email.message_from_bytes(raw, policy=email.policy.SMTP)
    boundaries = [p.get_boundary() for p in back.walk() if p.is_multipart()]
    assert len(boundaries) == 3
    assert len(set(boundaries)) == 3
    assert all(raw.count(f"--{b}--".encode()) == 1 for b in boundaries)
    attachment = next(iter(back.iter_attachments()))
    assert attachment.get_content() == pdf
    image = next(p for p in back.walk() if p.get_content_type() == "image/png")
    assert image.get_content() == bytes(range(256)) * 500
    text = back.get_body(("plain",))
    assert text is not None
    assert text.get_content().splitlines() == ["--==not-a-boundary=="] * 3


def test_message_id_is_stable_per_reports_period_and_recipients() -> None:
    a = message_id(["marketing"], "2026-10", ["A@x.com", "b@x.com"], "r@company.com")
    assert a == message_id(["marketing"], "2026-10", ["b@x.com", "a@x.com"], "r@company.com")
    assert a != message_id(["marketing"], "2026-09", ["a@x.com", "b@x.com"], "r@company.com")
    assert a != message_id(["marketing"], "2026-10", ["a@x.com"], "r@company.com")


def test_header_injection_in_a_title_cannot_add_headers(smtp: SmtpServer) -> None:
    evil = "Marketing\r\nBcc: attacker@evil.example\r\nX-Evil: 1"
    SmtpSender(settings(smtp.port), retry=FAST).send(message(subject=evil), OWNERS)
    (received,) = smtp.recorder.messages
    assert received.message["Bcc"] is None
    assert received.message["X-Evil"] is None
    assert received.message["Subject"] == "Marketing Bcc: attacker@evil.example X-Evil: 1"
    assert sorted(received.recipients) == sorted(OWNERS)


def test_refused_recipient_is_reported_and_the_others_get_it(smtp: SmtpServer) -> None:
    smtp.recorder.refuse["cfo@company.com"] = "550 5.1.1 No such user"
    result = SmtpSender(settings(smtp.port), retry=FAST).send(message(), OWNERS)
    assert result.accepted == ["manager@company.com"]
    assert result.refused == {"cfo@company.com": "550 5.1.1 No such user"}
    assert smtp.recorder.messages[0].recipients == ["manager@company.com"]


def test_421_then_accepted_delivers_exactly_once(smtp: SmtpServer) -> None:
    smtp.recorder.fail_data.append("421 4.3.2 Service not available, try later")
    commits: list[int] = []
    result = SmtpSender(settings(smtp.port), retry=FAST).send(
        message(), OWNERS, on_commit=lambda: commits.append(1)
    )
    assert result.accepted == OWNERS
    assert len(smtp.recorder.messages) == 1
    assert len(commits) == 2  # the commit point was reached on both attempts


def test_permanent_rejection_is_not_retried(smtp: SmtpServer) -> None:
    smtp.recorder.fail_data.extend(["554 5.7.1 Message rejected"] * 3)
    with pytest.raises(DeliveryError) as caught:
        SmtpSender(settings(smtp.port), retry=FAST).send(message(), OWNERS)
    assert not caught.value.transient
    assert "554 5.7.1 Message rejected" in str(caught.value)
    assert smtp.recorder.fail_data == ["554 5.7.1 Message rejected"] * 2


def test_server_down_is_a_transient_failure_after_retries() -> None:
    port = free_port()
    with pytest.raises(DeliveryError) as caught:
        SmtpSender(settings(port), retry=FAST).send(message(), OWNERS)
    assert caught.value.transient
    assert f"the mail server 127.0.0.1:{port} did not take the message: cannot connect" in str(
        caught.value
    )
    assert "gave up after 3 attempts" in str(caught.value)


# --- TLS and AUTH ------------------------------------------------------------


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def client_tls(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


def _server_tls(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return context


@pytest.fixture
def starttls_smtp(ca: trustme.CA) -> Iterator[SmtpServer]:
    """Requires STARTTLS, then AUTH, before accepting mail."""
    recorder, port = Recorder(), free_port()
    controller = Controller(
        recorder,
        hostname="127.0.0.1",
        port=port,
        tls_context=_server_tls(ca),
        require_starttls=True,
        auth_required=True,
        auth_require_tls=True,
        authenticator=smtp_authenticator,
    )
    controller.start()
    yield SmtpServer(port, recorder, controller)
    controller.stop()


def test_starttls_and_auth(starttls_smtp: SmtpServer, client_tls: ssl.SSLContext) -> None:
    sender = SmtpSender(
        settings(
            starttls_smtp.port, "starttls", username="reports", password=SecretStr(SMTP_PASSWORD)
        ),
        retry=FAST,
        ssl_context=client_tls,
    )
    assert SMTP_PASSWORD not in repr(sender)
    result = sender.send(message(), OWNERS)
    assert result.accepted == OWNERS
    assert len(starttls_smtp.recorder.messages) == 1


def test_wrong_password_is_a_clear_permanent_error(
    starttls_smtp: SmtpServer, client_tls: ssl.SSLContext
) -> None:
    sender = SmtpSender(
        settings(
            starttls_smtp.port,
            "starttls",
            username="reports",
            password=SecretStr("wrong-password-123"),
        ),
        retry=FAST,
        ssl_context=client_tls,
    )
    with pytest.raises(DeliveryError) as caught:
        sender.send(message(), OWNERS)
    assert str(caught.value) == (
        f"the mail server 127.0.0.1:{starttls_smtp.port} rejected SMTP_USERNAME/SMTP_PASSWORD (535)"
    )
    assert "wrong-password-123" not in str(caught.value)
    assert not caught.value.transient


def test_starttls_required_but_not_offered_refuses_to_send(smtp: SmtpServer) -> None:
    with pytest.raises(DeliveryError) as caught:
        SmtpSender(settings(smtp.port, "starttls"), retry=FAST).send(message(), OWNERS)
    assert "does not offer STARTTLS; refusing to send in clear text" in str(caught.value)
    assert smtp.recorder.messages == []


def test_untrusted_certificate_is_refused(starttls_smtp: SmtpServer) -> None:
    sender = SmtpSender(
        settings(
            starttls_smtp.port, "starttls", username="reports", password=SecretStr(SMTP_PASSWORD)
        ),
        retry=FAST,
    )
    with pytest.raises(DeliveryError) as caught:
        sender.send(message(), OWNERS)
    assert "TLS with the mail server" in str(caught.value)
    assert starttls_smtp.recorder.messages == []


def test_implicit_tls(ca: trustme.CA, client_tls: ssl.SSLContext) -> None:
    recorder, port = Recorder(), free_port()
    controller = Controller(
        recorder,
        hostname="127.0.0.1",
        port=port,
        ssl_context=_server_tls(ca),
        server_hostname="localhost",
    )
    controller.start()
    try:
        SmtpSender(settings(port, "ssl"), retry=FAST, ssl_context=client_tls).send(
            message(), OWNERS
        )
    finally:
        controller.stop()
    assert len(recorder.messages) == 1


# --- internationalised addresses ----------------------------------------------


def mail_options(recorder: Recorder) -> list[list[str]]:
    """The options of every MAIL FROM the server receives, e.g. ``["SMTPUTF8"]``."""
    seen: list[list[str]] = []

    async def handle_mail(
        server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        seen.append(options)
        envelope.mail_from, envelope.mail_options = address, options
        return "250 OK"

    recorder.handle_MAIL = handle_mail  # type: ignore[attr-defined]
    return seen


def test_a_utf8_local_part_goes_with_smtputf8_when_the_server_offers_it(
    smtp: SmtpServer,
) -> None:
    options = mail_options(smtp.recorder)
    owners = ["jörg@company.com", "cfo@company.com"]
    result = SmtpSender(settings(smtp.port), retry=FAST).send(message(recipients=owners), owners)
    assert result.accepted == owners
    (received,) = smtp.recorder.messages
    assert received.recipients == owners
    assert received.message["To"] == "jörg@company.com, cfo@company.com"
    assert "SMTPUTF8" in options[0]


def test_an_ascii_message_does_not_ask_for_smtputf8(smtp: SmtpServer) -> None:
    options = mail_options(smtp.recorder)
    SmtpSender(settings(smtp.port), retry=FAST).send(message(), OWNERS)
    assert options == [[]]
    assert bytes(smtp.recorder.messages[0].message).isascii()


def test_a_utf8_local_part_without_smtputf8_is_refused_clearly(smtp_ascii: SmtpServer) -> None:
    owners = ["jörg@company.com", "cfo@company.com"]
    with pytest.raises(DeliveryError) as caught:
        SmtpSender(settings(smtp_ascii.port), retry=FAST).send(message(recipients=owners), owners)
    why = (
        f"the mail server 127.0.0.1:{smtp_ascii.port} does not offer SMTPUTF8,"
        " which the address jörg@company.com needs"
    )
    assert str(caught.value) == why
    assert caught.value.refused == {"jörg@company.com": why}
    assert not caught.value.transient
    assert smtp_ascii.recorder.messages == []
