"""A company's own mail server, as a user meets it through `reporter run` and `reporter
check`: a UTF-8 password, a private CA (``SMTP_CA_FILE``), certificate errors that say
their cause, and hints that point at the setting to change. Real SMTP servers on
loopback (aiosmtpd with TLS from trustme), the CLI as a user types it."""

from __future__ import annotations

import contextlib
import datetime as dt
import re
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from reporter.environment import smtp_settings
from reporter.sandbox import SandboxServer
from tests.conftest import API_KEY, Recorder, SmtpServer, free_port, reporter, write_config

PASSWORD = "S3cret-pässword"  # not ASCII: smtplib alone cannot send it
USER = "reports"
REPORTS = '[[reports]]\nname = "team"\nowners = ["manager@company.com"]\n'


def accepts(password: str) -> Any:
    """An aiosmtpd authenticator for USER with ``password`` as UTF-8 bytes."""

    def authenticate(
        server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login == USER.encode()
            and auth_data.password == password.encode("utf-8")
        )
        return AuthResult(success=ok, handled=False)

    return authenticate


@contextlib.contextmanager
def serve(**options: Any) -> Iterator[SmtpServer]:
    recorder, port = Recorder(), options.pop("port", None) or free_port()
    controller = Controller(
        recorder, hostname=options.pop("hostname", "127.0.0.1"), port=port, **options
    )
    controller.start()
    try:
        yield SmtpServer(port, recorder, controller)
    finally:
        controller.stop()


@pytest.fixture(scope="module")
def company_ca() -> trustme.CA:
    return trustme.CA(organization_name="Company Internal CA")


@pytest.fixture
def ca_file(tmp_path: Path, company_ca: trustme.CA) -> Path:
    path = tmp_path / "company-ca.pem"
    company_ca.cert_pem.write_to_path(str(path))
    return path


def server_tls(ca: trustme.CA, *names: str, **cert: Any) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*(names or ("127.0.0.1", "localhost")), **cert).configure_cert(context)
    return context


def run(
    tmp_path: Path, api: SandboxServer, smtp_env: dict[str, str], command: str = "run"
) -> tuple[int, str, str]:
    config = write_config(tmp_path / "reports.toml", REPORTS)
    env = {"MAGNIFIC_API_KEY": API_KEY, "MAGNIFIC_API_BASE_URL": api.url, **smtp_env}
    args = [command, "--config", str(config), "--out", str(tmp_path / "out")]
    args += ["--state", str(tmp_path / "state.sqlite3")]
    done = reporter(*args, env=env)
    assert "Traceback" not in done.stderr, done.stderr
    assert PASSWORD not in done.stdout + done.stderr
    return done.returncode, done.stdout, done.stderr


def errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("Error:")]


def smtp_env(port: int, security: str, **more: str) -> dict[str, str]:
    return {"SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(port), "SMTP_SECURITY": security, **more}


# --- 1. a UTF-8 password -------------------------------------------------------------


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
def test_a_utf8_password_logs_in_with_plain_and_login(
    tmp_path: Path, api: SandboxServer, mechanism: str
) -> None:
    other = "LOGIN" if mechanism == "PLAIN" else "PLAIN"
    with serve(
        auth_require_tls=False,
        authenticator=accepts(PASSWORD),
        auth_exclude_mechanism=[other],
    ) as server:
        env = smtp_env(server.port, "none", SMTP_USERNAME=USER, SMTP_PASSWORD=PASSWORD)
        code, out, err = run(tmp_path, api, env)
        assert code == 0, err
        (received,) = server.recorder.messages
        assert received.recipients == ["manager@company.com"]
        code, out, err = run(tmp_path, api, env, "check")
        assert code == 0, out + err
        assert f"ok    SMTP: 127.0.0.1:{server.port}, no encryption, logged in as {USER}" in out


def test_a_utf8_password_the_server_rejects_is_one_error_line(
    tmp_path: Path, api: SandboxServer
) -> None:
    with serve(auth_require_tls=False, authenticator=accepts("something-else")) as server:
        env = smtp_env(server.port, "none", SMTP_USERNAME=USER, SMTP_PASSWORD=PASSWORD)
        code, out, err = run(tmp_path, api, env)
        assert code == 1
        reason = f"the mail server 127.0.0.1:{server.port} rejected SMTP_USERNAME/SMTP_PASSWORD"
        assert errors(err) == [f"Error: {reason} (535)"]
        assert "Hint: check the SMTP credentials in the environment" in err
        assert re.search(rf"team +[\d,]+  FAILED  manager@company\.com: {re.escape(reason)}", out)
        assert f"{reason} (535). Hint: check the SMTP credentials" in out
        assert server.recorder.messages == []
        assert list((tmp_path / "out").rglob("*.pdf"))  # the report made is kept


# --- 2. a private CA for mail alone ----------------------------------------------------


def test_smtp_ca_file_trusts_the_company_ca_for_mail(
    tmp_path: Path, api: SandboxServer, company_ca: trustme.CA, ca_file: Path
) -> None:
    with serve(
        tls_context=server_tls(company_ca),
        require_starttls=True,
        auth_require_tls=True,
        authenticator=accepts(PASSWORD),
    ) as server:
        env = smtp_env(
            server.port,
            "starttls",
            SMTP_USERNAME=USER,
            SMTP_PASSWORD=PASSWORD,
            SMTP_CA_FILE=str(ca_file),
        )
        code, _out, err = run(tmp_path, api, env)
        assert code == 0, err
        assert len(server.recorder.messages) == 1


def test_smtp_ca_file_adds_to_the_systems_trust_it_does_not_replace_it(ca_file: Path) -> None:
    system = len(ssl.create_default_context().get_ca_certs())
    settings = smtp_settings({"SMTP_HOST": "mail.company.com", "SMTP_CA_FILE": str(ca_file)})
    trusted = settings.tls_context().get_ca_certs()
    assert len(trusted) == system + 1
    assert any(
        ("organizationName", "Company Internal CA") in part
        for cert in trusted
        for part in cert["subject"]
    )


@pytest.mark.parametrize(
    ("content", "problem"),
    [(None, "is not a file"), ("not a certificate\n", "holds no certificate")],
)
def test_a_bad_smtp_ca_file_stops_before_anything_is_fetched(
    tmp_path: Path, api: SandboxServer, content: str | None, problem: str
) -> None:
    path = tmp_path / "ca.pem"
    if content is not None:
        path.write_text(content)
    code, _out, err = run(tmp_path, api, smtp_env(587, "starttls", SMTP_CA_FILE=str(path)))
    assert code == 2
    (line,) = errors(err)
    assert line.startswith(f"Error: SMTP_CA_FILE {path} {problem}")
    assert api.requests == []


# --- 3. certificate errors say their cause ---------------------------------------------


@pytest.mark.parametrize(
    ("case", "cause", "hint"),
    [
        (
            "unknown-issuer",
            "self-signed or signed by a CA this machine does not trust",
            "export SMTP_CA_FILE",
        ),
        (
            "another-ca",
            "SMTP_CA_FILE ({ca_file}) does not hold the CA that signed it",
            "export SMTP_CA_FILE",
        ),
        ("wrong-name", "the certificate is not for 127.0.0.1", "set SMTP_HOST to the name"),
        ("expired", "the server's certificate has expired", "renew"),
    ],
)
def test_certificate_errors_name_their_cause_and_what_to_set(
    tmp_path: Path,
    api: SandboxServer,
    company_ca: trustme.CA,
    ca_file: Path,
    case: str,
    cause: str,
    hint: str,
) -> None:
    names: tuple[str, ...] = ("mail.company.com",) if case == "wrong-name" else ()
    cert: dict[str, Any] = {}
    if case == "expired":
        cert = {
            "not_before": dt.datetime(2020, 1, 1, tzinfo=dt.UTC),
            "not_after": dt.datetime(2021, 1, 1, tzinfo=dt.UTC),
        }
    with serve(tls_context=server_tls(company_ca, *names, **cert), require_starttls=True) as server:
        trust = {} if case == "unknown-issuer" else {"SMTP_CA_FILE": str(ca_file)}
        if case == "another-ca":
            other = tmp_path / "other-ca.pem"
            trustme.CA().cert_pem.write_to_path(str(other))
            trust["SMTP_CA_FILE"] = str(other)
            cause = cause.format(ca_file=other)
        env = smtp_env(server.port, "starttls", **trust)
        for command in ("run", "check"):
            code, out, err = run(tmp_path, api, env, command)
            assert code == 1, (command, out, err)
            said = out + err
            assert "certificate verify failed" in said, said
            assert cause in said, said
            assert hint in said, said
        assert server.recorder.messages == []


# --- 4. hints that point at the right setting ----------------------------------------


def test_auth_offered_only_after_starttls_says_use_starttls(
    tmp_path: Path, api: SandboxServer, company_ca: trustme.CA
) -> None:
    with serve(
        tls_context=server_tls(company_ca),
        auth_require_tls=True,
        authenticator=accepts(PASSWORD),
    ) as server:
        env = smtp_env(server.port, "none", SMTP_USERNAME=USER, SMTP_PASSWORD=PASSWORD)
        for command in ("run", "check"):
            code, out, err = run(tmp_path, api, env, command)
            assert code == 1
            said = out + err
            assert "allows login only over TLS: it offers STARTTLS, and AUTH only after it" in said
            assert "set SMTP_SECURITY=starttls" in said
            assert "unset SMTP_USERNAME" not in said
        assert server.recorder.messages == []


def test_ssl_against_a_starttls_port_says_this_port_speaks_plain_smtp_first(
    tmp_path: Path, api: SandboxServer, company_ca: trustme.CA
) -> None:
    with serve(tls_context=server_tls(company_ca), require_starttls=True) as server:
        env = smtp_env(server.port, "ssl")
        for command in ("run", "check"):
            code, out, err = run(tmp_path, api, env, command)
            assert code == 1
            said = out + err
            assert "WRONG_VERSION_NUMBER" in said
            assert f"port {server.port} speaks plain SMTP first" in said
            assert "set SMTP_SECURITY=starttls for this port" in said


def test_starttls_against_the_ssl_port_465_says_use_ssl(tmp_path: Path, api: SandboxServer) -> None:
    """Port 465 waits for TLS before it says anything: to a client that waits for a
    greeting first, it says nothing and hangs up (a socket that does just that here)."""
    with socket.create_server(("127.0.0.3", 465)) as listener:
        listener.settimeout(30)

        def hang_up() -> None:
            with contextlib.suppress(OSError):
                while True:
                    connection, _ = listener.accept()
                    connection.close()

        threading.Thread(target=hang_up, daemon=True).start()
        env = {"SMTP_HOST": "127.0.0.3", "SMTP_PORT": "465", "SMTP_SECURITY": "starttls"}
        code, out, _err = run(tmp_path, api, env, "check")
    assert code == 1
    assert "port 465 is the SSL port" in out
    assert "set SMTP_SECURITY=ssl for port 465" in out


def test_a_server_offering_no_mechanism_reporter_speaks_says_which_it_offers(
    tmp_path: Path, api: SandboxServer
) -> None:
    with serve(
        auth_require_tls=False,
        authenticator=accepts(PASSWORD),
        auth_exclude_mechanism=["PLAIN", "LOGIN"],
    ) as server:
        env = smtp_env(server.port, "none", SMTP_USERNAME=USER, SMTP_PASSWORD=PASSWORD)
        code, out, _err = run(tmp_path, api, env, "check")
        assert code == 1
        assert "reporter logs in with CRAM-MD5, PLAIN, LOGIN" in out
        assert "AUTH PLAIN or LOGIN over TLS" in out
