"""Secrets out of everything a run prints or writes, in one place.

A server may quote the key back in an error ("invalid key sk-..."), and that
text travels on into exceptions, progress lines, the summary, the GitHub step
summary and the ledger. Rather than trust every path, the CLI builds one
``Redactor`` from the environment and passes all outward text through it.

Servers rarely quote a secret as it was sent: a gateway URL-decodes the request
line before quoting it, a form decoder turns ``+`` into a space, a framework
re-encodes what it decoded its own way, or decodes only part of it. So a secret is
matched one character at a time, each character as written, percent-encoded (either
hex case, or encoded twice) or decoded, in any mix.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

REDACTED = "[redacted]"
SECRET_VARIABLES = ("MAGNIFIC_API_KEY", "SMTP_PASSWORD", "SLACK_BOT_TOKEN")
# A chat webhook's URL is its own credential. The variables the config names are added
# once it is read (``Redactor.also``); these names are covered even before that.
WEBHOOK_NAME_PARTS = ("WEBHOOK",)
# Query parameters whose value is a credential, by how their name ends, in any case:
# Azure's ``sig``, ``token``/``access_token``, ``key``/``api_key``/``subscription-key``,
# OAuth's ``code``.
SECRET_PARAMETERS = ("sig", "signature", "token", "key", "code", "secret", "password")
# Shorter values would black out ordinary words and digits, and protect nothing.
MIN_SECRET_LENGTH = 4
# A webhook path's segment this long with a digit in it is an id or a token, not a word.
_ID_SEGMENT_LENGTH = 8


@dataclass(frozen=True, slots=True)
class Redactor:
    """Replaces each known secret, in whatever form it is quoted, with ``[redacted]``;
    where two secrets overlap, the whole stretch goes, so neither is half shown."""

    secrets: tuple[str, ...] = ()
    _patterns: tuple[re.Pattern[str], ...] = field(
        default=(), init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        patterns = tuple(re.compile(secret_pattern(s)) for s in self.secrets)
        object.__setattr__(self, "_patterns", patterns)

    @classmethod
    def of(cls, secrets: Iterable[str]) -> Redactor:
        kept = {s for s in secrets if len(_decoded(s)) >= MIN_SECRET_LENGTH}
        return cls(tuple(sorted(kept, key=lambda s: (-len(s), s))))

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> Redactor:
        """MAGNIFIC_API_KEY, SMTP_PASSWORD, SLACK_BOT_TOKEN, every ``*WEBHOOK*`` variable's
        URL, and the password and secret query parameters (``sig``, ``token``, ``key``,
        ``code``...) of any URL in the environment (``MAGNIFIC_API_BASE_URL``,
        ``SLACK_API_URL``)."""
        webhooks = [n for n in environ if any(p in n.upper() for p in WEBHOOK_NAME_PARTS)]
        secrets = [environ.get(name, "") for name in [*SECRET_VARIABLES, *webhooks]]
        secrets += [s.strip() for s in secrets]
        for name in webhooks:
            secrets += url_secrets(environ[name], webhook=True)
        for value in environ.values():
            secrets += url_secrets(value)
        return cls.of(secrets)

    def also(self, environ: Mapping[str, str], names: Iterable[str]) -> Redactor:
        """This redactor plus the webhook URLs in the variables ``names`` (those a config
        names), as written, stripped, and their parts (``url_secrets``)."""
        values = [environ.get(n, "") for n in names]
        parts = [s for v in values for s in url_secrets(v, webhook=True)]
        return Redactor.of([*self.secrets, *values, *(v.strip() for v in values), *parts])

    def __call__(self, text: str) -> str:
        spans = sorted(m.span() for p in self._patterns for m in p.finditer(text))
        if not spans:
            return text
        merged = [spans[0]]
        for start, end in spans[1:]:
            if start <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], end))
            else:
                merged.append((start, end))
        pieces, last = [], 0
        for start, end in merged:
            pieces += [text[last:start], REDACTED]
            last = end
        return "".join([*pieces, text[last:]])


def url_secrets(value: str, *, webhook: bool = False) -> list[str]:
    """The credentials in ``value`` if it is a URL: its password and the value of each
    secret-bearing query parameter; for a ``webhook``, whose address is its credential,
    also the URL, its path and query, and each id-like segment of its path."""
    url = value.strip()
    if "://" not in url:
        return []
    try:
        parts = urllib.parse.urlsplit(url)
        password = parts.password
    except ValueError:
        return []
    found = [password or ""]
    for pair in re.split("[&;]", parts.query):
        name, equals, secret = pair.partition("=")
        if equals and urllib.parse.unquote_plus(name).strip().lower().endswith(SECRET_PARAMETERS):
            found.append(secret)
    if webhook:
        found += [url, parts.path, parts.query, f"{parts.path}?{parts.query}"]
        found += [
            segment
            for segment in parts.path.split("/")
            if len(segment) >= _ID_SEGMENT_LENGTH and any(c.isdigit() for c in segment)
        ]
    return [s for s in found if s]


def secret_pattern(secret: str) -> str:
    """A regular expression for ``secret`` in any form a server may quote it in: each of
    its characters as written, percent-encoded (either hex case, or twice) or decoded;
    ``+``, a space and their escapes for one another (form encoding); ``\\/`` for ``/``
    (JSON)."""
    return "".join(_character_pattern(c) for c in _decoded(secret))


def _decoded(secret: str) -> str:
    try:
        return urllib.parse.unquote(secret, errors="strict")
    except UnicodeDecodeError:  # escapes that are not UTF-8: match it as written
        return secret


def _character_pattern(char: str) -> str:
    escaped = "".join(f"%{byte:02X}" for byte in char.encode())
    forms = {re.escape(char), f"(?i:{escaped})", f"(?i:{escaped.replace('%', '%25')})"}
    if char in "+ ":
        forms |= {r"\+", " ", "(?i:%2B)", "%20", "(?i:%252B)", "%2520"}
    if char == "/":
        forms.add(r"\\/")
    return "(?:" + "|".join(sorted(forms, key=lambda f: (-len(f), f))) + ")"
