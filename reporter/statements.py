"""Personal statements: each user's own usage, and nobody else's. Pure.

A statement is built from one user's rows of the reports they appear in, and
from nothing else: no other user's address, name or figure, and the team's
total only where the config asks for it (``statement_team_total``). Only
addresses in the configured domains ever get one, because ``user_email`` is
whatever the API was told; an address that is not one, or that differs only by
case from another, is screened here before anything is built or sent.

Records here are small and picklable: a run gathers one ``ReportStatements``
per report, then ``gather`` makes one statement per mailbox across reports.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal

import email_validator

# The ledger's ``message`` for a statement row: (report, period, "statement", user).
STATEMENT = "statement"
# ``--to`` sends this many statements, marked as previews, to that address only.
PREVIEW_STATEMENTS = 3

# Why a user got no statement (the summary and ``history`` count each).
OUTSIDE_DOMAINS = "outside statement_domains"
OPTED_OUT = "in statement_opt_out"
NOT_AN_ADDRESS = "not an email address"


@dataclass(frozen=True, slots=True)
class StatementPolicy:
    """A report's statement settings (``Config.statements_for``)."""

    domains: frozenset[str]  # lower case, IDNA
    opt_out: frozenset[str] = frozenset()  # lower case
    pdf: bool = False
    team_total: bool = False


@dataclass(frozen=True, slots=True)
class ToolLine:
    """One tool of one user's period, and the same tool in their comparison period."""

    tool: str
    uses: int
    credits: float
    previous_uses: int
    previous_credits: float
    amount: Decimal | None = None  # rounded; a user's lines add up to their amount


@dataclass(frozen=True, slots=True)
class UserPart:
    """What one report shows one user: their tools (largest first) and totals."""

    report: str
    title: str
    tools: tuple[ToolLine, ...]
    amount: Decimal | None = None  # the user's credits priced day by day, rounded
    currency: str | None = None
    team_credits: float | None = None  # only with statement_team_total
    team_amount: Decimal | None = None

    @property
    def credits(self) -> float:
        return sum(line.credits for line in self.tools)

    @property
    def uses(self) -> int:
        return sum(line.uses for line in self.tools)

    @property
    def previous_credits(self) -> float:
        return sum(line.previous_credits for line in self.tools)

    @property
    def previous_uses(self) -> int:
        return sum(line.previous_uses for line in self.tools)


@dataclass(frozen=True, slots=True)
class ReportStatements:
    """One report's statements for one period: each mailbox's part, and who was left
    out and why (reason -> the addresses as the API spelt them)."""

    report: str
    locale: str
    pdf: bool
    parts: Mapping[str, UserPart]  # mailbox (lower case) -> its part
    spelt: Mapping[str, str]  # mailbox -> its address as first spelt
    skipped: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def skipped_count(self) -> int:
        return sum(len(who) for who in self.skipped.values())


@dataclass(frozen=True, slots=True)
class Statement:
    """One mailbox's message for the period: its parts, one per report it is in."""

    mailbox: str  # lower case: the ledger's recipient
    address: str  # as first spelt: the message's To:
    parts: tuple[UserPart, ...]  # in the run's report order
    locale: str  # the first report's
    pdf: bool  # a one-page PDF attached (any of its reports asks for one)

    @property
    def reports(self) -> list[str]:
        return [part.report for part in self.parts]

    def digest(self, period: str) -> str:
        """What the statement says, as a digest: a statement whose figures are unchanged is
        the same message (same Message-ID and file) on every run, and one whose figures
        moved is a new one."""
        text = repr((self.mailbox, period, self.locale, self.pdf, self.parts))
        return hashlib.sha256(text.encode()).hexdigest()[:24]


def screen(raw: str, policy: StatementPolicy) -> tuple[str, str, None] | tuple[None, None, str]:
    """``(mailbox, address, None)`` for a user who may get a statement, else
    ``(None, None, why)``. The API's ``user_email`` may hold anything: only a valid
    address in one of the policy's domains and not opted out passes."""
    try:
        valid = email_validator.validate_email(raw.strip(), check_deliverability=False)
    except (email_validator.EmailNotValidError, AttributeError):
        return None, None, NOT_AN_ADDRESS
    address = f"{valid.local_part}@{valid.ascii_domain}"
    mailbox = address.lower()
    if valid.ascii_domain.lower() not in policy.domains:
        return None, None, OUTSIDE_DOMAINS
    if mailbox in policy.opt_out:
        return None, None, OPTED_OUT
    return mailbox, address, None


def gather(reports: Iterable[ReportStatements]) -> list[Statement]:
    """One statement per mailbox, with its part of every report it appears in (in the
    order given); the first report's locale and address spelling win."""
    parts: dict[str, list[UserPart]] = {}
    first: dict[str, ReportStatements] = {}
    pdf: dict[str, bool] = {}
    for report in reports:
        for mailbox, part in report.parts.items():
            parts.setdefault(mailbox, []).append(part)
            first.setdefault(mailbox, report)
            pdf[mailbox] = pdf.get(mailbox, False) or report.pdf
    return [
        Statement(
            mailbox,
            first[mailbox].spelt[mailbox],
            tuple(found),
            first[mailbox].locale,
            pdf[mailbox],
        )
        for mailbox, found in parts.items()
    ]
