"""``reporter check``: first contact with the API, the mail server and the disk, sending
nothing.

The documentation of the one endpoint we read contradicts itself on the date form and is
silent on whether ``end_date`` is inclusive; a wrong guess fails or shortens every report
on the 1st, in front of its readers. ``check`` finds out beforehand, together with filters
that match nothing and a mail login that is refused.

Each item is a ``Finding``. What an answer means (is the date setting right, does a filter
look wrong) is decided by pure functions on values; ``run_checks`` does the I/O through the
client and sender it is given and collects the findings.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from reporter.budgets import Basis, BudgetChoice
from reporter.chat.post import plain_http
from reporter.config import ApiOptions, ReportConfig, unique_owners
from reporter.environment import api_settings, smtp_settings
from reporter.errors import ApiAuthError, ApiError, DeliveryError, ReporterError, UsageError
from reporter.ledger import Ledger
from reporter.magnific import EndProbe, MagnificClient, RetryPolicy, UsageQuery, UsageResponse
from reporter.mail import SmtpCheck, SmtpSender, needs_smtputf8
from reporter.periods import Period, last_complete_month
from reporter.prices import Prices

Status = Literal["ok", "note", "warn", "skip", "FAIL"]

FILTER_MONTHS = 3
"""Complete months a filter value must show usage in before ``check`` calls it suspect."""

_FILTER_NAMES = {
    "project_references": "project reference",
    "api_key_ids": "API key id",
    "group_ids": "group id",
}


@dataclass(frozen=True, slots=True)
class Finding:
    """One checked item: ``FAIL`` needs attention (exit 1); ``warn`` (something will not
    work for part of what is configured), ``note`` and ``skip`` do not stop a run (exit 0)."""

    status: Status
    item: str
    detail: str
    hint: str | None = None

    def line(self) -> str:
        return f"{self.status:<4}  {self.item}: {self.detail}" + (
            f" Hint: {self.hint}" if self.hint else ""
        )


def exit_status(findings: Sequence[Finding]) -> int:
    return 1 if any(f.status == "FAIL" for f in findings) else 0


def summary_line(findings: Sequence[Finding]) -> str:
    failed = sum(f.status == "FAIL" for f in findings)
    if failed:
        return f"{failed} of {len(findings)} item(s) need attention; nothing was sent."
    warned = sum(f.status == "warn" for f in findings)
    if warned:
        return (
            f"No item failed; {warned} of {len(findings)} has a warning; nothing was sent."
            if warned == 1
            else f"No item failed; {warned} of {len(findings)} have warnings; nothing was sent."
        )
    return f"All {len(findings)} item(s) OK; nothing was sent."


# --- decisions (pure) ----------------------------------------------------------


def date_form_finding(datetime_ok: bool, date_ok: bool, configured: str) -> Finding:
    """What the API's answers to each date form mean for ``[api] date_format``."""
    item = "date format"
    spelled = {
        "datetime": "datetimes (2026-10-01T00:00:00.000Z)",
        "date": "plain dates (2026-10-01)",
    }
    if not (datetime_ok or date_ok):
        return Finding(
            "FAIL",
            item,
            "the API refused the dates in both forms",
            hint="run with -v to see its answers, and report it to Magnific",
        )
    if datetime_ok and date_ok:
        return Finding("ok", item, f"the API accepts {spelled['datetime']} and {spelled['date']}")
    accepted = "datetime" if datetime_ok else "date"
    only = f"the API accepts only {spelled[accepted]}"
    if configured == accepted:
        return Finding("ok", item, f'{only}; [api] date_format = "{accepted}" matches')
    if configured == "auto" and accepted == "datetime":
        return Finding("ok", item, f"{only}; date_format = auto sends them")
    if configured == "auto":
        return Finding(
            "ok",
            item,
            f"{only}; date_format = auto switches to them after one refused request per run",
            hint=f'set [api] date_format = "{accepted}" to skip that request',
        )
    return Finding(
        "FAIL",
        item,
        f'{only}, but [api] date_format = "{configured}": every request would be refused',
        hint=f'set [api] date_format = "{accepted}" or "auto" in the config',
    )


def end_finding(probe: EndProbe, configured: bool | str, date_form: str) -> Finding:
    """What the end probe found, and whether ``[api] end_inclusive`` agrees."""
    item = "end_date"
    if probe.inclusive is None:
        return Finding(
            "note",
            item,
            f"cannot tell whether it is inclusive ({probe.reason}); monthly runs are exact"
            " either way (the day after the end starts its own bucket)",
            hint="run check again on a day after the team has used the API, or set"
            " [api] end_inclusive once you know",
        )
    meaning = "inclusive" if probe.inclusive else "exclusive"
    spelled = "plain" if date_form == "date" else date_form
    found = f"{meaning} with {spelled} dates ({probe.reason})"
    if configured == "auto" or configured is probe.inclusive:
        return Finding(
            "ok", item, found + ("" if probe.inclusive else "; reporter sends the day after")
        )
    loss = (
        "every report would lose its last day"
        if not probe.inclusive
        else "a range that ends inside a week, month or year bucket would gain a day"
    )
    return Finding(
        "FAIL",
        item,
        f"{found}, but [api] end_inclusive = {str(configured).lower()}: {loss}",
        hint=f'set [api] end_inclusive = "auto" or {str(probe.inclusive).lower()}',
    )


FilterValue = tuple[str, str | int]  # ("group_ids", 10)


def filter_values(report: ReportConfig) -> list[FilterValue]:
    return [(name, value) for name, values in report.filters.items() for value in values]


def filter_findings(
    report: str,
    window: str,
    combined_credits: float | None,
    credits_by_value: Mapping[FilterValue, float],
) -> list[Finding]:
    """A report's filters judged by their usage over ``window``.

    ``combined_credits`` is the report's own request (None: it has no filters);
    ``credits_by_value`` each value alone, asked only when the report's request found
    nothing. A value with no usage at all is named: a typo there does not fail a run, it
    sends an empty report every month.
    """
    item = f"report {report}"
    if combined_credits is None:
        return [Finding("ok", item, "no filters: the whole team")]
    if combined_credits > 0:
        return [
            Finding("ok", item, f"its filters match {combined_credits:,.0f} credits in {window}")
        ]
    empty = [value for value, credits in credits_by_value.items() if credits <= 0]
    if not empty:
        return [
            Finding(
                "FAIL",
                item,
                f"each filter has usage in {window}, but together they match none:"
                " is the combination right?",
                hint="filters of different kinds must all hold at once (a project AND a group)",
            )
        ]
    return [
        Finding(
            "FAIL",
            item,
            f"{_FILTER_NAMES[name]} {value} has no usage at all in {window}: is it right?",
            hint=f"check {name} in the config against the Magnific dashboard",
        )
        for name, value in empty
    ]


def smtputf8_finding(owners: Sequence[str], offered: bool, server: str) -> Finding | None:
    """A warning when owners have a UTF-8 local part (RFC 6531) and the mail server does
    not offer SMTPUTF8: no message can be addressed to them there."""
    needing = [owner for owner in owners if needs_smtputf8([owner])]
    if offered or not needing:
        return None
    many = len(needing) > 1
    return Finding(
        "warn",
        "SMTPUTF8",
        f"the mail server {server} does not offer SMTPUTF8, which the owner"
        f" address{'es' if many else ''} {', '.join(needing)} need{'' if many else 's'}:"
        f" {'they get' if many else 'it gets'} no mail",
        hint=f"use an ASCII address for {'these owners' if many else 'this owner'},"
        " or a mail server that offers SMTPUTF8",
    )


def budget_finding(report: str, month: str, budget: BudgetChoice | None) -> Finding:
    """The budget a report's ``month`` is measured against (its own, or budget_credits)."""
    if budget is None:
        return Finding(
            "note",
            f"budget {report}",
            f"none for {month}: budgets has no {month} and there is no budget_credits",
        )
    how = "set for the month" if budget.basis is Basis.SET else "the monthly budget_credits"
    if budget.amount is not None:
        how = f"{budget.amount:,} in money, at each day's price per credit"
    return Finding("ok", f"budget {report}", f"{budget.credits:,.0f} credits for {month} ({how})")


def alert_finding(
    report: str,
    budget: float | None,
    thresholds: Sequence[int],
    forecast: bool,
    spike_factor: float,
    *,
    month: str | None = None,
) -> Finding:
    """Which alerts ``watch`` sends for one report, so nobody counts on one that is off;
    ``month``: the month ``budget`` is for, named when it has none of its own."""
    active = []
    if thresholds:
        shares = ", ".join(f"{t}%" for t in thresholds)
        active.append(f"budget thresholds {shares} of {budget:,.0f} credits")
    if forecast:
        active.append("forecast above the budget")
    if spike_factor > 0:
        active.append(f"spikes at {spike_factor:g}x the typical day")
    if not active:
        return Finding("note", f"alerts {report}", "none: watch sends nothing for this report")
    detail = "; ".join(active)
    if not budget:
        missing = f"no budget for {month}" if month else "no budget_credits"
        detail += f" ({missing}, so no threshold or forecast alerts)"
    return Finding("ok", f"alerts {report}", detail)


def period_finding(report: str, current: Period, default: Period) -> Finding | None:
    """A report billed in cycles: the one in progress and the one ``run`` reports by
    default, so nobody is surprised by the days a report covers; None for calendar months."""
    if not current.is_cycle:
        return None
    return Finding(
        "ok",
        f"period {report}",
        f"billing cycles from day {current.billing_day}: this cycle {current.start} to"
        f" {current.end} (--period {current.month_key}); by default {default.start} to"
        f" {default.end} (--period {default.month_key})",
    )


def money_finding(report: str, prices: Prices | None, today: dt.date) -> Finding | None:
    """The currency and the price per credit in force today (and the next change, if one
    is set), so finance can see what the amounts will be priced at before a run; None for
    a report in credits only."""
    if prices is None:
        return None
    price = prices.on(today)
    later = [(day, p) for day, p in zip(prices.starts, prices.prices, strict=True) if day > today]
    coming = f"; {later[0][1]} {prices.currency} from {later[0][0]}" if later else ""
    if price is None:
        return Finding(
            "warn",
            f"money {report}",
            f"{prices.currency}, but no price in force today{coming}: reports of earlier"
            " periods show no amounts",
            hint="add the price before that date to credit_prices",
        )
    since = max(day for day in prices.starts if day <= today)
    start = "" if since == dt.date.min else f" since {since}"
    detail = f"{prices.currency}, {price} {prices.currency} per credit in force{start}{coming}"
    return Finding("ok", f"money {report}", detail)


def credits_of(response: UsageResponse) -> float:
    return sum(c.user_credits for bucket in response.data for c in bucket.consumptions)


# --- I/O -----------------------------------------------------------------------


def directory_problem(path: Path) -> str | None:
    """Why files cannot be written in directory ``path`` (created when missing), or None.

    Writes one temporary file in the nearest directory that exists, removed at once,
    rather than trusting permission bits (root ignores them; a read-only mount does not).
    """
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return f"{existing} is not a directory"
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as exc:
        return f"cannot write in {existing}: {exc.strerror}"
    return None


def out_finding(out_dir: Path) -> Finding:
    problem = directory_problem(out_dir)
    if problem:
        return Finding(
            "FAIL", f"--out {out_dir}", problem, hint="pass --out with a writable directory"
        )
    return Finding(
        "ok", f"--out {out_dir}", "writable" + ("" if out_dir.exists() else " (will be created)")
    )


def ledger_finding(state_path: Path) -> Finding:
    """An existing ledger is opened as a run would (a foreign or corrupt file is refused);
    a missing one is not created, only its directory checked."""
    item = f"ledger {state_path}"
    if state_path.exists():
        try:
            Ledger(state_path).close()
        except UsageError as exc:
            return Finding("FAIL", item, exc.message, hint=exc.hint)
        return Finding("ok", item, "an existing delivery ledger, opened")
    problem = directory_problem(state_path.parent)
    if problem:
        return Finding("FAIL", item, problem, hint="pass --state with a writable path")
    return Finding("ok", item, "writable (will be created by the first run)")


class Verifier(Protocol):
    def verify(self) -> SmtpCheck: ...


def smtp_findings(make_sender: Callable[[], Verifier], owners: Sequence[str]) -> list[Finding]:
    """Connect, TLS and AUTH as configured, then QUIT: nothing is sent; and whether the
    server takes every owner's address. ``make_sender`` reads the environment, so that a
    missing SMTP_HOST is a finding too."""
    try:
        checked = make_sender().verify()
    except (UsageError, DeliveryError) as exc:
        return [Finding("FAIL", "SMTP", exc.message, hint=exc.hint)]
    findings = [Finding("ok", "SMTP", f"{checked.detail}; nothing sent")]
    warning = smtputf8_finding(owners, "smtputf8" in checked.extensions, checked.server)
    return findings + ([warning] if warning else [])


def chat_findings(
    channels: Mapping[str, Sequence[str]], environ: Mapping[str, str]
) -> list[Finding]:
    """Each webhook variable the reports name is set to an https URL, and a Slack upload has
    its token; nothing is posted (a test message would land in a real channel).
    ``channels``: report -> its chat recipients (``Config.chat_channels_for``)."""
    users: dict[str, list[str]] = {}
    for report, recipients in channels.items():
        for recipient in recipients:
            users.setdefault(recipient, []).append(report)
    findings = []
    for recipient, reports in users.items():
        kind, _, name = recipient.partition(":")
        named_by = f"reports {', '.join(reports)}" if len(reports) > 1 else f"report {reports[0]}"
        if kind == "slack-upload":
            item = f"Slack upload to {name}"
            if environ.get("SLACK_BOT_TOKEN", "").strip():
                findings.append(Finding("ok", item, "SLACK_BOT_TOKEN is set; nothing posted"))
            else:
                findings.append(
                    Finding(
                        "FAIL",
                        item,
                        f"SLACK_BOT_TOKEN is not set ({named_by}, slack_channel)",
                        hint="set SLACK_BOT_TOKEN to a bot token with files:write",
                    )
                )
            continue
        item = f"{'Slack' if kind == 'slack' else 'Teams'} webhook {name}"
        url = environ.get(name, "").strip()
        if not url:
            findings.append(
                Finding(
                    "FAIL",
                    item,
                    f"not set ({named_by}, {kind}_webhook_env)",
                    hint=f"set {name} to the channel's webhook URL",
                )
            )
        elif url.startswith("https://"):
            findings.append(Finding("ok", item, "set to an https URL; nothing posted"))
        elif plain_http(url):  # `run` posts to it too, with the same warning
            findings.append(
                Finding(
                    "warn",
                    item,
                    f"holds a plain http:// URL: posts travel unencrypted ({named_by})",
                    hint=f"set {name} to the https URL the platform gave you",
                )
            )
        elif url.startswith("http://"):
            findings.append(Finding("ok", item, "set to a loopback URL; nothing posted"))
        else:
            findings.append(
                Finding(
                    "FAIL",
                    item,
                    f"does not hold an http(s) URL ({named_by})",
                    hint=f"set {name} to the webhook URL the platform gave you (https://...)",
                )
            )
    return findings


def api_findings(
    client: MagnificClient,
    reports: Sequence[ReportConfig],
    configured: ApiOptions,
    *,
    base_url: str,
    today: dt.date,
) -> list[Finding]:
    """The key, the date form, end_date and each report's filters."""
    try:
        datetime_ok = client.accepts_dates("datetime")
    except ApiAuthError as exc:
        return [Finding("FAIL", "API key", exc.message, hint=exc.hint), _skipped()]
    except ApiError as exc:
        return [Finding("FAIL", "API", exc.message, hint=exc.hint), _skipped()]
    findings = [Finding("ok", "API key", f"accepted by {base_url}")]
    try:
        date_ok = client.accepts_dates("date")
        findings.append(date_form_finding(datetime_ok, date_ok, configured.date_format))
        if not (datetime_ok or date_ok):
            return [*findings, _skipped("end_date and report filters")]
        # End semantics may differ by form: probe in the one a run will send.
        accepted = {"datetime": datetime_ok, "date": date_ok}
        pinned = configured.date_format
        client.use_dates(
            pinned
            if pinned != "auto" and accepted[pinned]
            else "datetime"
            if datetime_ok
            else "date"
        )
        findings.append(end_finding(client.probe_end(), configured.end_inclusive, client.date_form))
    except ApiError as exc:
        return [*findings, Finding("FAIL", "API", exc.message, hint=exc.hint)]
    findings.extend(_report_findings(client, reports, today))
    return findings


def _only(name: str, value: str | int) -> dict[str, list[str] | list[int]]:
    return {name: [int(value)] if name == "group_ids" else [str(value)]}


def _skipped(what: str = "date format, end_date and report filters") -> Finding:
    return Finding("skip", "API", f"{what} not checked")


def _report_findings(
    client: MagnificClient, reports: Sequence[ReportConfig], today: dt.date
) -> list[Finding]:
    last = last_complete_month(today)
    first = last.shifted(1 - FILTER_MONTHS)
    window = f"{first.key}..{last.key}"
    alone: dict[FilterValue, float] = {}

    def credits(filters: Mapping[str, Sequence[str] | Sequence[int]]) -> float:
        query = UsageQuery.for_filters("month", first.start, last.end, filters)
        return credits_of(client.fetch_usage(query))

    findings: list[Finding] = []
    for report in reports:
        try:
            if not report.filters:
                findings.extend(filter_findings(report.name, window, None, {}))
                continue
            combined = credits(report.filters)
            if combined <= 0:
                for name, value in filter_values(report):
                    if (name, value) not in alone:
                        alone[(name, value)] = credits(_only(name, value))
            values = {v: alone[v] for v in filter_values(report) if v in alone}
            findings.extend(filter_findings(report.name, window, combined, values))
        except ReporterError as exc:
            findings.append(Finding("FAIL", f"report {report.name}", exc.message, hint=exc.hint))
    return findings


def run_checks(
    reports: Sequence[ReportConfig],
    configured: ApiOptions,
    *,
    retry: RetryPolicy,
    environ: Mapping[str, str],
    out_dir: Path,
    state_path: Path,
    today: dt.date,
    channels: Mapping[str, Sequence[str]] | None = None,
    alerts: Sequence[Finding] = (),
) -> list[Finding]:
    """Every item, in the order a user fixes them: API, mail, chat, disk; then the
    alerts each report has (``alert_finding``), which need no fixing."""
    findings: list[Finding] = []
    try:
        api = api_settings(environ)
    except UsageError as exc:
        findings += [Finding("FAIL", "API key", exc.message, hint=exc.hint), _skipped()]
    else:
        # Always "auto" here: check reports what the API does, then whether [api] agrees.
        policy = dataclasses.replace(retry, date_format="auto", end_inclusive="auto")
        with MagnificClient(api, retry=policy, today=lambda: today) as client:
            findings += api_findings(
                client, reports, configured, base_url=api.base_url, today=today
            )
    owners = unique_owners([owner for report in reports for owner in report.owners])
    findings.extend(smtp_findings(lambda: SmtpSender(smtp_settings(environ)), owners))
    findings.extend(chat_findings(channels or {}, environ))
    findings.append(out_finding(out_dir))
    findings.append(ledger_finding(state_path))
    findings.extend(alerts)
    return findings
