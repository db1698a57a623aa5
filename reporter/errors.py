"""Errors a user can act on.

Every failure that can reach a user is a ``ReporterError``: its message says
what failed and where, its ``hint`` says what to do. The CLI turns them into
one ``Error: ...`` line and an exit status; nothing else prints tracebacks.

    ReporterError
    ├── UsageError            bad command line, config or environment (exit 2)
    │   └── ConfigError       the TOML config file is missing or invalid
    ├── ApiError              the Magnific API could not give us the data
    │   ├── ApiAuthError      401/403: the key was rejected (exit 2)
    │   ├── ApiRequestError   400/404/422: the request was refused
    │   ├── ApiUnavailableError  retries exhausted: 429, 5xx, network
    │   └── ApiResponseError  the body is not what the contract promises
    ├── RenderError           charts, templates or PDF could not be made
    └── DeliveryError         the mail server did not take the message
"""

from __future__ import annotations


def one_line(text: str) -> str:
    """Text from a server or a user folded to one line: an error stays one readable line,
    and a header can carry no CR/LF (header injection)."""
    return " ".join(text.split())


class ReporterError(Exception):
    """Base of every error the CLI reports as one readable line."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class UsageError(ReporterError):
    """The command line, config or environment is wrong; nothing was attempted."""

    exit_code = 2


class ConfigError(UsageError):
    """The config file cannot be read or does not follow the schema."""

    def __init__(self, message: str, *, path: str, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.path = path


class ApiError(ReporterError):
    """The Magnific API did not give us the data for a report."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        url: str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.status = status
        self.url = url


class ApiAuthError(ApiError):
    """The key in MAGNIFIC_API_KEY was rejected; no other report can succeed either."""

    exit_code = 2


class ApiRequestError(ApiError):
    """The API refused the request as invalid (400, 404, 422)."""


class ApiUnavailableError(ApiError):
    """The API stayed unreachable, overloaded or failing after every retry."""


class ApiResponseError(ApiError):
    """The API answered 200 with a body that breaks the documented contract."""


class RenderError(ReporterError):
    """A chart, template or PDF could not be produced."""


class DeliveryError(ReporterError):
    """The mail server did not accept a message."""

    def __init__(
        self,
        message: str,
        *,
        transient: bool,
        refused: dict[str, str] | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.transient = transient
        self.refused = refused or {}


class MailSetupError(DeliveryError):
    """The mail settings cannot work as they are (TLS trust, login, port or security mode):
    every message fails the same way until a setting changes, so the hint naming that
    setting goes wherever the failure is shown (the summary, the ledger, ``check``)."""

    def __init__(self, message: str, *, hint: str) -> None:
        super().__init__(message, transient=False, hint=hint)

    def with_hint(self) -> str:
        return f"{self.message}. Hint: {self.hint}"
