"""Secrets out of everything a run prints or writes, in one place.

A server may quote the key back in an error ("invalid key sk-..."), and that
text travels on into exceptions, progress lines, the summary, the GitHub step
summary and the ledger. Rather than trust every path, the CLI builds one
``Redactor`` from the environment and passes all outward text through it.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

REDACTED = "[redacted]"
SECRET_VARIABLES = ("MAGNIFIC_API_KEY", "SMTP_PASSWORD", "SLACK_BOT_TOKEN")
# A chat webhook's URL is its own credential. The variables the config names are added
# once it is read (``Redactor.also``); these names are covered even before that.
WEBHOOK_NAME_PARTS = ("WEBHOOK",)
# Shorter values would black out ordinary words and digits, and protect nothing.
MIN_SECRET_LENGTH = 4


@dataclass(frozen=True, slots=True)
class Redactor:
    """Replaces each known secret with ``[redacted]``; longest first, so a secret that
    contains another is never half shown."""

    secrets: tuple[str, ...] = ()

    @classmethod
    def of(cls, secrets: Iterable[str]) -> Redactor:
        kept = {s for s in secrets if len(s) >= MIN_SECRET_LENGTH}
        return cls(tuple(sorted(kept, key=len, reverse=True)))

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> Redactor:
        """MAGNIFIC_API_KEY, SMTP_PASSWORD, and the password of any URL in the environment
        (``MAGNIFIC_API_BASE_URL=http://user:pass@host``), as written and percent-decoded."""
        names = [*SECRET_VARIABLES]
        names += [n for n in environ if any(part in n.upper() for part in WEBHOOK_NAME_PARTS)]
        secrets = [environ.get(name, "").strip() for name in names]
        secrets += [environ.get(name, "") for name in names]
        for value in environ.values():
            secrets += _url_passwords(value)
        return cls.of(secrets)

    def also(self, environ: Mapping[str, str], names: Iterable[str]) -> Redactor:
        """This redactor plus the values of the variables ``names`` (the webhook variables
        a config names), as written and stripped."""
        values = [environ.get(n, "") for n in names]
        return Redactor.of([*self.secrets, *values, *(v.strip() for v in values)])

    def __call__(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return text


def _url_passwords(value: str) -> list[str]:
    if "://" not in value or "@" not in value:
        return []
    try:
        password = urllib.parse.urlsplit(value.strip()).password
    except ValueError:
        return []
    if not password:
        return []
    return [password, urllib.parse.unquote(password)]
