"""The TOML config: read the file (I/O), then parse the mapping (pure).

The schema is a contract with users' config files; unknown keys are refused
with a suggestion rather than ignored, because a misspelt filter silently
widens a report to the whole team.
"""

from __future__ import annotations

import datetime as dt
import difflib
import email.utils
import tomllib
import uuid
from collections.abc import Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal, Self

import email_validator
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    NonNegativeFloat,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from reporter.budgets import (
    BudgetChoice,
    BudgetFileError,
    BudgetSheet,
    choose_budget,
    month_problem,
    months_of,
    parse_budgets_csv,
)
from reporter.errors import ConfigError, UsageError
from reporter.periods import Period, cycle, cycle_containing, in_cycles, last_complete_cycle
from reporter.prices import Prices
from reporter.statements import StatementPolicy

Locale = Literal["en", "es"]
PdfVariant = Literal["pdf/ua-1", "pdf/a-3b"]
# The NAME of an environment variable holding a webhook URL: the URL is a secret and
# never lives in the config file.
EnvName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")]
# A Slack channel id (C0123ABCD), which files.completeUploadExternal takes; not "#name".
SlackChannel = Annotated[str, Field(pattern=r"^[A-Z0-9]{2,32}$")]
Percent = Annotated[int, Field(ge=1, le=1000)]


def _domain(name: str) -> str:
    """A mail domain as addresses spell it after ``smtp_address``: IDNA, lower case."""
    try:
        valid = email_validator.validate_email(f"x@{name}", check_deliverability=False)
    except email_validator.EmailNotValidError as exc:
        raise ValueError(f"{name!r} is not a mail domain such as company.com ({exc})") from None
    return valid.ascii_domain.lower()


Domain = Annotated[str, AfterValidator(_domain)]
DEFAULT_THRESHOLDS = (80, 100)
# Money per credit: above zero, and no finer than a millionth of the currency's unit.
Price = Annotated[Decimal, Field(gt=0, max_digits=18, decimal_places=10)]
# A budget in money: zero or more, to a millionth of the currency's unit.
Amount = Annotated[Decimal, Field(ge=0, max_digits=18, decimal_places=6)]


def _iso_currency(code: str) -> str:
    from babel.numbers import is_currency

    if not is_currency(code):
        raise ValueError(f"{code!r} is not an ISO 4217 currency code such as EUR or USD")
    return code


Currency = Annotated[str, AfterValidator(_iso_currency)]


class _Pricing(BaseModel):
    """``currency`` with ``credit_price``, or ``credit_prices`` (a price from each date):
    in [defaults], or a report's own, which then replaces the defaults' whole pricing."""

    currency: Currency | None = None
    credit_price: Price | None = None
    credit_prices: Annotated[dict[dt.date, Price], Field(min_length=1)] | None = None

    @model_validator(mode="after")
    def _one_kind_of_price(self) -> Self:
        if self.credit_price is not None and self.credit_prices is not None:
            raise ValueError(
                "credit_price and credit_prices are both set; keep credit_price for one"
                " price, or credit_prices for a price from each date"
            )
        return self

    @property
    def has_price(self) -> bool:
        return self.credit_price is not None or self.credit_prices is not None


# The validation context's set of reports with rows in the budgets CSV.
BUDGETED_REPORTS = "budgeted_reports"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class EmailSettings(_Model):
    from_: str = Field(alias="from", min_length=3)
    one_mail_per_owner: bool = False
    reply_to: EmailStr | None = None

    @field_validator("from_")
    @classmethod
    def _valid_sender(cls, value: str) -> str:
        if "\n" in value or "\r" in value:
            raise ValueError("must be one line")
        _, address = email.utils.parseaddr(value)
        try:
            email_validator.validate_email(address, check_deliverability=False)
        except email_validator.EmailNotValidError as exc:
            raise ValueError(f"not a valid sender address: {exc}") from None
        return value


# The day a plan renews on; a period is then a billing cycle (15: Nov 15 - Dec 14). On
# 29-31, a shorter month's cycle starts on its last day.
BillingDay = Annotated[int, Field(ge=1, le=31)]


class Defaults(_Pricing, _Model):
    locale: Locale = "en"
    billing_day: BillingDay = 1  # 1: calendar months
    top_users: Annotated[int, Field(ge=1, le=100)] = 10
    pdf_variant: PdfVariant = "pdf/ua-1"
    # `reporter watch`; None: the built-in default (see ReportConfig)
    alert_thresholds: list[Percent] | None = None
    forecast_alert: bool | None = None
    spike_factor: Annotated[float, Field(ge=0, le=1000)] = 3.0
    # `reporter run --recheck`: a delivered total that moved more than this is corrected
    correction_threshold_percent: Annotated[float, Field(ge=0, le=100)] = 0.5
    # finance's monthly budgets, report,period,budget_credits; relative to the config file
    budgets_csv: Annotated[str, Field(min_length=1)] | None = None
    # chat channels beside email; each report may override them
    slack_webhook_env: EnvName | None = None
    teams_webhook_env: EnvName | None = None
    slack_channel: SlackChannel | None = None
    # personal statements (see reporter.statements); each report may override them
    statements: bool = False
    statement_domains: list[Domain] | None = None
    statement_opt_out: list[EmailStr] = []
    statement_pdf: bool = False
    statement_team_total: bool = False


class ApiOptions(_Model):
    """How hard to try the Magnific API; the defaults suit a monthly unattended run."""

    max_attempts: Annotated[int, Field(ge=1, le=20)] = 5
    initial_wait_seconds: Annotated[float, Field(gt=0, le=60)] = 0.5
    max_wait_seconds: Annotated[float, Field(gt=0, le=600)] = 30.0
    total_timeout_seconds: Annotated[float, Field(gt=0, le=3600)] = 180.0
    connect_timeout_seconds: Annotated[float, Field(gt=0, le=300)] = 10.0
    read_timeout_seconds: Annotated[float, Field(gt=0, le=600)] = 60.0
    max_in_flight: Annotated[int, Field(ge=1, le=32)] = 4
    # A 5,000-person team's month by day is under 200 MB of JSON; 512 leaves room to
    # grow while a runaway body stops long before it exhausts the host's memory.
    max_response_mb: Annotated[int, Field(ge=1, le=16384)] = 512
    # The documentation types dates as YYYY-MM-DD but sends datetimes, and never says
    # whether end_date is inclusive: "auto" finds out (see MagnificClient).
    date_format: Literal["auto", "datetime", "date"] = "auto"
    end_inclusive: Literal["auto"] | bool = "auto"


class ReportConfig(_Pricing, _Model):
    name: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")]
    title: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    owners: Annotated[list[EmailStr], Field(min_length=1)]
    project_references: list[uuid.UUID] = []
    group_ids: list[Annotated[int, Field(ge=1)]] = []
    api_key_ids: list[Annotated[str, Field(min_length=1)]] = []
    budget_credits: NonNegativeFloat | None = None  # per month; prorated for other periods
    budgets: dict[str, NonNegativeFloat] = {}  # "YYYY-MM" -> credits, overrides budget_credits
    # The same in money (the currency's): turned into credits at each day's price
    budget_amount: Amount | None = None
    budget_amounts: dict[str, Amount] = {}
    locale: Locale | None = None
    billing_day: BillingDay | None = None  # None: [defaults]'s
    top_users: Annotated[int, Field(ge=1, le=100)] | None = None
    # `reporter watch`: each None falls back to [defaults], then to the built-in default
    alert_thresholds: list[Percent] | None = None  # [80, 100] with a budget; [] turns off
    forecast_alert: bool | None = None  # on with a budget
    spike_factor: Annotated[float, Field(ge=0, le=1000)] | None = None  # 3.0; 0 turns off
    correction_threshold_percent: Annotated[float, Field(ge=0, le=100)] | None = None
    # chat channels beside email; None falls back to [defaults]
    slack_webhook_env: EnvName | None = None
    teams_webhook_env: EnvName | None = None
    slack_channel: SlackChannel | None = None
    # personal statements; each None falls back to [defaults]
    statements: bool | None = None
    statement_domains: list[Domain] | None = None
    statement_opt_out: list[EmailStr] | None = None
    statement_pdf: bool | None = None
    statement_team_total: bool | None = None
    # The report's name before a rename: what its owners already got under that name
    # (monthly reports, alerts, chat posts) counts as theirs, and is not sent again.
    renamed_from: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")] | None = None

    @field_validator("owners")
    @classmethod
    def _sendable_owners(cls, owners: list[str]) -> list[str]:
        return unique_owners([smtp_address(owner) for owner in owners])

    @field_validator("budgets", "budget_amounts")
    @classmethod
    def _months(cls, budgets: dict[str, Any]) -> dict[str, Any]:
        for month in budgets:
            problem = month_problem(month)
            if problem:
                raise ValueError(f"{month!r}: {problem}")
        return budgets

    @model_validator(mode="after")
    def _alerts_need_a_budget(self, info: ValidationInfo) -> ReportConfig:
        """A report's own threshold or forecast alert without a budget would never fire:
        say so rather than let its owners count on an alert that cannot come. (Defaults
        in [defaults] simply do not apply to a report without a budget.) Rows of the
        budgets CSV count: ``parse_config`` names their reports in the context."""
        if self.budget_credits is not None and self.budget_amount is not None:
            raise ValueError(
                "budget_credits and budget_amount are both set; give the monthly budget in"
                " credits or in money, not both"
            )
        both = sorted(set(self.budgets) & set(self.budget_amounts))
        if both:
            raise ValueError(
                f"budgets and budget_amounts both set {both[0]}; give a month's budget in"
                " credits or in money, not both"
            )
        budgeted = (info.context or {}).get(BUDGETED_REPORTS, ())
        if self.has_budget or self.name in budgeted:
            return self
        if self.alert_thresholds:
            raise ValueError(
                "alert_thresholds: needs budget_credits or budgets (a threshold is a share"
                " of the budget); set budget_credits, or remove alert_thresholds"
            )
        if self.forecast_alert:
            raise ValueError(
                "forecast_alert: needs budget_credits or budgets (the forecast is compared"
                " with the budget); set budget_credits, or remove forecast_alert"
            )
        return self

    @property
    def has_budget(self) -> bool:
        """Some month has a budget: in credits or in money, its own or the monthly one."""
        return bool(
            self.budget_credits or self.budgets or self.budget_amount or self.budget_amounts
        )

    @property
    def display_title(self) -> str:
        return self.title or self.name

    @property
    def filters(self) -> dict[str, list[str] | list[int]]:
        """The report's API filters, spelled as the API wants them; empty ones left out."""
        filters: dict[str, list[str] | list[int]] = {}
        if self.project_references:
            filters["project_references"] = [str(ref) for ref in self.project_references]
        if self.api_key_ids:
            filters["api_key_ids"] = list(self.api_key_ids)
        if self.group_ids:
            filters["group_ids"] = list(self.group_ids)
        return filters


class Config(_Model):
    email: EmailSettings
    defaults: Defaults = Defaults()
    api: ApiOptions = ApiOptions()
    reports: Annotated[list[ReportConfig], Field(min_length=1)]

    @model_validator(mode="after")
    def _unique_names(self) -> Config:
        seen: dict[str, int] = {}
        for index, report in enumerate(self.reports):
            if report.name in seen:
                raise ValueError(
                    f"reports[{index}] ({report.name!r}): name: already used by"
                    f" reports[{seen[report.name]}]; report names must be unique"
                )
            seen[report.name] = index
        for index, report in enumerate(self.reports):
            old = report.renamed_from
            if old is None:
                continue
            if old == report.name:
                raise ValueError(
                    f"reports[{index}] ({report.name!r}): renamed_from: is the report's own"
                    " name; remove renamed_from"
                )
            if old in seen:
                raise ValueError(
                    f"reports[{index}] ({report.name!r}): renamed_from: {old!r} is still the"
                    f" name of reports[{seen[old]}]; a report can only take over a name no"
                    " longer in use"
                )
        for index, report in enumerate(self.reports):
            priced = report.has_price or self.defaults.has_price
            if (report.budget_amount is not None or report.budget_amounts) and not priced:
                raise ValueError(
                    f"reports[{index}] ({report.name!r}): budget_amount: a budget in money needs"
                    " a price per credit to be turned into credits; set currency and"
                    " credit_price (or credit_prices), or give budget_credits instead"
                )
            if priced and not (report.currency or self.defaults.currency):
                raise ValueError(
                    f"reports[{index}] ({report.name!r}): currency: needed with a credit price;"
                    ' set currency = "EUR" (or your ISO 4217 code) in [defaults] or the report'
                )
            policy = self.statements_for(report)
            if policy is not None and not policy.domains:
                raise ValueError(
                    f"reports[{index}] ({report.name!r}): statement_domains: needed with"
                    " statements = true (only addresses in those domains ever get a"
                    ' statement); set statement_domains = ["company.com"] in [defaults] or'
                    " the report"
                )
        olds = [r.renamed_from for r in self.reports if r.renamed_from]
        twice = sorted({o for o in olds if olds.count(o) > 1})
        if twice:
            raise ValueError(
                f"renamed_from: {twice[0]!r} is named by more than one report; only one"
                " report can take over an old name"
            )
        return self

    @property
    def renames(self) -> dict[str, str]:
        """Old report name -> the name it now goes by (``renamed_from``)."""
        return {r.renamed_from: r.name for r in self.reports if r.renamed_from}

    def report(self, name: str) -> ReportConfig:
        for report in self.reports:
            if report.name == name:
                return report
        raise KeyError(name)

    def prices_for(self, report: ReportConfig) -> Prices | None:
        """The report's price per credit, its own or else [defaults]'; None: credits only."""
        pricing: _Pricing = report if report.has_price else self.defaults
        currency = report.currency or self.defaults.currency
        if not pricing.has_price or currency is None:
            return None
        if pricing.credit_prices is not None:
            return Prices.schedule(currency, pricing.credit_prices)
        assert pricing.credit_price is not None
        return Prices(currency, (dt.date.min,), (pricing.credit_price,))

    def locale_for(self, report: ReportConfig) -> str:
        return report.locale or self.defaults.locale

    def billing_day_for(self, report: ReportConfig) -> int:
        return report.billing_day or self.defaults.billing_day

    def period_for(self, report: ReportConfig, period: Period | None, today: dt.date) -> Period:
        """The report's period on its own calendar: ``period`` (as typed, a calendar
        period) made a billing cycle where the report has one, or by default the last
        complete one. A cycle that has not started by ``today`` is refused."""
        billing_day = self.billing_day_for(report)
        if period is None:
            return last_complete_cycle(today, billing_day)
        own = in_cycles(period, billing_day)
        if own.start > today:
            raise UsageError(
                f"period {period.key} of report {report.name!r} is the billing cycle"
                f" {own.start.isoformat()} to {own.end.isoformat()}, which has not started"
                f" yet (today is {today.isoformat()})",
                hint="choose a period whose cycle has started; the default is the last"
                " complete cycle",
            )
        return own

    def period_containing(self, report: ReportConfig, day: dt.date) -> Period:
        """The report's month (or billing cycle) that ``day`` is in: what ``watch`` watches."""
        return cycle_containing(day, self.billing_day_for(report))

    def top_users_for(self, report: ReportConfig) -> int:
        return report.top_users or self.defaults.top_users

    def budget_for(self, report: ReportConfig, period: Period) -> BudgetChoice | None:
        """The report's budget for ``period``: its months' ``budgets`` (the TOML's and the
        CSV's), else ``budget_credits``; None when a month has neither."""
        prices = self.prices_for(report)
        if prices is None or not (report.budget_amount is not None or report.budget_amounts):
            return choose_budget(period, report.budgets, report.budget_credits)

        def in_credits(month: str, amount: Decimal) -> float | None:
            # The month's days, or the billing cycle's that starts in it.
            days = cycle(int(month[:4]), int(month[5:]), period.billing_day)
            return prices.credits_for(amount, days.start, days.end)

        def monthly(month: str) -> float | None:
            if report.budget_amount is not None:
                return in_credits(month, report.budget_amount)
            return report.budget_credits

        own = dict(report.budgets)
        for month, amount in report.budget_amounts.items():
            credits = in_credits(month, amount)
            if credits is not None:
                own[month] = credits
        amounts = dict(report.budget_amounts)
        if report.budget_amount is not None:
            amounts = {m: amounts.get(m, report.budget_amount) for m in months_of(period)}
            for month in report.budgets:  # a month set in credits is not in money
                amounts.pop(month, None)
        return choose_budget(period, own, monthly, amounts)

    def thresholds_for(self, report: ReportConfig) -> list[int]:
        """Budget thresholds to alert at; none without a budget to take a share of (a
        month without one of its own then has none: see ``budget_for``)."""
        if not report.has_budget:
            return []
        for chosen in (report.alert_thresholds, self.defaults.alert_thresholds):
            if chosen is not None:
                return sorted(set(chosen))
        return list(DEFAULT_THRESHOLDS)

    def forecast_alert_for(self, report: ReportConfig) -> bool:
        if not report.has_budget:
            return False
        for chosen in (report.forecast_alert, self.defaults.forecast_alert):
            if chosen is not None:
                return chosen
        return True

    def spike_factor_for(self, report: ReportConfig) -> float:
        if report.spike_factor is not None:
            return report.spike_factor
        return self.defaults.spike_factor

    def chat_channels_for(self, report: ReportConfig) -> list[str]:
        """The report's chat channels as ledger recipients: ``slack:<VARIABLE>``,
        ``teams:<VARIABLE>`` (the variable's name, never its URL) and
        ``slack-upload:<channel id>`` for the PDF upload."""
        slack = report.slack_webhook_env or self.defaults.slack_webhook_env
        teams = report.teams_webhook_env or self.defaults.teams_webhook_env
        channel = report.slack_channel or self.defaults.slack_channel
        channels = []
        if slack:
            channels.append(f"slack:{slack}")
        if teams:
            channels.append(f"teams:{teams}")
        if channel:
            channels.append(f"slack-upload:{channel}")
        return channels

    def statements_for(self, report: ReportConfig) -> StatementPolicy | None:
        """Who of the report's users get a personal statement, and what it shows; None
        when the report sends none. Each setting is the report's, else [defaults]'."""
        d = self.defaults

        def pick(own: Any, default: Any) -> Any:
            return default if own is None else own

        if not pick(report.statements, d.statements):
            return None
        domains = pick(report.statement_domains, d.statement_domains) or []
        opt_out = pick(report.statement_opt_out, d.statement_opt_out)
        return StatementPolicy(
            domains=frozenset(domains),
            opt_out=frozenset(smtp_address(a).lower() for a in opt_out),
            pdf=pick(report.statement_pdf, d.statement_pdf),
            team_total=pick(report.statement_team_total, d.statement_team_total),
        )

    def correction_threshold_for(self, report: ReportConfig) -> float:
        if report.correction_threshold_percent is not None:
            return report.correction_threshold_percent
        return self.defaults.correction_threshold_percent


def smtp_address(address: str) -> str:
    """The address as SMTP carries it: an internationalised domain in IDNA (punycode),
    which every server accepts; a UTF-8 local part stays, and needs SMTPUTF8 to be sent."""
    valid = email_validator.validate_email(address, check_deliverability=False)
    return f"{valid.local_part}@{valid.ascii_domain}"


def unique_owners(owners: Sequence[str]) -> list[str]:
    """Each owner once, in the first spelling given: "Ann <ann@x.com>" and "ANN@X.COM"
    are one inbox, which should get one message and count once in the summary."""
    seen: dict[str, str] = {}
    for owner in owners:
        seen.setdefault(owner.lower(), owner)
    return list(seen.values())


def load_config(path: Path) -> Config:
    """Read and parse the config file at ``path``."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: config file not found",
            path=str(path),
            hint="pass --config with the path of your TOML config (see config/example.toml)",
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc}", path=str(path)) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(
            f"{path}: invalid TOML: {exc}",
            path=str(path),
            hint="fix the syntax at the line shown",
        ) from None
    budgets = _read_budgets_csv(path, data)
    return parse_config(data, source=str(path), budgets=budgets)


_BUDGETS_HINT = (
    "the budgets CSV has the columns report,period,budget_credits: one row per report and"
    " month (YYYY-MM), the budget a number of credits, 0 or more"
)


def _read_budgets_csv(path: Path, data: Mapping[str, Any]) -> tuple[str, BudgetSheet] | None:
    """The CSV ``[defaults] budgets_csv`` names (relative to the config file's directory),
    parsed, with the path errors name it by; None when there is none."""
    defaults = data.get("defaults")
    name = defaults.get("budgets_csv") if isinstance(defaults, dict) else None
    if not isinstance(name, str) or not name:
        return None  # none, or not a string: the schema says so
    csv_path = path.parent / name
    try:
        text = csv_path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"{csv_path}: budgets file not found (budgets_csv in [defaults] of {path})",
            path=str(csv_path),
            hint="budgets_csv is a path relative to the config file's directory, or absolute",
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"{csv_path}: cannot read budgets file: {exc}", path=str(csv_path)
        ) from None
    try:
        return str(csv_path), parse_budgets_csv(text)
    except BudgetFileError as exc:
        raise ConfigError(f"{csv_path}: {exc}", path=str(csv_path), hint=_BUDGETS_HINT) from None


def parse_config(
    data: Mapping[str, Any], *, source: str, budgets: tuple[str, BudgetSheet] | None = None
) -> Config:
    """Validate a config mapping; errors name the file, the report and the field.
    ``budgets``: the budgets CSV (its path, as errors name it, and its rows), whose rows
    join the reports' ``budgets`` tables."""
    budgeted = {row.report for row in budgets[1].rows} if budgets else set()
    try:
        config = Config.model_validate(data, context={BUDGETED_REPORTS: budgeted})
    except ValidationError as exc:
        # A misspelt key also makes the real one "missing": name the typo first.
        errors = sorted(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")
        first = _describe(errors[0], data)
        more = f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})"
        raise ConfigError(
            f"{source}: {first}{more if len(errors) > 1 else ''}",
            path=source,
            hint="see config/example.toml for the expected format",
        ) from None
    return _with_budgets(config, *budgets, source=source) if budgets else config


def _with_budgets(config: Config, csv_path: str, sheet: BudgetSheet, *, source: str) -> Config:
    """The config with the CSV's rows in its reports' ``budgets``; a row for a report the
    config does not have, or for a month the report's own table already sets, is refused."""
    in_money = sheet.column == "budget_amount"
    index = {report.name: i for i, report in enumerate(config.reports)}
    field = "budget_amounts" if in_money else "budgets"
    merged = {r.name: dict(r.budget_amounts if in_money else r.budgets) for r in config.reports}
    for row in sheet.rows:
        where = f"{csv_path}: line {row.line}"
        if row.report not in index:
            close = difflib.get_close_matches(row.report, list(index), n=1, cutoff=0.6)
            raise ConfigError(
                f"{where}, column 'report': no report named {row.report!r} in {source}"
                + (f"; did you mean {close[0]!r}?" if close else ""),
                path=csv_path,
                hint="each row's report must be the name of one of the config's [[reports]]",
            )
        i = index[row.report]
        report = config.reports[i]
        if row.month in report.budgets or row.month in report.budget_amounts:
            table = "budgets" if row.month in report.budgets else "budget_amounts"
            raise ConfigError(
                f"{where}, column 'period': {row.report} {row.month} is also set in the"
                f" {table} table of reports[{i}] ({row.report!r}) in {source}",
                path=csv_path,
                hint="set each month's budget in one place: the CSV or the report's table",
            )
        if in_money and config.prices_for(report) is None:
            raise ConfigError(
                f"{where}, column 'budget_amount': a budget in money for {row.report!r} needs"
                " a price per credit to be turned into credits",
                path=csv_path,
                hint=f"set currency and credit_price (or credit_prices) for {row.report!r},"
                " or give the budgets in a budget_credits column",
            )
        merged[row.report][row.month] = Decimal(repr(row.value)) if in_money else row.value
    reports = [r.model_copy(update={field: merged[r.name]}) for r in config.reports]
    return config.model_copy(update={"reports": reports})


def _describe(error: Mapping[str, Any], data: Mapping[str, Any]) -> str:
    loc: Sequence[str | int] = error["loc"]
    where = _location(loc, data)
    kind = error["type"]
    if kind == "extra_forbidden":
        key = str(loc[-1])
        suggestion = _suggest(key, loc[:-1])
        return f"{where}: unknown key {key!r}" + (
            f"; did you mean {suggestion!r}?" if suggestion else ""
        )
    if kind == "missing":
        return f"{where}: required key is missing"
    message = str(error["msg"]).removeprefix("Value error, ")
    if kind == "string_pattern_mismatch" and loc and loc[-1] == "name":
        message = "must be a lowercase slug: a-z, 0-9, '-' and '_', starting with a letter or digit"
    if kind == "string_pattern_mismatch" and loc and str(loc[-1]).endswith("_webhook_env"):
        # Not echoed: a webhook URL pasted here by mistake is a secret.
        return f"{where}: must be the NAME of an environment variable that holds the webhook URL"
    if kind == "string_pattern_mismatch" and loc and loc[-1] == "slack_channel":
        message = "must be a Slack channel id such as C0123ABCD (not #name)"
    if not loc:
        return message
    value = error.get("input")
    shown = f" (got {value!r})" if isinstance(value, str | int | float) and loc else ""
    return f"{where}: {message}{shown}"


def _location(loc: Sequence[str | int], data: Mapping[str, Any]) -> str:
    """``reports[1] 'marketing': owners[0]``: the report by index and by name."""
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int) and parts:
            parts[-1] += f"[{item}]"
        else:
            parts.append("from" if item == "from_" else str(item))
    if len(loc) >= 2 and loc[0] == "reports" and isinstance(loc[1], int):
        reports = data.get("reports")
        name = None
        if (
            isinstance(reports, list)
            and loc[1] < len(reports)
            and isinstance(reports[loc[1]], dict)
        ):
            name = reports[loc[1]].get("name")
        head = f"reports[{loc[1]}]" + (f" ({name!r})" if isinstance(name, str) else "")
        rest = ".".join(parts[1:]).removeprefix(f"[{loc[1]}]").lstrip(".")
        return f"{head}: {rest}" if rest else head
    return ".".join(parts) if parts else "config"


def _suggest(key: str, parent: Sequence[str | int]) -> str | None:
    model: type[BaseModel] = Config
    for item in parent:
        if isinstance(item, int):
            continue
        field = model.model_fields.get(item)
        if field is None:
            return None
        annotation = field.annotation
        inner = getattr(annotation, "__args__", (annotation,))
        candidates = [a for a in inner if isinstance(a, type) and issubclass(a, BaseModel)]
        if not candidates:
            return None
        model = candidates[0]
    names = [f.alias or n for n, f in model.model_fields.items()]
    matches = difflib.get_close_matches(key, names, n=1, cutoff=0.6)
    return matches[0] if matches else None
