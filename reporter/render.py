"""Jinja -> HTML (pure), with Babel doing the locale; ``reporter.printer`` prints it.

Templates are plain Jinja and CSS under a templates directory that users can
copy and restyle (``--templates DIR``). Translations live beside them as
gettext ``.po`` files, compiled in memory when first used, so a translator
edits one text file and nothing needs building.
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import io
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import jinja2
from babel import Locale, dates, numbers, support
from babel.messages import mofile, pofile

from reporter.errors import RenderError
from reporter.insights import Insight, Split
from reporter.periods import Period, PeriodKind

log = logging.getLogger(__name__)

MINUS = "\u2212"


# --- locale ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Formatter:
    """Numbers, percentages and dates in one locale, through Babel."""

    locale: str

    def number(self, value: float | int | None) -> str:
        if value is None:
            return "–"
        return numbers.format_decimal(round(float(value)), format="#,##0", locale=self.locale)

    def decimal(self, value: float, digits: int = 1) -> str:
        return numbers.format_decimal(value, format="#,##0." + "0" * digits, locale=self.locale)

    def share(self, value: float | None, digits: int = 1) -> str:
        """A share of a whole, ``23.6%`` (``113%`` with ``digits=0``)."""
        if value is None:
            return "–"
        pattern = "#,##0" + ("." + "0" * digits if digits else "") + "%"
        return numbers.format_percent(value / 100, format=pattern, locale=self.locale)

    def change(self, value: float | None) -> str:
        """A signed change, ``+12.3%`` or ``−4.0%``; a dash when there is nothing to compare."""
        if value is None or math.isnan(value):
            return "–"
        text = numbers.format_percent(abs(value) / 100, format="#,##0.0%", locale=self.locale)
        if round(value, 1) == 0:
            return text
        return ("+" if value > 0 else MINUS) + text

    def signed(self, value: float) -> str:
        """A signed whole number of credits, ``+21,300`` or ``−4,100``."""
        text = self.number(abs(value))
        if round(value) == 0:
            return text
        return ("+" if value > 0 else MINUS) + text

    def per_use(self, value: float | None) -> str:
        """Credits per use, ``12.6``; a dash for a row without uses."""
        if value is None or not math.isfinite(value):
            return "–"
        return self.decimal(value, 1)

    def money(self, amount: Decimal | None, currency: str) -> str:
        """An amount already rounded to its currency's unit: ``€1,234.56``, ``1.234,56 €``."""
        if amount is None:
            return "–"
        return numbers.format_currency(amount, currency, locale=self.locale)

    def price(self, price: Decimal, currency: str) -> str:
        """A price per credit with all its digits, ``€0.0045``: not rounded to cents."""
        return numbers.format_currency(
            price, currency, locale=self.locale, decimal_quantization=False
        )

    def date(self, value: dt.date, style: str = "medium") -> str:
        return dates.format_date(value, format=style, locale=self.locale)

    def day_month(self, value: dt.date) -> str:
        return dates.format_skeleton("MMMd", value, locale=self.locale)

    def datetime_utc(self, value: dt.datetime) -> str:
        return (
            dates.format_datetime(value, format="medium", tzinfo=dt.UTC, locale=self.locale)
            + " UTC"
        )

    def period(self, period: Period, gettext: Callable[[str], str]) -> str:
        """``October 2026``, ``Week 43, 2026``, ``Q3 2026``, ``2026``; a billing cycle by
        its dates, ``Nov 15 – Dec 14, 2026``."""
        if period.is_cycle:
            return self.date_range(period.start, period.end)
        if period.kind is PeriodKind.MONTH:
            return dates.format_skeleton("yMMMM", period.start, locale=self.locale)
        if period.kind is PeriodKind.WEEK:
            year, week, _ = period.start.isocalendar()
            return gettext("Week %(week)s, %(year)s") % {"week": week, "year": year}
        if period.kind is PeriodKind.QUARTER:
            return gettext("Q%(quarter)s %(year)s") % {
                "quarter": (period.start.month - 1) // 3 + 1,
                "year": period.start.year,
            }
        return str(period.start.year)

    def period_short(self, period: Period, gettext: Callable[[str], str]) -> str:
        """Axis labels for the history: ``Oct 26``, ``W43``, ``Q3 26``, ``2026``; a cycle's
        first day, ``Nov 15``."""
        if period.is_cycle:
            return dates.format_skeleton("MMMd", period.start, locale=self.locale)
        if period.kind is PeriodKind.MONTH:
            return dates.format_skeleton("MMMyy", period.start, locale=self.locale)
        if period.kind is PeriodKind.WEEK:
            return gettext("W%(week)s") % {"week": period.start.isocalendar()[1]}
        if period.kind is PeriodKind.QUARTER:
            return gettext("Q%(quarter)s %(year)s") % {
                "quarter": (period.start.month - 1) // 3 + 1,
                "year": period.start.year,
            }
        return str(period.start.year)

    def date_range(self, start: dt.date, end: dt.date) -> str:
        return dates.format_interval(start, end, skeleton="yMMMd", locale=self.locale)

    def span(self, start: dt.date, end: dt.date, *, within: Period) -> str:
        """Days compared with a period in progress, ``Oct 1 – 24``; with the year when it
        is not ``within``'s (``Dec 28 – 30, 2026`` for a week of 2027)."""
        skeleton = "MMMd" if start.year == end.year == within.start.year else "yMMMd"
        return dates.format_interval(start, end, skeleton=skeleton, locale=self.locale)


def supported_locale(locale: str) -> str:
    try:
        Locale.parse(locale)
    except (ValueError, TypeError) as exc:
        raise RenderError(f"unknown locale {locale!r}") from exc
    return locale


@functools.lru_cache(maxsize=16)
def translations(templates_dir: Path, locale: str) -> support.NullTranslations:
    """The gettext catalogue for ``locale``, compiled in memory from its ``.po`` file."""
    path = templates_dir / "locale" / locale / "LC_MESSAGES" / "messages.po"
    if not path.exists():
        return support.NullTranslations()
    with path.open("rb") as handle:
        catalog = pofile.read_po(handle, locale=locale)
    buffer = io.BytesIO()
    mofile.write_mo(buffer, catalog)
    buffer.seek(0)
    return support.Translations(buffer)


# --- HTML --------------------------------------------------------------------


@functools.lru_cache(maxsize=8)
def _environment(templates_dir: Path) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir)),
        # Escape HTML templates (report.html.j2, email.html.j2), not the plain-text mail.
        autoescape=jinja2.select_autoescape(
            enabled_extensions=("html", "html.j2", "xml"),
            default_for_string=True,
            default=False,
        ),
        extensions=["jinja2.ext.i18n"],
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["solid"] = solid
    return env


@functools.lru_cache(maxsize=64)
def solid(colour: str) -> str:
    """A one-pixel PNG of ``colour``, as a data: URL: the page's in-table bars and tool
    swatches are backgrounds of their cells stretched from it (report.html.j2). The printer
    draws such a background as one image; a box in the cell was most of a millisecond of
    layout, and an image sized in CSS is the one background it can size (a one-colour
    gradient fills the whole cell, whatever its size says)."""
    from PIL import Image  # WeasyPrint's own image library, imported once it is needed

    image = io.BytesIO()
    try:
        Image.new("RGB", (1, 1), colour).save(image, "PNG")
    except ValueError:
        raise RenderError(
            f"not a colour: {colour!r}", hint="give bars and swatches a colour as #RRGGBB"
        ) from None
    return "data:image/png;base64," + base64.b64encode(image.getvalue()).decode("ascii")


def render_template(templates_dir: Path, name: str, locale: str, context: dict[str, Any]) -> str:
    """Render one template in one locale; the ``fmt`` formatter and ``_`` are in scope."""
    env = _environment(templates_dir)
    catalog = translations(templates_dir, locale)
    try:
        template = env.get_template(name)
        fmt = Formatter(locale)
        return template.render(
            **context,
            fmt=fmt,
            locale=locale,
            _=catalog.gettext,
            gettext=catalog.gettext,
            ngettext=catalog.ngettext,
        )
    except jinja2.TemplateNotFound as exc:
        raise RenderError(
            f"template {exc.name!r} not found in {templates_dir}",
            hint="--templates must point at a copy of the templates/ directory",
        ) from None
    except jinja2.TemplateError as exc:
        where = f"{getattr(exc, 'filename', None) or name}:{getattr(exc, 'lineno', '?')}"
        raise RenderError(f"template error in {where}: {exc}") from None


def sentence(
    insight: Insight,
    fmt: Formatter,
    gettext: Callable[[str], str],
    ngettext: Callable[[str, str, int], str],
    amount: str | None = None,
) -> str:
    """One plain sentence for an insight, in the report's language; ``amount`` (formatted)
    is the money of the credits it states, said beside them where a change is stated."""
    v = insight.values
    if insight.kind == "budget_over":
        return gettext("Over budget: %(used)s credits used of %(limit)s (%(pct)s over).") % {
            "used": fmt.number(v["used"]),
            "limit": fmt.number(v["limit"]),
            "pct": fmt.share(v["pct"]),
        }
    if insight.kind == "budget_at_risk":
        return gettext(
            "At this pace the period ends at %(forecast)s credits, above the budget of %(limit)s."
        ) % {"forecast": fmt.number(v["forecast"]), "limit": fmt.number(v["limit"])}
    if insight.kind == "total_changed" and v.get("span"):
        spans = {
            (True, False): gettext("Credits rose %(pct)s to %(credits)s against %(days)s."),
            (False, False): gettext("Credits fell %(pct)s to %(credits)s against %(days)s."),
            (True, True): gettext(
                "Credits rose %(pct)s to %(credits)s (%(amount)s) against %(days)s."
            ),
            (False, True): gettext(
                "Credits fell %(pct)s to %(credits)s (%(amount)s) against %(days)s."
            ),
        }
        return spans[(v["pct"] >= 0, amount is not None)] % {
            "pct": fmt.share(abs(v["pct"])),
            "credits": fmt.number(v["credits"]),
            "amount": amount,
            "days": fmt.span(*v["span"], within=v["period"]),
        }
    if insight.kind == "forecast":
        return gettext(
            "At this pace the period ends at %(forecast)s credits, %(change)s against %(period)s."
        ) % {
            "forecast": fmt.number(v["forecast"]),
            "change": fmt.change(v["pct"]),
            "period": fmt.period(v["period"], gettext),
        }
    if insight.kind == "total_changed":
        totals = {
            (True, False): gettext(
                "Credits rose %(pct)s to %(credits)s against the previous period."
            ),
            (False, False): gettext(
                "Credits fell %(pct)s to %(credits)s against the previous period."
            ),
            (True, True): gettext(
                "Credits rose %(pct)s to %(credits)s (%(amount)s) against the previous period."
            ),
            (False, True): gettext(
                "Credits fell %(pct)s to %(credits)s (%(amount)s) against the previous period."
            ),
        }
        return totals[(v["pct"] >= 0, amount is not None)] % {
            "pct": fmt.share(abs(v["pct"])),
            "credits": fmt.number(v["credits"]),
            "amount": amount,
        }
    if insight.kind in ("tool_grew", "tool_fell"):
        # (grew, has a split, has an amount)
        templates = {
            (True, False, False): gettext("%(tool)s grew %(pct)s to %(credits)s credits."),
            (False, False, False): gettext("%(tool)s fell %(pct)s to %(credits)s credits."),
            (True, True, False): gettext(
                "%(tool)s grew %(pct)s to %(credits)s credits: %(split)s."
            ),
            (False, True, False): gettext(
                "%(tool)s fell %(pct)s to %(credits)s credits: %(split)s."
            ),
            (True, False, True): gettext(
                "%(tool)s grew %(pct)s to %(credits)s credits (%(amount)s)."
            ),
            (False, False, True): gettext(
                "%(tool)s fell %(pct)s to %(credits)s credits (%(amount)s)."
            ),
            (True, True, True): gettext(
                "%(tool)s grew %(pct)s to %(credits)s credits (%(amount)s): %(split)s."
            ),
            (False, True, True): gettext(
                "%(tool)s fell %(pct)s to %(credits)s credits (%(amount)s): %(split)s."
            ),
        }
        return _moved(insight, "tool", templates, fmt, gettext, amount)
    if insight.kind == "tool_gone":
        return gettext("%(tool)s was not used this period (%(previous)s credits before).") % {
            "tool": v["tool"],
            "previous": fmt.number(v["previous"]),
        }
    if insight.kind == "tool_new":
        template = (
            gettext("%(tool)s is new this period: %(credits)s credits.")
            if amount is None
            else gettext("%(tool)s is new this period: %(credits)s credits (%(amount)s).")
        )
        return template % {"tool": v["tool"], "credits": fmt.number(v["credits"]), "amount": amount}
    if insight.kind == "user_share":
        return gettext("%(user)s used %(share)s of all credits (%(credits)s).") % {
            "user": v["user"],
            "share": fmt.share(v["share"]),
            "credits": fmt.number(v["credits"]),
        }
    if insight.kind == "user_grew":
        return gettext("%(user)s grew %(pct)s to %(credits)s credits.") % {
            "user": v["user"],
            "pct": fmt.share(abs(v["pct"])),
            "credits": fmt.number(v["credits"]),
        }
    if insight.kind in ("project_grew", "project_fell"):
        templates = {
            (True, False, False): gettext(
                "Project %(project)s grew %(pct)s to %(credits)s credits."
            ),
            (False, False, False): gettext(
                "Project %(project)s fell %(pct)s to %(credits)s credits."
            ),
            (True, True, False): gettext(
                "Project %(project)s grew %(pct)s to %(credits)s credits: %(split)s."
            ),
            (False, True, False): gettext(
                "Project %(project)s fell %(pct)s to %(credits)s credits: %(split)s."
            ),
            (True, False, True): gettext(
                "Project %(project)s grew %(pct)s to %(credits)s credits (%(amount)s)."
            ),
            (False, False, True): gettext(
                "Project %(project)s fell %(pct)s to %(credits)s credits (%(amount)s)."
            ),
            (True, True, True): gettext(
                "Project %(project)s grew %(pct)s to %(credits)s credits (%(amount)s): %(split)s."
            ),
            (False, True, True): gettext(
                "Project %(project)s fell %(pct)s to %(credits)s credits (%(amount)s): %(split)s."
            ),
        }
        return _moved(insight, "project", templates, fmt, gettext, amount)
    if insight.kind == "new_users":
        names = ", ".join(v["names"])
        more = v["count"] - len(v["names"])
        return ngettext(
            "%(count)s new user this period (%(names)s), %(credits)s credits.",
            "%(count)s new users this period (%(names)s), %(credits)s credits.",
            v["count"],
        ) % {
            "count": v["count"],
            "names": names + (f" +{more}" if more > 0 else ""),
            "credits": fmt.number(v["credits"]),
        }
    if insight.kind == "spike":
        return gettext(
            "%(date)s was a peak day: %(credits)s credits, %(ratio)s times a usual day."
        ) % {
            "date": fmt.day_month(v["date"]),
            "credits": fmt.number(v["credits"]),
            "ratio": fmt.decimal(v["ratio"]),
        }
    if insight.kind == "unattributed":
        return gettext("%(share)s of credits are not attributed to any user.") % {
            "share": fmt.share(v["share"])
        }
    raise RenderError(f"no sentence for insight {insight.kind!r}")


def _moved(
    insight: Insight,
    name: str,
    templates: dict[tuple[bool, bool, bool], str],
    fmt: Formatter,
    gettext: Callable[[str], str],
    amount: str | None,
) -> str:
    """A tool's or project's change, by (grew, has a split, has an amount): the split
    clause and what explains most of it when the insight carries one."""
    v = insight.values
    split: Split | None = v.get("split")
    values = {
        name: v[name],
        "pct": fmt.share(abs(v["pct"])),
        "credits": fmt.number(v["credits"]),
        "amount": amount,
    }
    template = templates[(insight.kind.endswith("_grew"), split is not None, amount is not None)]
    if split is None:
        return template % values
    return with_lead(
        template % {**values, "split": split_clause(split, fmt, gettext)}, split, fmt, gettext
    )


def split_clause(split: Split, fmt: Formatter, gettext: Callable[[str], str]) -> str:
    """ "18.0% more uses, and each use cost 20.0% more (10.5 → 12.6 credits)"."""
    uses = (
        gettext("%(pct)s more uses") if split.uses_pct >= 0 else gettext("%(pct)s fewer uses")
    ) % {"pct": fmt.share(abs(split.uses_pct))}
    cost = (
        gettext("each use cost %(pct)s more")
        if split.per_use_pct >= 0
        else gettext("each use cost %(pct)s less")
    ) % {"pct": fmt.share(abs(split.per_use_pct))}
    return gettext("%(uses)s, and %(cost)s (%(old)s → %(new)s credits)") % {
        "uses": uses,
        "cost": cost,
        "old": fmt.per_use(split.old_per_use),
        "new": fmt.per_use(split.new_per_use),
    }


def with_lead(text: str, split: Split, fmt: Formatter, gettext: Callable[[str], str]) -> str:
    """The sentence, and which effect explains most of the move when one does."""
    if split.lead == "volume":
        return (
            text
            + " "
            + gettext("Most of the change is in the number of uses (%(credits)s credits).")
            % {"credits": fmt.signed(split.volume)}
        )
    if split.lead == "unit_cost":
        return (
            text
            + " "
            + gettext("Most of the change is in what each use cost (%(credits)s credits).")
            % {"credits": fmt.signed(split.unit_cost)}
        )
    return text
