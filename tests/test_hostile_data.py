"""Answers that are valid HTTP but hostile or wrong data, through the whole pipeline.

The stand-in API answers as usual, then a "doctor" rewrites its JSON the way a broken
or malicious upstream might; the reports (PDF text, the CSV read back with the csv
module) are checked against figures computed here from the doctored JSON itself.
"""

from __future__ import annotations

import csv
import email
import email.policy
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from reporter.cli import cli
from reporter.sandbox import PROJECTS, Fault, SandboxData, SandboxServer
from tests.conftest import API_KEY, pdf_text, raw_usage, reporter, total_credits, write_config
from tests.test_magnific import bytes_sent

PERIOD = "2026-10"
DETAIL = {"granularity": "day", "start_date": "2026-10-01", "end_date": "2026-10-31"}

Doctor = Callable[[dict[str, Any], dict[str, Any]], None]


def _no_change(body: dict[str, Any], payload: dict[str, Any]) -> None:
    """The API's answer as it is."""


@dataclass
class DoctoredApi(SandboxServer):
    """The stand-in API with every successful answer rewritten by ``doctor`` first."""

    doctor: Doctor = field(default=_no_change)

    def respond(self, body: Any) -> tuple[int, bytes]:
        status, content = super().respond(body)
        if status != 200:
            return status, content
        payload = json.loads(content)
        self.doctor(body, payload)
        return status, json.dumps(payload).encode()


@pytest.fixture
def doctored(sandbox_data: SandboxData) -> Iterator[DoctoredApi]:
    with DoctoredApi(sandbox_data, api_key=API_KEY) as server:
        yield server


TEAM = """
[[reports]]
name = "team"
owners = ["manager@company.com"]
"""


def dry_run(tmp_path: Path, api: SandboxServer, reports: str = TEAM) -> tuple[int, str, Path]:
    """``reporter run --dry-run`` in this process; exit status, stderr and the out folder."""
    config = write_config(tmp_path / "reports.toml", reports)
    out = tmp_path / "out"
    args = ["run", "--config", str(config), "--period", PERIOD, "--out", str(out), "--dry-run"]
    env = {"MAGNIFIC_API_KEY": API_KEY, "MAGNIFIC_API_BASE_URL": api.url}
    result = CliRunner().invoke(cli, args, env=env, catch_exceptions=False)
    return result.exit_code, result.stderr, out / PERIOD


def csv_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def credits_in(rows: list[dict[str, str]]) -> float:
    return sum(float(row["credits"]) for row in rows)


# --- buckets outside the requested period -------------------------------------------

FAR_AWAY = ("2031-01-01", "2019-05-02")
GHOST = "ghost@company.com"


def add_far_away_buckets(body: dict[str, Any], payload: dict[str, Any]) -> None:
    """Buckets dated years from any range asked for, heavy enough to dwarf a month."""
    for day in FAR_AWAY:
        payload["data"].append(
            {
                "date": f"{day}T00:00:00.000Z",
                "consumptions": [
                    {
                        "tool": "AI Image Models",
                        "user_uses": 1000,
                        "user_credits": 777_777,
                        "user_usages": [
                            {"user_email": GHOST, "user_uses": 1000, "user_credits": 777_777}
                        ],
                    }
                ],
            }
        )


def test_buckets_outside_the_period_are_dropped_with_a_warning_never_counted(
    tmp_path: Path, doctored: DoctoredApi
) -> None:
    doctored.doctor = add_far_away_buckets
    raw = raw_usage(doctored, DETAIL)
    in_period = sum(
        c["user_credits"]
        for b in raw["data"]
        if "2026-10-01" <= b["date"][:10] <= "2026-10-31"
        for c in b["consumptions"]
    )
    assert total_credits(raw) == in_period + 2 * 777_777  # the answer does carry them

    code, stderr, out = dry_run(tmp_path, doctored)

    assert code == 0, stderr
    assert "dropped 2 buckets outside 2026-10-01..2026-10-31: 2031-01-01, 2019-05-02" in stderr
    text = pdf_text(out / "team.pdf")
    assert f"{in_period:,}" in text
    assert f"{total_credits(raw):,}" not in text
    rows = csv_rows(out / "team.csv")
    assert credits_in(rows) == in_period
    assert {row["date"][:7] for row in rows} == {PERIOD}
    assert GHOST not in (out / "team.csv").read_text(encoding="utf-8")


# --- a user breakdown larger than its tool total ---------------------------------------


def double_the_breakdown(body: dict[str, Any], payload: dict[str, Any]) -> None:
    """Every user row of the period's first ten days counted twice, as a buggy join would."""
    if body.get("granularity") != "day":
        return
    for bucket in payload["data"]:
        if bucket["date"][:10] > "2026-10-10":
            continue
        for consumption in bucket["consumptions"]:
            for row in consumption.get("user_usages", []):
                row["user_uses"] *= 2
                row["user_credits"] *= 2


def breakdown_excess(payload: dict[str, Any]) -> int:
    """Credits the named user rows claim beyond their tool's total, bucket by bucket."""
    excess = 0
    for bucket in payload["data"]:
        for consumption in bucket["consumptions"]:
            named = sum(
                row["user_credits"]
                for row in consumption.get("user_usages", [])
                if row.get("user_email")
            )
            excess += max(0, named - consumption["user_credits"])
    return excess


def test_a_breakdown_larger_than_its_total_keeps_the_total_and_says_by_how_much(
    tmp_path: Path, doctored: DoctoredApi
) -> None:
    doctored.doctor = double_the_breakdown
    raw = raw_usage(doctored, DETAIL)
    total = total_credits(raw)
    excess = breakdown_excess(raw)
    assert excess >= 10_000  # five digits: grouped in Spanish too (12.345)
    reports = (
        TEAM + '\n[[reports]]\nname = "equipo"\nowners = ["jefa@company.com"]\nlocale = "es"\n'
    )

    code, stderr, out = dry_run(tmp_path, doctored, reports)

    assert code == 0, stderr
    english = pdf_text(out / "team.pdf")
    assert f"{total:,}" in english
    assert (
        f"The API's per-user breakdown added up to {excess:,} credits more than its tool totals."
        in english
    )
    spanish = pdf_text(out / "equipo.pdf")
    assert f"{total:,}".replace(",", ".") in spanish
    assert (
        f"El desglose por usuario de la API sumaba {excess:,} créditos más".replace(",", ".")
        in spanish
    )
    rows = csv_rows(out / "team.csv")
    assert credits_in(rows) == pytest.approx(total)
    assert sum(int(row["uses"]) for row in rows) == sum(
        c["user_uses"] for b in raw["data"] for c in b["consumptions"]
    )


def test_a_breakdown_within_its_totals_adds_no_note(tmp_path: Path, doctored: DoctoredApi) -> None:
    code, stderr, out = dry_run(tmp_path, doctored)
    assert code == 0, stderr
    assert breakdown_excess(raw_usage(doctored, DETAIL)) == 0
    assert "per-user breakdown added up to" not in pdf_text(out / "team.pdf")


# --- spreadsheet formulas in names ------------------------------------------------------

HOSTILE_TOOL = '=HYPERLINK("http://evil.example/","open me")'
HOSTILE_USER = "@SUM(A1:A9)"
HOSTILE_PROJECT = "-2+3+cmd|' /C calc'!A0"
HOSTILE_GROUP = "+1"
TABBED_PROJECT = "\tTabbed"
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def formula_names(body: dict[str, Any], payload: dict[str, Any]) -> None:
    """Names that a spreadsheet would run as formulas, in every text field the CSV has."""
    first_user = None
    for bucket in payload["data"]:
        for consumption in bucket["consumptions"]:
            if consumption["tool"] == "AI Image Models":
                consumption["tool"] = HOSTILE_TOOL
            for row in consumption.get("user_usages", []):
                first_user = first_user or row["user_email"]
                if row["user_email"] == first_user:
                    row["user_email"] = HOSTILE_USER
                if row.get("project_reference") == PROJECTS[0][0]:
                    row["project_name"] = HOSTILE_PROJECT
                if row.get("project_reference") == PROJECTS[1][0]:
                    row["project_name"] = TABBED_PROJECT
                row["group_name"] = HOSTILE_GROUP


def test_csv_text_cells_that_a_spreadsheet_would_run_are_neutralised(
    tmp_path: Path, doctored: DoctoredApi
) -> None:
    doctored.doctor = formula_names
    total = total_credits(raw_usage(doctored, DETAIL))

    code, stderr, out = dry_run(tmp_path, doctored)

    assert code == 0, stderr
    written = (out / "team.csv").read_bytes()
    rows = csv_rows(out / "team.csv")
    text_columns = ["tool", "user_email", "project_reference", "project_name", "group_name"]
    for row in rows:
        for column in text_columns:
            assert not row[column].startswith(FORMULA_START), (column, row[column])
    assert {f"'{HOSTILE_TOOL}"} <= {row["tool"] for row in rows}
    assert f"'{HOSTILE_USER}" in {row["user_email"] for row in rows}
    assert {f"'{HOSTILE_PROJECT}", f"'{TABBED_PROJECT}"} <= {row["project_name"] for row in rows}
    assert f"'{HOSTILE_GROUP}" in {row["group_name"] for row in rows}
    # Numbers stay numbers: no quote, and they still add up to the API's totals.
    assert all(not row["credits"].startswith("'") for row in rows)
    assert credits_in(rows) == total
    # The attachment is the file on disk, neutralised the same way.
    message = email.message_from_bytes((out / "team.eml").read_bytes(), policy=email.policy.default)
    attached = [p for p in message.iter_attachments() if p.get_filename() == "team-2026-10.csv"]
    assert [p.get_payload(decode=True) for p in attached] == [written]


# --- values no real usage has, and periods no calendar handles -----------------------


def set_first(path: tuple[str | int, ...], value: Any) -> Doctor:
    """A doctor that puts ``value`` at ``path`` in the period's (daily) answer."""

    def doctor(body: dict[str, Any], payload: dict[str, Any]) -> None:
        if body.get("granularity") != "day":
            return
        target: Any = payload
        for step in path[:-1]:
            target = target[step]
        target[path[-1]] = value

    return doctor


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("data", 0, "consumptions", 0, "user_credits"), 1e308),
        (("data", 0, "consumptions", 0, "user_uses"), 10**30),
        (("data", 0, "consumptions", 0, "user_usages", 0, "user_credits"), 1e308),
        (("data", 0, "consumptions", 0, "user_usages", 0, "user_uses"), 10**30),
    ],
)
def test_implausibly_large_numbers_fail_the_report_naming_the_field(
    tmp_path: Path, doctored: DoctoredApi, path: tuple[str | int, ...], value: float
) -> None:
    doctored.doctor = set_first(path, value)
    config = write_config(tmp_path / "team.toml", TEAM)
    env = {"MAGNIFIC_API_KEY": API_KEY, "MAGNIFIC_API_BASE_URL": doctored.url}
    args = ["--config", str(config), "--period", PERIOD, "--dry-run", "--out", str(tmp_path)]

    result = reporter("run", *args, env=env)

    where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".")
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "team: FAILED (the Magnific API sent an unexpected response:"
        f" {where}: Input should be less than or equal to 1000000000000000)"
    ]
    assert "FAILED" in result.stdout
    assert not (tmp_path / PERIOD / "team.pdf").exists()


@pytest.mark.parametrize("period", ["0001-01", "0001-W01", "1000-Q1", "1677"])
def test_a_period_before_1970_is_a_usage_error(tmp_path: Path, period: str) -> None:
    config = write_config(tmp_path / "team.toml", TEAM)
    args = ["--config", str(config), "--period", period, "--dry-run", "--out", str(tmp_path)]

    result = reporter("run", *args, env={"MAGNIFIC_API_KEY": API_KEY})

    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"Error: period '{period}' is too early: periods start in 1970",
        "Hint: choose a period from 1970 on; the default is the last complete month",
    ]


# --- the response size cap, from the config ---------------------------------------------


def test_a_response_over_max_response_mb_fails_the_report_without_reading_it_all(
    tmp_path: Path, api: SandboxServer
) -> None:
    api.inject(Fault("oversize_chunked", size_mb=64))
    config = write_config(tmp_path / "team.toml", "[api]\nmax_response_mb = 1\n" + TEAM)
    env = {"MAGNIFIC_API_KEY": API_KEY, "MAGNIFIC_API_BASE_URL": api.url}
    args = ["--config", str(config), "--period", PERIOD, "--dry-run", "--out", str(tmp_path)]

    result = reporter("run", *args, env=env)

    assert result.returncode == 1
    assert (
        "team: FAILED (the Magnific API's response is larger than the cap of 1 MB"
        " ([api] max_response_mb): more than 1,048,576 bytes arrived)"
    ) in result.stderr
    assert "Traceback" not in result.stderr
    assert bytes_sent(api) < 64 * 1024 * 1024
