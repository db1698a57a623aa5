"""What a run did, per report, as data and as the two texts people read.

The terminal summary and the GitHub job summary are the same facts in two
shapes; keeping both here, pure, means they cannot drift apart.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

LABELS = {
    "pending": "pending",
    "delivered": "delivered",
    "already_delivered": "already delivered",
    "written": "written",
    "failed": "FAILED",
    "partial": "PARTLY FAILED",
    "unconfirmed": "UNCONFIRMED",
    "taken": "taken by another run",
    "previewed": "preview sent",
    "quiet": "no alert due",  # `reporter watch`: nothing to say about this report today
    "unchanged": "unchanged",  # `reporter run --recheck`: the delivered total still holds
    "not_delivered": "not delivered",  # `reporter run --recheck`: nothing sent to correct
}
OK = (
    "delivered",
    "already_delivered",
    "written",
    "taken",
    "previewed",
    "quiet",
    "unchanged",
    "not_delivered",
)


@dataclass
class Outcome:
    """What happened to one report in this run, for the summary and the exit status."""

    report: str
    status: str  # a key of LABELS
    detail: str = ""
    credits: float | None = None
    files: list[Path] = field(default_factory=list)
    amount: tuple[Decimal, str] | None = None  # the credits' amount and currency, if priced
    recipients: list[str] = field(default_factory=list)
    statements: str = ""  # its personal statements: "statements: 41 sent, 2 skipped"

    @property
    def described(self) -> str:
        """The detail, with what became of its statements."""
        return "; ".join(part for part in (self.detail, self.statements) if part)

    @property
    def ok(self) -> bool:
        """Nothing for this run to do again: delivered, already had, or another live run's."""
        return self.status in OK

    @property
    def label(self) -> str:
        return LABELS.get(self.status, self.status)

    @property
    def credits_text(self) -> str:
        return f"{self.credits:,.0f}" if self.credits is not None else "-"

    def line(self) -> str:
        """One line for logs: ``marketing: delivered, 12,345 credits (sent to 2 owners)``."""
        credits = f", {self.credits_text} credits" if self.credits is not None else ""
        detail = f" ({self.described})" if self.described else ""
        return f"{self.report}: {self.label}{credits}{detail}"


def _money(amount: tuple[Decimal, str] | None) -> str:
    """``€404.28``: in English, as the rest of the job summary is."""
    if amount is None:
        return "-"
    from babel.numbers import format_currency

    return format_currency(amount[0], amount[1], locale="en")


def _verdict(outcomes: Sequence[Outcome]) -> str:
    failed = sum(not o.ok for o in outcomes)
    text = f"{len(outcomes) - failed} of {len(outcomes)} report(s) OK"
    if failed:
        text += f"; {failed} failed: run again to retry them (delivered ones are not resent)"
    return text


def text_summary(outcomes: Sequence[Outcome], period_key: str, shard: str = "") -> str:
    """The aligned table printed at the end of every run."""
    rows = [(o.report, o.credits_text, o.label, o.described) for o in outcomes]
    header = ("report", "credits", "status", "")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(3)]
    lines = [f"Period {period_key}" + (f", shard {shard}" if shard else "") + ":"]
    for name, credits, status, detail in rows:
        lines.append(
            f"  {name:<{widths[0]}}  {credits:>{widths[1]}}  {status:<{widths[2]}}"
            f"  {detail}".rstrip()
        )
    lines.append(_verdict(outcomes))
    return "\n".join(lines)


def _cell(text: str) -> str:
    """Markdown table cells: a report detail may hold a pipe or a newline from a server."""
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ").strip()


# An address as a server or the config may write it (``<ann@x.com>``, ``ann@x.com:``).
_ADDRESS = re.compile(r"[^\s@,;:<>()\[\]\"']+@[^\s@,;:<>()\[\]\"']+")


def without_addresses(text: str) -> str:
    """``text`` with every email address replaced by "an owner": a job summary is read by
    everyone who can see the repository's runs, which in a public one is everybody."""
    return _ADDRESS.sub("an owner", text)


def markdown_summary(outcomes: Sequence[Outcome], period_key: str, shard: str = "") -> str:
    """The same table for ``$GITHUB_STEP_SUMMARY``, with a total row; report names, figures
    and what happened, never an owner's address."""
    title = f"### Credit usage reports, {period_key}" + (f" (shard {shard})" if shard else "")
    # An Amount column once any report has a price; its total only in a single currency.
    priced = [o.amount for o in outcomes if o.amount is not None]
    amount_head = (" Amount |", " --: |") if priced else ("", "")
    lines = [
        title,
        "",
        f"| Report | Credits |{amount_head[0]} Status | Detail |",
        f"| :-- | --: |{amount_head[1]} :-- | :-- |",
    ]
    for o in outcomes:
        status = o.label if o.ok else f"**{o.label}**"
        detail = _cell(without_addresses(o.described))
        amount = f" {_money(o.amount)} |" if priced else ""
        lines.append(f"| {_cell(o.report)} | {o.credits_text} |{amount} {status} | {detail} |")
    counted = [o.credits for o in outcomes if o.credits is not None]
    if counted:
        currencies = {currency for _, currency in priced}
        total = ""
        if len(currencies) == 1:
            summed = sum((a for a, _ in priced), Decimal(0))
            total = f" **{_money((summed, currencies.pop()))}** |"
        elif priced:
            total = " (several currencies) |"
        lines.append(f"| **Total** | **{sum(counted):,.0f}** |{total} | |")
    lines += ["", _verdict(outcomes), ""]
    return "\n".join(lines)
