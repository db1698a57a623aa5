"""Settings that come from the environment: the API key, API URL and SMTP.

Secrets never live in the config file. They are held as ``SecretStr`` so that
a repr, a log line or an exception message can never show them. httpx parses
the API URL (as the client will), imported only once a URL is to be read, so an
unset variable is reported without loading the HTTP stack.
"""

from __future__ import annotations

import ipaddress
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import SecretStr

from reporter.errors import UsageError

DEFAULT_API_BASE_URL = "https://api.magnific.com"

SmtpSecurity = Literal["starttls", "ssl", "none"]
_DEFAULT_PORTS: dict[SmtpSecurity, int] = {"starttls": 587, "ssl": 465, "none": 25}


@dataclass(frozen=True, slots=True)
class ApiSettings:
    key: SecretStr
    base_url: str


@dataclass(frozen=True, slots=True)
class SmtpSettings:
    host: str
    port: int
    security: SmtpSecurity
    username: str | None
    password: SecretStr | None
    timeout: float = 30.0
    ca_file: Path | None = None  # SMTP_CA_FILE: trusted beside the system's CAs, for SMTP only

    def tls_context(self) -> ssl.SSLContext:
        """The system's trust, plus ``ca_file``'s certificates: a company relay's private
        CA is trusted for mail without replacing the trust store the API client uses (as
        ``SSL_CERT_FILE`` would)."""
        context = ssl.create_default_context()
        if self.ca_file is not None:
            context.load_verify_locations(cafile=str(self.ca_file))
        return context


def api_settings(environ: Mapping[str, str]) -> ApiSettings:
    """MAGNIFIC_API_KEY (required) and MAGNIFIC_API_BASE_URL."""
    key = environ.get("MAGNIFIC_API_KEY", "").strip()
    if not key:
        raise UsageError(
            "MAGNIFIC_API_KEY is not set",
            hint="export MAGNIFIC_API_KEY with your team's Magnific API key"
            " (in GitHub Actions, a repository secret); `reporter demo` needs no key",
        )
    base_url = environ.get("MAGNIFIC_API_BASE_URL", "").strip() or DEFAULT_API_BASE_URL
    import httpx

    try:
        url = httpx.URL(base_url)
    except httpx.InvalidURL as exc:
        raise UsageError(f"MAGNIFIC_API_BASE_URL is not a valid URL: {exc}") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise UsageError(
            f"MAGNIFIC_API_BASE_URL must be an http(s) URL, got {base_url!r}",
            hint=f"leave it unset to use {DEFAULT_API_BASE_URL}",
        )
    return ApiSettings(key=SecretStr(key), base_url=base_url.rstrip("/"))


def sends_key_in_clear(base_url: str) -> bool:
    """Whether the key header would cross a network unencrypted: plain http:// to a host
    other than this machine (127.0.0.0/8, ::1, localhost), where the sandbox is fine."""
    import httpx

    url = httpx.URL(base_url)
    if url.scheme != "http":
        return False
    host = url.host.lower()
    if host == "localhost" or host.endswith(".localhost"):
        return False
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:  # a name: it may resolve anywhere
        return True


def smtp_settings(environ: Mapping[str, str]) -> SmtpSettings:
    """SMTP_HOST, SMTP_PORT, SMTP_USERNAME, SMTP_PASSWORD, SMTP_SECURITY, SMTP_CA_FILE."""
    host = environ.get("SMTP_HOST", "").strip()
    if not host:
        raise UsageError(
            "SMTP_HOST is not set",
            hint="export SMTP_HOST (and SMTP_PORT, SMTP_USERNAME, SMTP_PASSWORD);"
            " `reporter run --dry-run` writes the .eml files without a mail server",
        )
    security = environ.get("SMTP_SECURITY", "starttls").strip().lower() or "starttls"
    checked = next((s for s in _DEFAULT_PORTS if s == security), None)
    if checked is None:
        raise UsageError(
            f"SMTP_SECURITY must be starttls, ssl or none, got {security!r}",
            hint="starttls (port 587) is the default; ssl is implicit TLS (port 465)",
        )
    port_text = environ.get("SMTP_PORT", "").strip()
    if port_text:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise UsageError(f"SMTP_PORT must be a port number, got {port_text!r}")
        port = int(port_text)
    else:
        port = _DEFAULT_PORTS[checked]
    username = environ.get("SMTP_USERNAME", "").strip() or None
    password_text = environ.get("SMTP_PASSWORD", "")
    if username and not password_text:
        raise UsageError(
            "SMTP_USERNAME is set but SMTP_PASSWORD is not",
            hint="export SMTP_PASSWORD, or unset SMTP_USERNAME for a server without AUTH",
        )
    settings = SmtpSettings(
        host=host,
        port=port,
        security=checked,
        username=username,
        password=SecretStr(password_text) if password_text else None,
        ca_file=_ca_file(environ.get("SMTP_CA_FILE", "").strip()),
    )
    if settings.ca_file is not None:
        try:
            settings.tls_context()
        except (OSError, ssl.SSLError) as exc:
            raise UsageError(
                f"SMTP_CA_FILE {settings.ca_file} holds no certificate this machine can read"
                f" ({getattr(exc, 'reason', None) or exc})",
                hint="point SMTP_CA_FILE at a PEM file with the CA certificate(s) that signed"
                " the mail server's certificate",
            ) from None
    return settings


def _ca_file(text: str) -> Path | None:
    if not text:
        return None
    path = Path(text).expanduser()
    if not path.is_file():
        raise UsageError(
            f"SMTP_CA_FILE {text} is not a file",
            hint="point SMTP_CA_FILE at a PEM file with the CA certificate(s) that signed the"
            " mail server's certificate, or unset it",
        )
    return path
