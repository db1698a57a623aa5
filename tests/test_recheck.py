"""``reporter run --recheck``: late usage that moves a delivered total past the threshold
sends the owners one corrected report; no change, or a small one, sends nothing."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from reporter.cli import cli
from reporter.sandbox import SandboxData, SandboxServer, synthetic_team
from tests.conftest import API_KEY, SmtpServer, pdf_text, write_config

OCTOBER = [dt.date(2026, 10, day) for day in range(1, 32)]
OWNERS = ["lead@company.com", "finance@company.com"]
CONFIG = f"""
[[reports]]
name = "marketing"
title = "Marketing Campaign"
owners = {OWNERS!r}
group_ids = [20]
"""


@pytest.fixture
def data() -> SandboxData:
    data = SandboxData(synthetic_team(users=48, seed=7), today=dt.date(2026, 11, 10))
    data.script(20, dict.fromkeys(OCTOBER, 100))  # 3,100 credits in October
    return data


@pytest.fixture
def api(data: SandboxData) -> Iterator[SandboxServer]:
    with SandboxServer(data, api_key=API_KEY) as server:
        yield server


def reporter(tmp_path: Path, api: SandboxServer, smtp: SmtpServer, *extra: str) -> Result:
    config = write_config(tmp_path / "reports.toml", CONFIG)
    env = {"MAGNIFIC_API_KEY": API_KEY, "MAGNIFIC_API_BASE_URL": api.url, **smtp.env()}
    args = ["run", "--config", str(config), "--period", "2026-10", "-q"]
    args += ["--out", str(tmp_path / "out"), "--state", str(tmp_path / "state.sqlite3"), *extra]
    return CliRunner().invoke(cli, args, env=env)


def test_late_usage_sends_one_correction_and_only_one(
    tmp_path: Path, data: SandboxData, api: SandboxServer, smtp: SmtpServer
) -> None:
    assert reporter(tmp_path, api, smtp).exit_code == 0
    assert len(smtp.recorder.messages) == 1  # the report, showing 3,100
    unchanged = reporter(tmp_path, api, smtp, "--recheck")
    assert unchanged.exit_code == 0, unchanged.output
    assert "unchanged" in unchanged.output
    assert len(smtp.recorder.messages) == 1

    # Ten credits late on Oct 31 (0.3%) is within the default 0.5%: nothing is sent.
    data.script(20, dict.fromkeys(OCTOBER, 100) | {OCTOBER[-1]: 110})
    assert reporter(tmp_path, api, smtp, "--recheck").exit_code == 0
    assert len(smtp.recorder.messages) == 1

    # 250 late credits (8.1%): one corrected report to each owner.
    data.script(20, dict.fromkeys(OCTOBER, 100) | {OCTOBER[-1]: 350})
    result = reporter(tmp_path, api, smtp, "--recheck")
    assert result.exit_code == 0, result.output
    (correction,) = smtp.recorder.messages[1:]
    assert sorted(correction.recipients) == sorted(OWNERS)
    message = correction.message
    assert str(message["Subject"]) == ("Corrected: Marketing Campaign — credit usage, October 2026")
    assert message["Message-ID"] != smtp.recorder.messages[0].message["Message-ID"]
    text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    sentence = (
        "Corrected report: the last report sent showed 3,100 credits;"
        " late usage data brings the total to 3,350."
    )
    assert sentence in text
    (pdf,) = [p for p in message.iter_attachments() if p.get_content_type() == "application/pdf"]
    saved = tmp_path / "corrected.pdf"
    saved.write_bytes(pdf.get_content())
    first_page = pdf_text(saved).split("\f")[0]
    assert " ".join(sentence.split()) in " ".join(first_page.split())
    # The report as first sent is left as it was.
    assert "Corrected" not in pdf_text(tmp_path / "out" / "2026-10" / "marketing.pdf")

    # Run again: the correction is the total owners now have; nothing more is sent.
    again = reporter(tmp_path, api, smtp, "--recheck")
    assert again.exit_code == 0
    assert len(smtp.recorder.messages) == 2


def test_recheck_without_a_ledger_has_nothing_to_correct(
    tmp_path: Path, api: SandboxServer, smtp: SmtpServer
) -> None:
    result = reporter(tmp_path, api, smtp, "--recheck")
    assert result.exit_code == 0, result.output
    assert " -  not delivered  no delivery ledger at" in result.output
    assert api.requests == []
    assert not (tmp_path / "state.sqlite3").exists()
    refused = reporter(tmp_path, api, smtp, "--recheck", "--force")
    assert refused.exit_code == 2
    assert "Error: --recheck corrects what was delivered" in refused.output
