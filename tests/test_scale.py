"""Scaling out: shards that cover every report once, render processes, progress output."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from rich.console import Console

from reporter.cli import cli
from reporter.files import default_templates_dir
from reporter.progress import BarProgress, PlainProgress
from reporter.sandbox import PROJECTS, SandboxServer
from reporter.shards import Shard
from reporter.summary import Outcome, markdown_summary
from tests.conftest import (
    API_KEY,
    SmtpServer,
    pdf_text,
    reporter,
    write_config,
)
from tests.test_pipeline import expected_total

PERIOD = "2026-10"
NAMES = [f"team-{i:02d}" for i in range(1, 8)]


def many_reports(names: list[str]) -> str:
    """One report per name, each filtered to one of the sandbox's projects."""
    return "".join(
        f'[[reports]]\nname = "{name}"\nowners = ["{name}@company.com"]\n'
        f'project_references = ["{PROJECTS[i % len(PROJECTS)][0]}"]\n\n'
        for i, name in enumerate(names)
    )


def run_args(config: Path, out: Path) -> list[str]:
    return ["run", "--config", str(config), "--period", PERIOD, "--out", str(out)]


def project_total(api: SandboxServer, index: int) -> int:
    return expected_total(api, project_references=[PROJECTS[index % len(PROJECTS)][0]])


def test_a_matrix_of_shards_delivers_every_report_exactly_once(
    tmp_path: Path, api: SandboxServer, smtp: SmtpServer
) -> None:
    config = write_config(tmp_path / "reports.toml", many_reports(NAMES))
    shards = 3
    summaries = []
    for index in range(1, shards + 1):
        # Each runner of the matrix has its own ledger and its own job summary file.
        summary = tmp_path / f"summary-{index}.md"
        result = CliRunner().invoke(
            cli,
            [
                *run_args(config, tmp_path / "out"),
                "--shard",
                f"{index}/{shards}",
                "--state",
                str(tmp_path / f"state-{index}.db"),
            ],
            env={
                "MAGNIFIC_API_KEY": API_KEY,
                "MAGNIFIC_API_BASE_URL": api.url,
                "GITHUB_STEP_SUMMARY": str(summary),
                **smtp.env(),
            },
            catch_exceptions=False,
        )
        assert result.exit_code == 0, result.stderr
        assert f"shard {index}/{shards}" in result.stdout
        summaries.append(summary.read_text(encoding="utf-8"))

    by_rcpt = smtp.recorder.by_recipient()
    assert sorted(by_rcpt) == sorted(f"{n}@company.com" for n in NAMES)
    assert all(len(messages) == 1 for messages in by_rcpt.values())

    # Each job summary lists exactly its shard's reports, with totals from the raw API data.
    listed: list[str] = []
    for summary in summaries:
        for row in summary.splitlines():
            cells = [c.strip() for c in row.strip("|").split("|")]
            if cells[0] in NAMES:
                listed.append(cells[0])
                index = NAMES.index(cells[0])
                assert cells[1] == f"{project_total(api, index):,}"
                assert cells[2] == "delivered"
    assert sorted(listed) == NAMES


def test_a_shard_keeps_its_reports_when_others_are_added_or_removed() -> None:
    names = [f"report-{i}" for i in range(200)]
    count = 4
    before = {n: next(i for i in range(1, count + 1) if Shard(i, count).holds(n)) for n in names}
    assert all(sum(Shard(i, count).holds(n) for i in range(1, count + 1)) == 1 for n in names)
    # A stable hash, not list position: a shorter list assigns the rest the same way.
    for i in range(1, count + 1):
        kept = Shard(i, count).select(names[50:], lambda n: n)
        assert kept == [n for n in names[50:] if before[n] == i]
    # And the shares are even enough to be worth running in parallel.
    sizes = [sum(1 for s in before.values() if s == i) for i in range(1, count + 1)]
    assert min(sizes) >= 30


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0/3", "--shard 0/3: I must be between 1 and N"),
        ("4/3", "--shard 4/3: I must be between 1 and N"),
        ("2", "--shard '2' is not I/N"),
        ("a/b", "--shard 'a/b' is not I/N"),
    ],
)
def test_a_bad_shard_exits_2(tmp_path: Path, text: str, message: str) -> None:
    config = write_config(tmp_path / "r.toml", many_reports(NAMES[:1]))
    result = reporter(
        "run", "--config", str(config), "--dry-run", "--shard", text,
        env={"MAGNIFIC_API_KEY": API_KEY},
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.splitlines()[0] == f"Error: {message}"
    assert "Traceback" not in result.stderr


def test_jobs_2_renders_the_same_reports_with_requests_still_bounded(
    tmp_path: Path, api: SandboxServer
) -> None:
    config = write_config(tmp_path / "reports.toml", many_reports(NAMES[:4]))
    outputs = {}
    for jobs in (1, 2):
        out = tmp_path / f"out-{jobs}"
        result = CliRunner().invoke(
            cli,
            [*run_args(config, out), "--dry-run", "--jobs", str(jobs), "--max-in-flight", "2"],
            env={"MAGNIFIC_API_KEY": API_KEY, "MAGNIFIC_API_BASE_URL": api.url},
            catch_exceptions=False,
        )
        assert result.exit_code == 0, result.stderr
        outputs[jobs] = out / PERIOD
    assert api.peak_in_flight <= 2
    for index, name in enumerate(NAMES[:4]):
        one, two = (pdf_text(outputs[j] / f"{name}.pdf") for j in (1, 2))
        assert f"{project_total(api, index):,}" in two
        # The same report, byte for byte in its text, bar the generation time.
        strip = " ".join(w for w in one.split() if ":" not in w)
        assert strip == " ".join(w for w in two.split() if ":" not in w)
        csvs = [(outputs[j] / f"{name}.csv").read_bytes() for j in (1, 2)]
        assert csvs[0] == csvs[1]


def test_a_report_that_fails_in_a_render_process_costs_only_that_report(
    tmp_path: Path, api: SandboxServer
) -> None:
    templates = tmp_path / "templates"
    shutil.copytree(default_templates_dir(), templates)
    page = templates / "report.html.j2"
    page.write_text(
        '{% if name == "team-02" %}{{ no_such_thing.attribute }}{% endif %}'
        + page.read_text(encoding="utf-8"),
        encoding="utf-8",
    )
    config = write_config(tmp_path / "reports.toml", many_reports(NAMES[:3]))
    result = CliRunner().invoke(
        cli,
        [
            *run_args(config, tmp_path / "out"),
            "--dry-run",
            "--jobs",
            "2",
            "--templates",
            str(templates),
        ],
        env={"MAGNIFIC_API_KEY": API_KEY, "MAGNIFIC_API_BASE_URL": api.url},
        catch_exceptions=False,
    )
    assert result.exit_code == 1
    assert "2 of 3 report(s) OK" in result.stdout
    assert "team-02: FAILED" in result.stderr
    assert "no_such_thing" in result.stderr
    for name in ("team-01", "team-03"):
        assert (tmp_path / "out" / PERIOD / f"{name}.pdf").is_file()
    assert not (tmp_path / "out" / PERIOD / "team-02.pdf").exists()


def test_progress_is_one_line_per_report_without_a_terminal(
    tmp_path: Path, api: SandboxServer
) -> None:
    config = write_config(tmp_path / "reports.toml", many_reports(NAMES[:3]))
    args = [*run_args(config, tmp_path / "out"), "--dry-run"]
    env = {"MAGNIFIC_API_KEY": API_KEY, "MAGNIFIC_API_BASE_URL": api.url}

    plain = reporter(*args, env=env)
    assert plain.returncode == 0, plain.stderr
    lines = plain.stderr.splitlines()
    assert sorted(line.split(":")[0] for line in lines) == NAMES[:3]
    assert all(": written, " in line for line in lines)

    quiet = reporter(*args, "--quiet", env=env)
    assert quiet.returncode == 0
    assert quiet.stderr == ""
    assert "3 of 3 report(s) OK" in quiet.stdout

    verbose = reporter(*args, "--verbose", env=env)
    for name in NAMES[:3]:
        assert f"{name}: fetched: " in verbose.stderr
        assert f"{name}: wrote " in verbose.stderr
    assert "POST" in verbose.stderr
    assert API_KEY not in verbose.stderr


def test_the_terminal_bar_prints_each_settled_report_and_counts_them() -> None:
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=100)
    bar = BarProgress(["a", "b"], console=console)
    with bar.shown():
        bar("a", "fetched: 10 credits")
        bar("a", "wrote a.pdf")
        bar("a", "a: delivered", done=True)
        bar("b", "b: FAILED (server down)", done=True)
        task = bar._bar.tasks[0]
        assert task.completed == 2
        assert task.total == 2
    assert "a: delivered" in screen.getvalue()
    assert "b: FAILED (server down)" in screen.getvalue()

    stream = io.StringIO()
    PlainProgress(stream)("a", "fetched", done=False)
    PlainProgress(stream)("a", "a: delivered", done=True)
    assert stream.getvalue() == "a: delivered\n"


def test_job_summary_is_a_markdown_table_that_survives_hostile_details() -> None:
    outcomes = [
        Outcome("a", "delivered", "sent to 2 owners", credits=1200.0),
        Outcome("b", "failed", "API said: bad | worse\nthen nothing"),
        Outcome("c", "already_delivered", "every owner already has it", credits=34.0),
    ]
    text = markdown_summary(outcomes, "2026-10", "1/2")
    rows = [line for line in text.splitlines() if line.startswith("|")]
    assert rows[0] == "| Report | Credits | Status | Detail |"
    assert rows[2] == "| a | 1,200 | delivered | sent to 2 owners |"
    assert rows[3] == "| b | - | **FAILED** | API said: bad \\| worse then nothing |"
    assert rows[-1] == "| **Total** | **1,234** | | |"
    assert "2 of 3 report(s) OK; 1 failed" in text
    assert "(shard 1/2)" in text


def test_a_run_fetches_only_a_window_ahead_of_what_it_has_written(
    tmp_path: Path, api: SandboxServer
) -> None:
    """Memory stays flat with the number of reports: however fast the API answers, the run
    holds at most a window of fetched reports that are not yet written."""
    import datetime as dt

    from pydantic import SecretStr

    from reporter.config import load_config
    from reporter.environment import ApiSettings
    from reporter.jobs import RunOptions, run
    from reporter.magnific import MagnificClient
    from reporter.periods import parse_period

    names = [f"team-{i:02d}" for i in range(12)]
    config = load_config(write_config(tmp_path / "reports.toml", many_reports(names)))
    now = dt.datetime(2026, 11, 25, 9, 0, tzinfo=dt.UTC)
    options = RunOptions(
        period=parse_period(PERIOD, today=now.date()),
        out_dir=tmp_path / "out",
        templates_dir=default_templates_dir(),
        now=now,
        dry_run=True,
    )
    requests_when_written: list[int] = []

    def progress(report: str, message: str, /, *, done: bool = False) -> None:
        if message.startswith("wrote "):
            requests_when_written.append(len(api.requests))

    in_flight = 2
    with MagnificClient(ApiSettings(SecretStr(API_KEY), api.url)) as client:
        outcomes = run(
            config,
            config.reports,
            options,
            client=client,
            sender=None,
            ledger=None,
            progress=progress,
            max_in_flight=in_flight,
        )
    assert [o.status for o in outcomes] == ["written"] * len(names)
    assert len(requests_when_written) == len(names)
    # Each report is two requests; when the k-th report is written, at most the window
    # beyond it has been fetched: in_flight reports fetching or fetched, and two at the
    # printer (one printing, one queued).
    at_printer = 2
    for written, requests in enumerate(requests_when_written, start=1):
        assert requests <= 2 * (written + in_flight + at_printer), requests_when_written
