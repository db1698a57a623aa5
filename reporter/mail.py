"""Email: building the message (pure) and handing it to an SMTP server (I/O).

Exactly-once over SMTP needs the sender's help: the caller's ``on_commit`` is
called just before the final ``.`` of DATA is sent. Until then the server
cannot have accepted the message, so an interrupted send is a plain failed
attempt. After it, without the server's reply, the message may or may not
have been accepted: it is "unconfirmed", not delivered, and is sent again
later with the same Message-ID, as mail servers themselves do (RFC 5321
6.1: "the message may be sent more than once"). The ledger records both
moments (see ``ledger.py``).
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import email.utils
import hashlib
import hmac
import logging
import re
import secrets
import smtplib
import socket
import ssl
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.policy import SMTPUTF8 as SMTPUTF8_POLICY
from typing import Any

import tenacity

from reporter.environment import SmtpSettings
from reporter.errors import DeliveryError, MailSetupError, one_line

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Attachment:
    filename: str
    content: bytes
    mime_type: str  # "application/pdf"


@dataclass(frozen=True, slots=True)
class InlineImage:
    cid: str  # without angle brackets
    content: bytes
    mime_type: str = "image/png"


def message_id(
    report_names: Sequence[str],
    period: str,
    recipients: Sequence[str],
    sender: str,
    *,
    variant: str = "",
) -> str:
    """A Message-ID stable per reports, period and recipient set, so a resend is recognisable
    (and a mailbox that already has it drops the copy); ``variant`` makes a distinct one."""
    key = "|".join(
        [",".join(sorted(report_names)), period, ",".join(sorted(r.lower() for r in recipients))]
        + ([variant] if variant else [])
    )
    digest = hashlib.sha256(key.encode()).hexdigest()[:24]
    _, address = email.utils.parseaddr(sender)
    domain = address.rpartition("@")[2] or "reporter.invalid"
    return f"<reporter.{period}.{digest}@{domain}>"


def needs_smtputf8(addresses: Sequence[str]) -> bool:
    """Whether an address can only travel over SMTPUTF8 (RFC 6531): a UTF-8 local part.
    Internationalised domains are already punycode (config load), so they never do."""
    return not all(address.isascii() for address in addresses)


def _address(addr_spec: str) -> Address:
    # Address(addr_spec=...) refuses a UTF-8 local part; the parts are taken as given.
    local, _, domain = addr_spec.rpartition("@")
    return Address(username=local, domain=domain)


def content_id(name: str, period: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9.-]", "-", name)
    return f"chart.{safe}.{period}@reporter"


def build_message(
    *,
    sender: str,
    recipients: Sequence[str],
    subject: str,
    text: str,
    html: str,
    inline_images: Sequence[InlineImage] = (),
    attachments: Sequence[Attachment] = (),
    msg_id: str,
    date: dt.datetime,
    reply_to: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> EmailMessage:
    """A multipart/mixed message: text and HTML alternatives (HTML with its inline
    chart as multipart/related), then the attachments. ``headers``: more of them
    (``X-Reporter-Version``)."""
    _, sender_address = email.utils.parseaddr(sender)
    utf8 = needs_smtputf8([sender_address, *recipients])
    # With a UTF-8 address the headers are UTF-8 too (RFC 6532), in the .eml as in transit.
    message = EmailMessage(policy=SMTPUTF8_POLICY if utf8 else SMTP_POLICY)
    message["From"] = one_line(sender)
    message["To"] = ", ".join(str(_address(r)) for r in recipients)
    message["Subject"] = one_line(subject)
    message["Date"] = email.utils.format_datetime(date)
    message["Message-ID"] = msg_id
    if reply_to:
        message["Reply-To"] = one_line(reply_to)
    message["Auto-Submitted"] = "auto-generated"
    for name, value in (headers or {}).items():
        message[name] = one_line(value)
    message.set_content(text, subtype="plain", charset="utf-8")
    message.add_alternative(html, subtype="html", charset="utf-8")
    html_part = message.get_body(("html",))
    assert isinstance(html_part, EmailMessage)
    for image in inline_images:
        maintype, subtype = image.mime_type.split("/")
        html_part.add_related(
            image.content,
            maintype=maintype,
            subtype=subtype,
            cid=f"<{image.cid}>",
            disposition="inline",
            filename=image.cid.split("@")[0] + "." + subtype,
        )
    for attachment in attachments:
        maintype, subtype = attachment.mime_type.split("/")
        message.add_attachment(
            attachment.content, maintype=maintype, subtype=subtype, filename=attachment.filename
        )
    _choose_boundaries(message)
    return message


def _choose_boundaries(message: EmailMessage) -> None:
    """Each multipart's boundary, chosen here rather than by the library as it writes
    the message: it searches the whole text of the message for a clash with its choice,
    once per multipart (6-10 ms of the 170 a report costs a run's main process). A
    random 128-bit token needs no search: no part can hold it, and "==" occurs in no
    base64 or quoted-printable line but as base64's closing padding."""
    for part in message.walk():
        if part.is_multipart():
            part.set_boundary(f"=={secrets.token_hex(16)}==")


# --- sending -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SendResult:
    accepted: list[str]
    refused: dict[str, str] = field(default_factory=dict)  # address -> server reply
    unconfirmed: bool = False  # connection lost after the final "." was sent, before a reply


@dataclass(frozen=True, slots=True)
class SmtpCheck:
    """What ``SmtpSender.verify`` found: the server, a line saying what was checked, and
    the EHLO extensions it offers once secured and logged in (``"smtputf8"``, lower case)."""

    server: str
    detail: str
    extensions: frozenset[str]


class _Transient(Exception):
    """Worth retrying: a 4xx reply or a dropped connection before the commit point."""

    hint = "the run can be repeated: reports already delivered are not sent again"


class _Busy(_Transient):
    """A 4xx reply to AUTH: the server is busy (421) or failed for now (454), which says
    nothing about the credentials."""

    hint = "the mail server is busy: run again later (reports already delivered are not sent again)"

    def __init__(self, reply: str) -> None:
        super().__init__(f"it is busy and did not log in ({reply})")
        self.reply = reply  # "421 4.3.2 Too busy, try later"


class _LoginDeferred(smtplib.SMTPResponseException):
    """A 4xx reply to AUTH, raised so that ``login`` stops there: it would otherwise try
    the next mechanism on a connection a 421 closes, and call the credentials rejected."""


# The mechanisms ``smtplib.SMTP.login`` speaks, in its order of preference.
LOGIN_MECHANISMS = ("CRAM-MD5", "PLAIN", "LOGIN")
_MAX_CHALLENGES = 5  # smtplib's _MAXCHALLENGE


class _Smtp(smtplib.SMTP):
    """smtplib's client, except that a 4xx reply to AUTH is no verdict on the login, and
    that credentials go as UTF-8.

    smtplib encodes every AUTH response as ASCII, so a password such as ``S3cret-pässword``
    crashed the run with a ``UnicodeEncodeError``. AUTH PLAIN carries UTF-8 (RFC 4616);
    LOGIN defines no charset, and servers (Postfix with Dovecot or Cyrus) read UTF-8;
    CRAM-MD5 keys its HMAC with the password's UTF-8 bytes."""

    def auth(
        self, mechanism: str, authobject: Any, *, initial_response_ok: bool = True
    ) -> tuple[int, bytes]:
        try:
            return self._auth(mechanism, authobject, initial_response_ok)
        except smtplib.SMTPAuthenticationError as exc:
            if 400 <= exc.smtp_code < 500:
                raise _LoginDeferred(exc.smtp_code, exc.smtp_error) from None
            raise

    def _auth(
        self, mechanism: str, authobject: Any, initial_response_ok: bool
    ) -> tuple[int, bytes]:
        """``smtplib.SMTP.auth`` with UTF-8 where it has ASCII (the one change)."""
        mechanism = mechanism.upper()
        initial = authobject() if initial_response_ok else None
        # auth_login reads the count to tell the user's turn from the password's.
        if initial is not None:
            code, reply = self.docmd("AUTH", f"{mechanism} {_b64(initial)}")
            self._auth_challenge_count = 1
        else:
            code, reply = self.docmd("AUTH", mechanism)
            self._auth_challenge_count = 0
        while code == 334:
            self._auth_challenge_count += 1
            code, reply = self.docmd(_b64(authobject(base64.decodebytes(reply))))
            if self._auth_challenge_count > _MAX_CHALLENGES:
                raise smtplib.SMTPException(f"the server's {mechanism} challenges never end")
        if code in (235, 503):
            return code, reply
        raise smtplib.SMTPAuthenticationError(code, reply)

    def auth_cram_md5(self, challenge: Any = None) -> Any:
        if challenge is None:
            return None  # CRAM-MD5 has no initial response
        digest = hmac.HMAC(str(self.password).encode("utf-8"), challenge, "md5").hexdigest()
        return f"{self.user} {digest}"


def _b64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


class _SmtpSsl(_Smtp, smtplib.SMTP_SSL):
    """The same over implicit TLS."""


@dataclass(frozen=True, slots=True)
class SmtpRetry:
    attempts: int = 4
    initial_wait: float = 1.0
    max_wait: float = 30.0


class SmtpSender:
    """Sends messages, retrying transient faults: over one SMTP connection per message, or
    within ``session()`` over one connection for many (a run's thousands of statements)."""

    # Relays limit messages per connection (Postfix's default is unlimited, Exchange
    # Online's 30 a minute per connection, many answer 421 after 100): a new one after this.
    MESSAGES_PER_CONNECTION = 100

    def __init__(
        self,
        settings: SmtpSettings,
        *,
        retry: SmtpRetry | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._settings = settings
        self._retry = retry or SmtpRetry()
        self._ssl = ssl_context or settings.tls_context()
        # Once the settings are known not to work, every later message fails the same way
        # at once, instead of reconnecting to hear the same refusal for every report.
        self.setup_error: MailSetupError | None = None
        self._sessions = 0  # open session() blocks
        self._kept: smtplib.SMTP | None = None  # the session's connection, between messages
        self._kept_count = 0  # messages it has carried

    def __repr__(self) -> str:
        s = self._settings
        return f"SmtpSender({s.host}:{s.port}, {s.security}, user={s.username!r}, password=***)"

    def send(
        self,
        message: EmailMessage,
        recipients: Sequence[str],
        on_commit: Callable[[], None] = lambda: None,
    ) -> SendResult:
        """Deliver ``message`` to ``recipients``; raise ``DeliveryError`` if nobody got it."""
        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(_Transient),
            wait=tenacity.wait_random_exponential(
                multiplier=self._retry.initial_wait, max=self._retry.max_wait
            ),
            stop=tenacity.stop_after_attempt(self._retry.attempts),
            before_sleep=lambda state: log.warning(
                "SMTP attempt %d failed (%s); retrying",
                state.attempt_number,
                state.outcome.exception() if state.outcome else "?",
            ),
            reraise=True,
        )
        if self.setup_error is not None:
            raise self.setup_error
        try:
            for attempt in retrying:
                with attempt:
                    return self._send_once(message, list(recipients), on_commit)
        except MailSetupError as exc:
            self.setup_error = exc
            raise
        except _Transient as exc:
            raise DeliveryError(
                f"the mail server {self._where()} did not take the message: {exc}"
                f" (gave up after {self._retry.attempts} attempts)",
                transient=True,
                hint=exc.hint,
            ) from None
        raise AssertionError("unreachable")  # pragma: no cover

    @contextlib.contextmanager
    def session(self) -> Iterator[None]:
        """Within it, consecutive messages share one connection: opened by the first, kept
        while the conversation is in step, replaced after a fault or every
        ``MESSAGES_PER_CONNECTION`` messages, and closed with QUIT at the end."""
        self._sessions += 1
        try:
            yield
        finally:
            self._sessions -= 1
            if not self._sessions:
                self._release()

    def _release(self, conn: smtplib.SMTP | None = None) -> None:
        """QUIT the kept connection (or ``conn``), closing it if QUIT fails."""
        if conn is None:
            conn, self._kept, self._kept_count = self._kept, None, 0
        if conn is None:
            return
        try:
            conn.quit()
        except (OSError, smtplib.SMTPException):
            conn.close()

    def verify(self) -> SmtpCheck:
        """Connect, secure and log in exactly as a send would, then QUIT without sending:
        proves the settings on the day they are set rather than on the 1st of the month.
        Returns what was checked and offered; raises ``DeliveryError`` naming what failed."""
        try:
            conn = self._connect()
        except _Busy as exc:
            raise DeliveryError(
                f"the mail server {self._where()} is busy and did not log in ({exc.reply})",
                transient=True,
                hint="run `reporter check` again later: the login was not checked",
            ) from None
        except _Transient as exc:
            raise DeliveryError(
                str(exc),
                transient=True,
                hint="check SMTP_HOST and SMTP_PORT, and that this machine may reach the server",
            ) from None
        extensions = frozenset(conn.esmtp_features)
        try:
            conn.quit()
        except (OSError, smtplib.SMTPException):
            conn.close()
        s = self._settings
        secured = {"starttls": "STARTTLS", "ssl": "TLS", "none": "no encryption"}[s.security]
        login = f"logged in as {s.username}" if s.username else "no login (SMTP_USERNAME unset)"
        return SmtpCheck(self._where(), f"{self._where()}, {secured}, {login}", extensions)

    def _where(self) -> str:
        return f"{self._settings.host}:{self._settings.port}"

    def _connect(self) -> smtplib.SMTP:
        try:
            return self._open()
        except _LoginDeferred as exc:
            raise _Busy(f"{exc.smtp_code} {_reply_text(exc.smtp_error)}") from None
        except smtplib.SMTPAuthenticationError as exc:
            raise MailSetupError(
                f"the mail server {self._where()} rejected SMTP_USERNAME/SMTP_PASSWORD"
                f" ({exc.smtp_code})",
                hint="check the SMTP credentials in the environment",
            ) from None
        except smtplib.SMTPResponseException as exc:
            raise self._classify(exc.smtp_code, exc.smtp_error) from None
        except ssl.SSLError as exc:
            message, hint = tls_failure(exc, self._settings)
            raise MailSetupError(
                f"TLS with the mail server {self._where()} failed: {message}",
                hint=hint,
            ) from None
        except (OSError, smtplib.SMTPException) as exc:
            s = self._settings
            if s.port == 465 and s.security != "ssl":
                raise MailSetupError(
                    f"cannot talk to {self._where()}: {_describe(exc)}; port 465 is the SSL"
                    " port, where a server waits for TLS before it says anything",
                    hint="set SMTP_SECURITY=ssl for port 465, or use the STARTTLS port"
                    " (usually 587) with SMTP_SECURITY=starttls",
                ) from None
            raise _Transient(f"cannot connect to {self._where()}: {_describe(exc)}") from None

    def _open(self) -> smtplib.SMTP:
        """Connect, secure and log in; the connection is closed if any step fails."""
        s = self._settings
        if s.security == "ssl":
            conn: smtplib.SMTP = _SmtpSsl(s.host, s.port, timeout=s.timeout, context=self._ssl)
        else:
            conn = _Smtp(s.host, s.port, timeout=s.timeout)
        try:
            # The message and its final dot go as two writes: with Nagle's algorithm the dot
            # waits for the server's delayed ACK, some 40 ms a message.
            if conn.sock is not None:
                conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn.ehlo()
            if s.security == "starttls":
                if not conn.has_extn("starttls"):
                    raise MailSetupError(
                        f"the mail server {self._where()} does not offer STARTTLS;"
                        " refusing to send in clear text",
                        hint="use SMTP_SECURITY=ssl for implicit TLS, or SMTP_SECURITY=none"
                        " only for a trusted local relay",
                    )
                conn.starttls(context=self._ssl)
                conn.ehlo()
            if s.username and s.password is not None:
                self._check_auth(conn)
                conn.login(s.username, s.password.get_secret_value())
        except BaseException:
            conn.close()
            raise
        return conn

    def _check_auth(self, conn: smtplib.SMTP) -> None:
        """Before a login: say why it cannot work, in terms of what to set, rather than
        smtplib's "AUTH extension not supported"."""
        s = self._settings
        if not conn.has_extn("auth"):
            if s.security == "none" and conn.has_extn("starttls"):
                raise MailSetupError(
                    f"the mail server {self._where()} allows login only over TLS: it offers"
                    " STARTTLS, and AUTH only after it",
                    hint="set SMTP_SECURITY=starttls (the password is then never sent in clear)",
                )
            raise MailSetupError(
                f"the mail server {self._where()} does not offer AUTH",
                hint="unset SMTP_USERNAME and SMTP_PASSWORD for a server without login, or"
                " check SMTP_HOST and SMTP_PORT",
            )
        offered = conn.esmtp_features["auth"].upper().split()
        if not any(m in offered for m in LOGIN_MECHANISMS):
            raise MailSetupError(
                f"the mail server {self._where()} offers login only by"
                f" {', '.join(offered) or 'no named mechanism'}; reporter logs in with"
                f" {', '.join(LOGIN_MECHANISMS)}",
                hint="ask the mail server's administrator for AUTH PLAIN or LOGIN over TLS"
                " for this account",
            )

    def _send_once(
        self, message: EmailMessage, recipients: list[str], on_commit: Callable[[], None]
    ) -> SendResult:
        conn, carried, self._kept = self._kept, self._kept_count, None
        if conn is None:
            conn, carried = self._connect(), 0
        committed = kept = False
        try:
            _, sender = email.utils.parseaddr(str(message["From"]))
            utf8 = needs_smtputf8([sender, *recipients])
            options = self._mail_options(conn, utf8, recipients)
            try:
                code, reply = conn.mail(sender, options)
            except (OSError, smtplib.SMTPServerDisconnected):
                if not carried:
                    raise
                code, reply = 421, b"closed while idle"
            if carried and code == 421:
                # A session's connection the server closed while idle: nothing of this
                # message went over it, so a new one is opened at once, not retried later.
                log.debug("the mail server closed the idle connection; reconnecting")
                conn.close()
                conn, carried = self._connect(), 0
                code, reply = conn.mail(sender, options)
            if code != 250:
                raise self._classify(code, reply)
            refused: dict[str, str] = {}
            transient_refusals = 0
            for rcpt in recipients:
                code, reply = conn.rcpt(rcpt)
                if code not in (250, 251):
                    refused[rcpt] = f"{code} {_reply_text(reply)}"
                    transient_refusals += 400 <= code < 500
            accepted = [r for r in recipients if r not in refused]
            if not accepted:
                conn.rset()
                if transient_refusals == len(recipients):
                    raise _Transient(
                        "every recipient was refused for now: " + "; ".join(refused.values())
                    )
                raise DeliveryError(
                    "the mail server refused every recipient: "
                    + "; ".join(f"{r}: {why}" for r, why in refused.items()),
                    transient=False,
                    refused=refused,
                    hint="check the owners' addresses in the config",
                )
            code, reply = conn.docmd("DATA")
            if code != 354:
                raise self._classify(code, reply)
            policy = SMTPUTF8_POLICY if utf8 else SMTP_POLICY
            payload = _dot_stuff(message.as_bytes(policy=policy))
            conn.send(payload)
            on_commit()
            committed = True
            conn.send(b".\r\n")
            code, reply = conn.getreply()
            if code == 250:
                kept = bool(self._sessions)
                return SendResult(accepted=accepted, refused=refused)
            if 400 <= code < 600:
                # A refusal, even after the commit point, is definite: nothing was accepted,
                # so a 4xx is retried like any other.
                raise self._classify(code, reply)
            # No verdict (smtplib's -1 is a line without a reply code): the server has the
            # whole message and may have taken it, as when the connection drops here.
            log.warning(
                "the mail server answered the end of the message with no verdict (%s);"
                " the next run sends it again",
                f"{code} {_reply_text(reply)}" if code > 0 else repr(_reply_text(reply)[:80]),
            )
            return SendResult(accepted=recipients, unconfirmed=True)
        except (OSError, smtplib.SMTPServerDisconnected) as exc:
            if committed:
                log.warning(
                    "connection lost before the server confirmed the message (%s);"
                    " the next run sends it again",
                    _describe(exc),
                )
                return SendResult(accepted=recipients, unconfirmed=True)
            raise _Transient(f"connection to {self._where()} lost: {_describe(exc)}") from None
        except smtplib.SMTPResponseException as exc:
            raise self._classify(exc.smtp_code, exc.smtp_error) from None
        except (_Transient, DeliveryError):
            raise  # the server answered: the conversation is in step for QUIT
        except BaseException:
            # Interrupted (or failed ourselves) while the server owes an answer, or in the
            # middle of DATA: a QUIT would wait the whole timeout for a reply.
            conn.close()
            raise
        finally:
            if kept and carried + 1 < self.MESSAGES_PER_CONNECTION:
                self._kept, self._kept_count = conn, carried + 1
            else:
                self._release(conn)

    def _mail_options(self, conn: smtplib.SMTP, utf8: bool, recipients: list[str]) -> list[str]:
        """MAIL FROM's options: SMTPUTF8 when an address needs it, if the server offers it
        (smtplib then sends the commands in UTF-8); otherwise those owners cannot be mailed."""
        if not utf8:
            return []
        if not conn.has_extn("smtputf8"):
            needing = [r for r in recipients if needs_smtputf8([r])]
            why = (
                f"the mail server {self._where()} does not offer SMTPUTF8, which the address"
                f"{'es' if len(needing) > 1 else ''} {', '.join(needing) or 'in From'}"
                f" need{'' if len(needing) > 1 else 's'}"
            )
            raise DeliveryError(
                why,
                transient=False,
                refused=dict.fromkeys(needing, why),
                hint="use an ASCII address for this owner, or a mail server with SMTPUTF8",
            )
        return ["SMTPUTF8", "BODY=8BITMIME"] if conn.has_extn("8bitmime") else ["SMTPUTF8"]

    def _classify(self, code: int, reply: bytes | str) -> Exception:
        text = _reply_text(reply)
        if 400 <= code < 500:
            return _Transient(f"{code} {text}")
        return DeliveryError(
            f"the mail server {self._where()} refused the message: {code} {text}",
            transient=False,
            hint="the server's reply says why; fix it and run again",
        )


# OpenSSL's X509_V_ERR_* codes, by what a user can do about them.
_UNKNOWN_ISSUER = {2, 18, 19, 20, 21}  # self-signed, or signed by a CA not trusted here
_WRONG_NAME = {62, 64}  # host name or IP address mismatch
_EXPIRED, _NOT_YET_VALID = 10, 9


def tls_failure(exc: ssl.SSLError, settings: SmtpSettings) -> tuple[str, str]:
    """What went wrong in a TLS handshake with the mail server, in Python's words and a
    cause, and what to set; pure."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        said = f"certificate verify failed: {exc.verify_message}"
        code = exc.verify_code
        if code in _UNKNOWN_ISSUER:
            trusted = (
                f"; SMTP_CA_FILE ({settings.ca_file}) does not hold the CA that signed it"
                if settings.ca_file
                else ""
            )
            return (
                f"{said} (the server's certificate is self-signed or signed by a CA this"
                f" machine does not trust{trusted})",
                "export SMTP_CA_FILE with the path of a PEM file holding your company's CA"
                " certificate: it is trusted for the mail server only",
            )
        if code in _WRONG_NAME:
            return (
                f"{said} (the certificate is not for {settings.host})",
                "set SMTP_HOST to the name the server's certificate is issued for (often"
                " the name in the server's greeting), not an IP address or an alias",
            )
        if code == _EXPIRED:
            return (
                f"{said} (the server's certificate has expired)",
                "ask the mail server's administrator to renew its certificate",
            )
        if code == _NOT_YET_VALID:
            return (
                f"{said} (the server's certificate is not valid yet)",
                "check this machine's clock, or ask the administrator about the certificate",
            )
        return said, "check the mail server's certificate with its administrator"
    reason = exc.reason or str(exc)
    if reason == "WRONG_VERSION_NUMBER" and settings.security == "ssl":
        return (
            f"{reason} (port {settings.port} speaks plain SMTP first, as a STARTTLS port"
            " does, not implicit TLS)",
            "set SMTP_SECURITY=starttls for this port, or use the server's SSL port (usually"
            " 465) with SMTP_SECURITY=ssl",
        )
    return str(reason), "check SMTP_SECURITY, SMTP_PORT and the server's certificate"


def _reply_text(reply: bytes | str) -> str:
    """A server's reply on one line: smtplib joins a multi-line reply's lines with "\\n"."""
    return one_line(reply.decode(errors="replace") if isinstance(reply, bytes) else str(reply))


def _dot_stuff(data: bytes) -> bytes:
    """DATA transparency (RFC 5321 4.5.2), ending in CRLF, without the final dot."""
    data = re.sub(rb"(?m)^\.", b"..", data)
    return data if data.endswith(b"\r\n") else data + b"\r\n"


def _describe(exc: BaseException) -> str:
    if isinstance(exc, socket.timeout | TimeoutError):
        return "timed out"
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0][:200]
