"""What a chat message says, before any platform's format: built from the same view model
as the PDF and the email, so the three never disagree. Pure."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from reporter.render import Formatter

if TYPE_CHECKING:
    from reporter.alert_text import AlertMoney

# The email lists every insight; a chat message is read at a glance.
MAX_INSIGHTS = 5

Gettext = Callable[[str], str]


@dataclass(frozen=True, slots=True)
class ChatMessage:
    """A summary as plain text pieces; each platform escapes and lays them out itself."""

    title: str
    subtitle: str
    facts: tuple[tuple[str, str], ...]  # (label, value), e.g. ("Credits used", "12,345")
    list_title: str
    items: tuple[str, ...]  # the "what changed" sentences, or an alert's headlines
    link: tuple[str, str] | None  # (label, url) of the run, where the PDF is
    footer: str
    notice: str = ""  # shown first and prominently: a correction's "first sent ... now ..."

    def plain_text(self) -> str:
        """The whole message as plain lines: Slack's notification fallback and the
        comment of an uploaded PDF."""
        lines = [self.title, self.notice, self.subtitle]
        lines += [f"{label}: {value}" for label, value in self.facts]
        if self.items:
            lines.append(f"{self.list_title}:")
            lines += [f"• {item}" for item in self.items]
        if self.link:
            lines.append(f"{self.link[0]}: {self.link[1]}")
        return "\n".join(line for line in lines if line)


def run_url(environ: Mapping[str, str]) -> str | None:
    """The GitHub Actions run that made the report, whose artefacts hold the PDF:
    ``$GITHUB_SERVER_URL/$GITHUB_REPOSITORY/actions/runs/$GITHUB_RUN_ID``, when all are set."""
    parts = [environ.get(n, "").strip() for n in ("GITHUB_SERVER_URL", "GITHUB_REPOSITORY")]
    run_id = environ.get("GITHUB_RUN_ID", "").strip()
    if not all(parts) or not run_id:
        return None
    return f"{parts[0].rstrip('/')}/{parts[1]}/actions/runs/{run_id}"


def report_message(
    context: Mapping[str, Any],
    *,
    locale: str,
    gettext: Gettext,
    link: str | None,
) -> ChatMessage:
    """A monthly report's summary from its view model (``report.build_context``)."""
    fmt = Formatter(locale)
    totals = context["totals"]
    credits = fmt.number(totals.credits)
    if totals.change_pct is not None:
        credits += f" ({fmt.change(totals.change_pct)} {context['compare_label']})"
    facts = [(gettext("Credits used"), credits)]
    money = context.get("money")
    if money:
        amount = fmt.money(money.total, money.currency)
        if money.forecast is not None:
            amount += " · " + gettext("forecast %(n)s") % {
                "n": fmt.money(money.forecast, money.currency)
            }
        facts.append((gettext("Amount"), amount))
    if context.get("forecast_label"):
        facts.append((gettext("Forecast"), str(context["forecast_label"])))
    budget = context.get("budget")
    if budget:
        used = gettext("%(used)s of %(limit)s credits") % {
            "used": fmt.number(budget.used),
            "limit": fmt.number(budget.limit),
        }
        facts.append((gettext("Budget"), f"{used} ({fmt.share(budget.used_pct)})"))
    if context.get("empty"):
        items: Sequence[str] = [gettext("No usage was recorded in this period.")]
    else:
        items = [str(i["text"]) for i in context.get("insights", [])][:MAX_INSIGHTS] or [
            gettext("Nothing stands out: usage is in line with the previous period.")
        ]
    title = gettext("%(title)s — credit usage, %(period)s") % {
        "title": context["title"],
        "period": context["period_name"],
    }
    correction = context.get("correction")
    notice = ""
    if correction:
        title = gettext("Corrected: %(subject)s") % {"subject": title}
        notice = gettext(
            "Corrected report: the last report sent showed %(sent)s credits;"
            " late usage data brings the total to %(current)s."
        ) % {
            "sent": fmt.number(correction["sent"]),
            "current": fmt.number(correction["current"]),
        }
    return ChatMessage(
        title=title,
        subtitle=str(context["period_range"]),
        facts=tuple(facts),
        list_title=gettext("What changed"),
        items=tuple(items),
        link=(gettext("The run and its PDF report"), link) if link else None,
        footer=gettext("Sent by reporter from Magnific API data."),
        notice=notice,
    )


def alert_message(
    *,
    title: str,
    headline: str,
    items: Sequence[str],
    month: str,
    as_of: str,
    used: float,
    budget: float | None,
    forecast: float | None,
    locale: str,
    gettext: Gettext,
    link: str | None,
    money: AlertMoney | None = None,
) -> ChatMessage:
    """An alert of ``reporter watch``: what is due, with what explains each alert
    (``items``, from ``alert_text``, as the email says it), and the month so far; with
    ``money``, its amounts as the email shows them."""
    fmt = Formatter(locale)
    facts = [(gettext("Credits used"), fmt.number(used))]
    if money is not None:
        facts.append((gettext("Amount"), money.used_text))
    if budget:
        used_text = gettext("%(used)s of %(limit)s credits") % {
            "used": fmt.number(used),
            "limit": fmt.number(budget),
        }
        facts.append((gettext("Budget"), f"{used_text} ({fmt.share(used / budget * 100)})"))
    if forecast is not None:
        ahead = fmt.number(forecast)
        if money is not None and money.forecast is not None:
            ahead += f" · {money.forecast}"
        facts.append((gettext("Forecast"), ahead))
    return ChatMessage(
        title=f"{title}: {headline}",
        subtitle=gettext("%(month)s, data through %(day)s (complete days, UTC)")
        % {"month": month, "day": as_of},
        facts=tuple(facts),
        list_title=gettext("Alerts"),
        items=tuple(items),
        link=(gettext("The run"), link) if link else None,
        footer=gettext("Sent by reporter watch from Magnific API data."),
    )
