"""``reporter run`` end to end: stand-in API -> PDFs -> a real SMTP server."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from reporter.cli import cli
from reporter.sandbox import PROJECTS, SandboxServer
from tests.conftest import (
    API_KEY,
    SmtpServer,
    pdf_rows,
    pdf_text,
    raw_usage,
    total_credits,
    write_config,
)

PERIOD = "2026-10"
MARKETING = PROJECTS[0][0]

REPORTS = f"""
[[reports]]
name = "marketing"
title = "Marketing Campaign"
owners = ["manager@company.com", "cmo@company.com"]
project_references = ["{MARKETING}"]

[[reports]]
name = "design"
title = "Design Team"
owners = ["design.lead@company.com"]
group_ids = [10]
"""


def run_cli(args: list[str], env: dict[str, str]) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, args, env=env, catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


@dataclass
class Setup:
    args: list[str]
    env: dict[str, str]
    out: Path


@pytest.fixture
def setup(tmp_path: Path, api: SandboxServer, smtp: SmtpServer) -> Setup:
    config = write_config(tmp_path / "reports.toml", REPORTS)
    env = {"MAGNIFIC_API_KEY": API_KEY, "MAGNIFIC_API_BASE_URL": api.url, **smtp.env()}
    state = tmp_path / "state.sqlite3"
    args = ["run", "--config", str(config), "--period", PERIOD]
    args += ["--out", str(tmp_path / "out"), "--state", str(state)]
    return Setup(args, env, tmp_path / "out" / PERIOD)


def expected_total(api: SandboxServer, **filters: object) -> int:
    return total_credits(
        raw_usage(
            api,
            {
                "granularity": "day",
                "start_date": "2026-10-01",
                "end_date": "2026-10-31",
                **filters,
            },
        )
    )


def test_run_delivers_each_report_once_to_exactly_its_owners(
    setup: Setup, api: SandboxServer, smtp: SmtpServer
) -> None:
    code, stdout, stderr = run_cli(setup.args, setup.env)
    assert code == 0, stderr
    by_rcpt = smtp.recorder.by_recipient()
    assert sorted(by_rcpt) == ["cmo@company.com", "design.lead@company.com", "manager@company.com"]
    assert all(len(messages) == 1 for messages in by_rcpt.values())
    marketing = by_rcpt["manager@company.com"][0]
    assert marketing["Subject"] == "Marketing Campaign — credit usage, October 2026"
    assert "delivered" in stdout


def test_pdf_and_email_state_the_totals_computed_from_the_raw_api_data(
    setup: Setup, api: SandboxServer, smtp: SmtpServer
) -> None:
    code, _, stderr = run_cli(setup.args, setup.env)
    assert code == 0, stderr
    out = setup.out
    marketing_total = expected_total(api, project_references=[MARKETING])
    design_total = expected_total(api, group_ids=[10])
    assert marketing_total != design_total
    marketing_text = pdf_text(out / "marketing.pdf")
    assert f"{marketing_total:,}" in marketing_text
    assert "Marketing Campaign" in marketing_text
    assert "October 2026" in marketing_text
    assert f"{design_total:,}" in pdf_text(out / "design.pdf")

    message = smtp.recorder.by_recipient()["manager@company.com"][0]
    text = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    assert f"Credits used: {marketing_total:,}" in text
    assert f"{marketing_total:,}" in html
    attachments = {part.get_filename(): part for part in message.iter_attachments()}
    assert set(attachments) == {"marketing-2026-10.pdf", "marketing-2026-10.csv"}
    assert (
        attachments["marketing-2026-10.pdf"].get_content() == (out / "marketing.pdf").read_bytes()
    )


def test_per_tool_figures_and_previous_month_change_match_the_raw_data(
    setup: Setup, api: SandboxServer
) -> None:
    code, _, stderr = run_cli(setup.args, setup.env)
    assert code == 0, stderr
    text = pdf_text(setup.out / "marketing.pdf")
    rows = pdf_rows(setup.out / "marketing.pdf")
    october = raw_usage(
        api,
        {
            "granularity": "day",
            "start_date": "2026-10-01",
            "end_date": "2026-10-31",
            "project_references": [MARKETING],
        },
    )
    by_tool: dict[str, int] = {}
    for bucket in october["data"]:
        for c in bucket["consumptions"]:
            by_tool[c["tool"]] = by_tool.get(c["tool"], 0) + c["user_credits"]
    for tool, credits in by_tool.items():
        # tool, uses, credits, credits per use (and its change, if any), share, change
        per_use = r"(?:[\d,]+\.\d(?: [+−][\d,.]+%)?|–)"
        table_row = rf"{re.escape(tool)} [\d,]+ {credits:,} {per_use} [\d.]+% "
        assert any(re.match(table_row, row) for row in rows), tool
    september = total_credits(
        raw_usage(
            api,
            {
                "granularity": "day",
                "start_date": "2026-09-01",
                "end_date": "2026-09-30",
                "project_references": [MARKETING],
            },
        )
    )
    october_total = sum(by_tool.values())
    change = (october_total - september) / september * 100
    sign = "+" if change > 0 else "\u2212"
    assert f"{sign}{abs(change):.1f}% vs September 2026" in text


def test_second_run_sends_nothing_and_force_sends_again(setup: Setup, smtp: SmtpServer) -> None:
    args, env = setup.args, setup.env
    assert run_cli(args, env)[0] == 0
    assert len(smtp.recorder.messages) == 2
    code, stdout, _ = run_cli(args, env)
    assert code == 0
    assert len(smtp.recorder.messages) == 2
    assert stdout.count("already delivered") == 2
    code, _, _ = run_cli([*args, "--force", "--report", "design"], env)
    assert code == 0
    assert len(smtp.recorder.messages) == 3
    assert smtp.recorder.messages[-1].recipients == ["design.lead@company.com"]


def test_dry_run_writes_eml_and_sends_nothing(setup: Setup, smtp: SmtpServer) -> None:
    env = {k: v for k, v in setup.env.items() if not k.startswith("SMTP_")}
    code, _, stderr = run_cli([*setup.args, "--dry-run"], env)
    assert code == 0, stderr
    assert smtp.recorder.messages == []
    out = setup.out
    for name in ("marketing", "design"):
        assert (out / f"{name}.pdf").read_bytes().startswith(b"%PDF-")
        assert (out / f"{name}.csv").read_text().startswith("date,tool,user_email")
        assert b"Subject:" in (out / f"{name}.eml").read_bytes()


def test_empty_month_still_produces_a_report_that_says_so(
    tmp_path: Path, api: SandboxServer, smtp: SmtpServer
) -> None:
    """The synthetic team's data starts in January 2024; December 2023 has none."""
    config = write_config(tmp_path / "c.toml", REPORTS)
    env = {"MAGNIFIC_API_KEY": API_KEY, "MAGNIFIC_API_BASE_URL": api.url, **smtp.env()}
    code, _, stderr = run_cli(
        [
            "run",
            "--config",
            str(config),
            "--period",
            "2023-12",
            "--out",
            str(tmp_path),
            "--state",
            str(tmp_path / "s.db"),
            "--report",
            "design",
        ],
        env,
    )
    assert code == 0, stderr
    text = pdf_text(tmp_path / "2023-12" / "design.pdf")
    assert "No usage this period" in text
    body = smtp.recorder.messages[0].message.get_body(("plain",)).get_content()
    assert "Credits used: 0" in body
    assert "No usage was recorded in this period." in body
