"""A report's tables cut into each user's statement lines. Pure.

The rows are the report's own (``ReportTables.detail`` and the comparison
period's ``previous_detail``), so statements cost no API request of their own,
and a user's figures add up to exactly what the report counts for them.
"""

from __future__ import annotations

import logging
from decimal import Decimal

import pandas as pd

from reporter.money import allocate, exact_amounts
from reporter.prices import Prices
from reporter.statements import (
    ReportStatements,
    StatementPolicy,
    ToolLine,
    UserPart,
    screen,
)
from reporter.usage import ReportTables

log = logging.getLogger(__name__)

_SEP = "\x1f"  # joins a mailbox and a tool into one key (neither holds it)


def report_statements(
    name: str,
    title: str,
    locale: str,
    tables: ReportTables,
    prices: Prices | None,
    policy: StatementPolicy,
) -> ReportStatements:
    """Each user of the report with credits in the period, as the part of a statement
    it gives them; users the policy leaves out are counted by reason. Addresses that
    differ only by case are one mailbox, their rows summed."""
    detail = tables.detail[tables.detail["user"].notna()]
    previous = tables.previous_detail
    if previous is None:
        previous = detail.iloc[:0]
    previous = previous[previous["user"].notna()]
    raw_users = pd.unique(pd.concat([detail["user"], previous["user"]], ignore_index=True))
    mailbox_of: dict[str, str] = {}
    spelt: dict[str, str] = {}
    why_not: dict[str, str] = {}
    for raw in raw_users:
        mailbox, address, why = screen(str(raw), policy)
        if mailbox is None or address is None:
            why_not[str(raw)] = str(why)
            continue
        mailbox_of[str(raw)] = mailbox
        spelt.setdefault(mailbox, address)
    current = _by_mailbox_tool(detail, mailbox_of)
    before = _by_mailbox_tool(previous, mailbox_of)
    spent = current.groupby(level=0)["credits"].sum()
    due = set(spent[spent > 0].index)
    merged = current.merge(
        before, how="outer", left_index=True, right_index=True, suffixes=("", "_before")
    ).fillna(0)
    merged = merged[merged.index.get_level_values(0).isin(due)]
    amounts = _amounts(detail, mailbox_of, due, tables, prices)
    team_credits = team_amount = None
    if policy.team_total:
        team_credits = tables.totals.credits
        if amounts is not None and prices is not None:
            exact = exact_amounts(tables.detail, "tool", prices)
            team_amount = prices.round(sum(exact.values(), Decimal(0)))
    lines: dict[str, list[ToolLine]] = {}
    for (mailbox, tool), uses, credits, uses_before, credits_before in zip(
        merged.index,
        merged["uses"].to_numpy(),
        merged["credits"].to_numpy(),
        merged["uses_before"].to_numpy(),
        merged["credits_before"].to_numpy(),
        strict=True,
    ):
        amount = amounts[0].get(mailbox, {}).get(tool) if amounts else None
        lines.setdefault(mailbox, []).append(
            ToolLine(
                str(tool),
                int(uses),
                float(credits),
                int(uses_before),
                float(credits_before),
                amount if amount is not None or amounts is None else Decimal(0),
            )
        )
    parts = {
        mailbox: UserPart(
            name,
            title,
            tuple(sorted(found, key=lambda x: (-x.credits, -x.previous_credits, x.tool))),
            amounts[1][mailbox] if amounts else None,
            prices.currency if amounts and prices else None,
            team_credits,
            team_amount,
        )
        for mailbox, found in lines.items()
    }
    # Users with usage only in the comparison period are neither sent one nor "skipped".
    spending = set(pd.unique(detail["user"]))
    skipped: dict[str, list[str]] = {}
    for raw, why in why_not.items():
        if raw in spending:
            skipped.setdefault(why, []).append(raw)
    for why, who in skipped.items():
        log.warning("%s: %d user(s) get no statement: %s", name, len(who), why)
    return ReportStatements(
        name,
        locale,
        policy.pdf,
        parts,
        {m: spelt[m] for m in parts},
        {why: tuple(sorted(who)) for why, who in skipped.items()},
    )


def _by_mailbox_tool(rows: pd.DataFrame, mailbox_of: dict[str, str]) -> pd.DataFrame:
    """Uses and credits by (mailbox, tool), for the users that may get a statement."""
    mailbox = rows["user"].map(mailbox_of)
    kept = rows.assign(mailbox=mailbox)[mailbox.notna()]
    return kept.groupby(["mailbox", "tool"], sort=False)[["uses", "credits"]].sum()


def _amounts(
    detail: pd.DataFrame,
    mailbox_of: dict[str, str],
    due: set[str],
    tables: ReportTables,
    prices: Prices | None,
) -> tuple[dict[str, dict[str, Decimal]], dict[str, Decimal]] | None:
    """Each user's tools in money, rounded so that they add up to the user's rounded
    amount; None without a price for every day of the period."""
    if prices is None or not prices.covers(tables.period.start):
        return None
    mailbox = detail["user"].map(mailbox_of)
    kept = detail[mailbox.isin(due)]
    lines = mailbox[kept.index].astype(str) + _SEP + kept["tool"].astype(str)
    exact = exact_amounts(kept.assign(line=lines), "line", prices) if len(kept) else {}
    per_user: dict[str, dict[str, Decimal]] = {}
    for line, amount in exact.items():
        if line is None:
            continue
        user, _, tool = line.partition(_SEP)
        per_user.setdefault(user, {})[tool] = amount
    rounded: dict[str, dict[str, Decimal]] = {}
    totals: dict[str, Decimal] = {}
    for user, tools in per_user.items():
        rounded[user], totals[user] = allocate(tools, prices)
    for user in due - totals.keys():
        rounded[user], totals[user] = {}, Decimal(0)
    return rounded, totals
