"""The records a run passes between its stages: small, frozen where they can be, and
picklable. They live apart from the stages that make and read them, so that none of
those stages imports another for its types alone."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path


@dataclass(frozen=True, slots=True)
class MailFile:
    """A message on disk, ready to send: the run keeps its path, never its bytes."""

    reports: list[str]
    recipients: list[str]
    path: Path
    message_id: str
    # The ledger's ``message`` rows it delivers: ("report",) or alerts ("alert:...", ...).
    kinds: tuple[str, ...] = ("report",)
    # The version of each report it carries (see ``Ledger.new_version``); none for alerts.
    versions: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Written:
    """What a run keeps of a report once its files are written."""

    report: str
    credits: float
    pdf_path: Path
    csv_path: Path
    mails: tuple[MailFile, ...]  # its own messages; none when its owners get one mail each
    piece_path: Path | None  # its part of the owners' mails, with one_mail_per_owner
    chat: tuple[ChatFile, ...] = ()  # its payloads for its chat channels
    version: int | None = None  # the version it is (None: a dry run or preview)
    amount: tuple[Decimal, str] | None = None  # its total's amount and currency, if priced


@dataclass(frozen=True, slots=True)
class ChatFile:
    """One channel's payload on disk, ready to post: small and picklable."""

    report: str
    recipient: str  # slack:<VARIABLE>, teams:<VARIABLE> or slack-upload:<channel>
    path: Path  # the JSON payload
    pdf_path: Path | None = None  # what a slack-upload sends
    kinds: tuple[str, ...] = ("report",)  # the ledger's message rows it delivers
    version: int | None = None  # the report's version (None: alerts, dry runs)

    @property
    def versions(self) -> dict[str, int]:
        return {} if self.version is None else {self.report: self.version}


@dataclass
class Sent:
    """What delivery achieved, per recipient."""

    delivered: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # recipient -> why
    unconfirmed: list[str] = field(default_factory=list)  # handed over, never acknowledged

    def add(self, other: Sent) -> None:
        self.delivered.extend(other.delivered)
        self.failed.update(other.failed)
        self.unconfirmed.extend(other.unconfirmed)
