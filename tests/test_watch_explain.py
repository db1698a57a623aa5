"""An alert explains itself, the same in the email's two parts, Slack and Teams, in en
and es: a spike names the tools and users that made the difference against their own
typical day (not the day's largest), and usage no user accounts for is named as such.
The expected figures are computed here from the scripted usage, independently."""

from __future__ import annotations

import datetime as dt
import html
import json
import math
import re
import statistics
from collections.abc import Iterator
from pathlib import Path

import pytest
from babel.numbers import format_decimal, format_percent
from click.testing import CliRunner

from reporter.cli import cli
from reporter.sandbox import TOOLS, SandboxData, SandboxServer, synthetic_team
from tests.conftest import API_KEY, SmtpServer, raw_usage, write_config
from tests.test_chat import CHANNELS, Platforms, platforms  # noqa: F401  (a fixture)

TEAM = synthetic_team(users=48, seed=7)
BIG, VIDEO, DOWNLOAD = 0, 1, 7  # tools: AI Image Models, Video Generation, Asset Download
STEADY, NEWCOMER, NOBODY = 0, 2, -1  # users: every day, only on the spike day, no user
SPIKE = dt.date(2026, 11, 12)
BUDGET = 150000  # passed half way by Nov 12, and forecast to be passed by the month's end


def parts(day: dt.date) -> list[tuple[int, int, int]]:
    """AI Image Models is the largest every day; on Nov 12 a user who never used Video
    Generation spends 38,000 on it, and unattributed downloads jump from 50 to 3,000."""
    if day == SPIKE:
        return [
            (BIG, STEADY, 5200),
            (VIDEO, NEWCOMER, 38000),
            (VIDEO, 1, 100),
            (DOWNLOAD, NOBODY, 3000),
        ]
    return [(BIG, STEADY, 5000), (VIDEO, 1, 100), (DOWNLOAD, NOBODY, 50)]


DAYS = [dt.date(2026, 10, 1) + dt.timedelta(days=n) for n in range(43)]  # Oct 1 - Nov 12
USAGE = {day: parts(day) for day in DAYS}


def above_typical(index: int) -> list[tuple[str | None, int, float]]:
    """(name, credits on the spike day, its own median of the 28 days before), for the
    tools (index 0) or users (index 1) above their typical day, most above first."""

    def name(part: tuple[int, int, int]) -> str | None:
        if index == 0:
            return TOOLS[part[0]].name
        # A tool without a user breakdown is usage no user accounts for.
        return (
            None
            if part[1] < 0 or not TOOLS[part[0]].has_user_breakdown
            else str(TEAM.emails[part[1]])
        )

    def on(day: dt.date) -> dict[str | None, int]:
        sums: dict[str | None, int] = {}
        for part in USAGE.get(day, []):
            sums[name(part)] = sums.get(name(part), 0) + part[2]
        return sums

    before = [on(SPIKE - dt.timedelta(days=k)) for k in range(1, 29)]
    found = []
    for who, credits in on(SPIKE).items():
        typical = statistics.median(day.get(who, 0) for day in before)
        if credits > typical:
            found.append((who, credits, typical))
    return sorted(found, key=lambda f: f[1] - f[2], reverse=True)[:3]


WORDS = {
    "en": {
        "tools": "Tools above their typical day",
        "users": "Users above their typical day",
        "against": "{name} {credits} credits against a typical {typical}",
        "nobody": "not attributed to a user",
        "ratio": "{day}: {credits} credits, {ratio} times a typical day ({typical} credits,"
        " the median of the 28 days before).",
        "day": "Nov 12, 2026",
        "pace": "{used} of the budget used with {left} days left; at this pace the month ends"
        " at {pace}.",
        "basis": "Forecast for the month: {forecast} credits, from {so_far} credits so far"
        " ÷ {elapsed} days × {days} days in the month.",
        "reached": "At this pace the budget is reached on Nov {day}, 2026.",
    },
    "es": {
        "tools": "Herramientas por encima de su día típico",
        "users": "Usuarios por encima de su día típico",
        "against": "{name} {credits} créditos frente a {typical} en un día típico",
        "nobody": "no atribuido a ningún usuario",
        "ratio": "{day}: {credits} créditos, {ratio} veces un día típico ({typical} créditos,"
        " la mediana de los 28 días anteriores).",
        "day": "12 nov 2026",
        "pace": "{used} del presupuesto usado y quedan {left} días; a este ritmo el mes cierra"
        " en el {pace}.",
        "basis": "Previsión para el mes: {forecast} créditos, a partir de {so_far} créditos"
        " hasta ahora ÷ {elapsed} días × {days} días del mes.",
        "reached": "A este ritmo el presupuesto se alcanza el {day} nov 2026.",
    },
}


def expected_lines(locale: str) -> list[str]:
    words = WORDS[locale]

    def number(value: float) -> str:
        return format_decimal(round(value), format="#,##0", locale=locale)

    day_total = sum(p[2] for p in USAGE[SPIKE])
    typical_day = statistics.median(
        sum(p[2] for p in USAGE[SPIKE - dt.timedelta(days=k)]) for k in range(1, 29)
    )
    ratio = format_decimal(day_total / typical_day, format="#,##0.0", locale=locale)
    lines = [
        words["ratio"].format(
            day=words["day"], credits=number(day_total), ratio=ratio, typical=number(typical_day)
        )
    ]
    for index, label in ((0, "tools"), (1, "users")):
        drivers = [
            words["against"].format(
                name=who if who is not None else words["nobody"],
                credits=number(credits),
                typical=number(typical),
            )
            for who, credits, typical in above_typical(index)
        ]
        lines.append(f"{words[label]}: {'; '.join(drivers)}.")
    # The month so far against BUDGET: the pace under the threshold, the forecast's basis.
    used = sum(p[2] for day in DAYS if day.month == 11 for p in USAGE[day])
    elapsed, length = SPIKE.day, 30
    forecast = used / elapsed * length
    lines.append(
        words["pace"].format(
            used=f"{round(used / BUDGET * 100)}%",
            left=length - elapsed,
            pace=f"{round(forecast / BUDGET * 100)}%",
        )
    )
    lines.append(
        words["basis"].format(
            forecast=number(forecast), so_far=number(used), elapsed=elapsed, days=length
        )
    )
    lines.append(words["reached"].format(day=math.ceil(BUDGET / (used / elapsed))))
    return lines


def unit_cost_line(server: SandboxServer, locale: str) -> str:
    """The spike's main tool against its own typical day, more uses or dearer ones, from the
    API's raw answer: its uses and credits on the day and their medians over the 28 before."""
    answer = raw_usage(
        server,
        {
            "granularity": "day",
            "start_date": (SPIKE - dt.timedelta(days=28)).isoformat(),
            "end_date": SPIKE.isoformat(),
            "group_ids": [20],
        },
    )
    days: dict[str, tuple[int, int]] = {}
    for bucket in answer["data"]:
        for c in bucket["consumptions"]:
            if c["tool"] == "Video Generation":
                days[bucket["date"][:10]] = (c["user_uses"], c["user_credits"])
    before = [days.get((SPIKE - dt.timedelta(days=k)).isoformat(), (0, 0)) for k in range(1, 29)]
    old_uses = statistics.median(u for u, _ in before)
    old_credits = statistics.median(c for _, c in before)
    new_uses, new_credits = days[SPIKE.isoformat()]
    old, new = old_credits / old_uses, new_credits / new_uses
    uses_pct = (new_uses - old_uses) / old_uses * 100
    cost_pct = (new - old) / old * 100
    volume, unit_cost = (new_uses - old_uses) * old, (new - old) * new_uses
    assert volume + unit_cost == pytest.approx(new_credits - old_credits)

    def pct(value: float) -> str:
        return format_percent(abs(value) / 100, "#,##0.0%", locale=locale)

    def one(value: float) -> str:
        return format_decimal(value, "#,##0.0", locale=locale)

    if locale == "en":
        return (
            f"Video Generation against its typical day: {pct(uses_pct)} more uses, and each"
            f" use cost {pct(cost_pct)} more ({one(old)} → {one(new)} credits)."
        )
    return (
        f"Video Generation frente a su día típico: un {pct(uses_pct)} más de usos, y cada uso"
        f" costó un {pct(cost_pct)} más ({one(old)} → {one(new)} créditos)."
    )


@pytest.fixture
def spike_api() -> Iterator[SandboxServer]:
    data = SandboxData(TEAM, today=dt.date(2026, 12, 1))
    data.script_parts(20, USAGE)
    with SandboxServer(data, api_key=API_KEY) as server:
        yield server


@pytest.mark.parametrize("locale", ["en", "es"])
def test_a_spike_names_what_made_the_difference_in_every_place_it_is_read(
    tmp_path: Path,
    spike_api: SandboxServer,
    smtp: SmtpServer,
    platforms: Platforms,  # noqa: F811
    locale: str,
) -> None:
    config = write_config(
        tmp_path / "reports.toml",
        f'[[reports]]\nname = "design"\nowners = ["lead@company.com"]\ngroup_ids = [20]\n'
        f'locale = "{locale}"\nspike_factor = 3\nbudget_credits = {BUDGET}\n'
        "alert_thresholds = [50]\n",
        defaults=CHANNELS,
    )
    env = {"MAGNIFIC_API_KEY": API_KEY, "MAGNIFIC_API_BASE_URL": spike_api.url}
    env |= smtp.env() | platforms.env()
    args = ["watch", "--config", str(config), "--date", SPIKE.isoformat(), "-q"]
    args += ["--out", str(tmp_path / "out"), "--state", str(tmp_path / "state.sqlite3")]
    result = CliRunner().invoke(cli, args, env=env)
    assert result.exit_code == 0, result.output
    lines = [*expected_lines(locale), unit_cost_line(spike_api, locale)]
    # The largest tool and the steady user are not what made the spike: they come last.
    tools = above_typical(0)
    assert tools[0][0] == "Video Generation"
    assert tools[-1][0] == "AI Image Models"
    users = above_typical(1)
    assert [u[0] for u in users] == [str(TEAM.emails[NEWCOMER]), None, str(TEAM.emails[STEADY])]

    (received,) = smtp.recorder.messages
    text = received.message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    page = received.message.get_body(("html",)).get_content()  # type: ignore[union-attr]
    page_text = html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page)))
    (slack,) = platforms.to("/slack/")
    (teams,) = platforms.to("/teams/")
    slack_text = html.unescape(json.dumps(slack.json(), ensure_ascii=False))
    teams_text = json.dumps(teams.json(), ensure_ascii=False)
    for line in lines:
        assert line in text
        assert line in page_text
        assert line in slack_text.replace("\\n", "\n")
        assert line in teams_text
    for place in (text, page_text, slack_text, teams_text):
        assert "unattributed" not in place
        assert "sin atribuir" not in place
