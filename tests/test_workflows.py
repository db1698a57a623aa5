"""The GitHub Actions workflows: actionlint-clean, pinned, and their shell steps really work.

GitHub itself cannot run here, so the steps' own scripts are run in bash with the
environment GitHub would give them: the plan step's shard list feeds a matrix whose
run steps, against the stand-in API, must cover every report exactly once.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from reporter.sandbox import PROJECTS, SandboxServer
from tests.conftest import API_KEY, write_config

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = ROOT / ".github" / "workflows"
LINT = ROOT / "tools" / "actionlint" / "lint.cjs"
README = (ROOT / "README.md").read_text(encoding="utf-8")


def load(name: str) -> dict[Any, Any]:
    data: dict[Any, Any] = yaml.safe_load((WORKFLOWS / name).read_text(encoding="utf-8"))
    return data


def actionlint(*paths: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["node", str(LINT), *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def step(job: dict[str, Any], name_start: str) -> dict[str, Any]:
    steps: list[dict[str, Any]] = job["steps"]
    return next(s for s in steps if s.get("name", "").startswith(name_start))


def test_workflows_pass_actionlint() -> None:
    files = sorted(WORKFLOWS.glob("*.yml"))
    assert [f.name for f in files] == ["ci.yml", "monthly-report.yml", "watch.yml"]
    result = actionlint(*files)
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_catches_a_broken_workflow(tmp_path: Path) -> None:
    text = (WORKFLOWS / "monthly-report.yml").read_text(encoding="utf-8")
    broken = tmp_path / "broken.yml"
    broken.write_text(text.replace("inputs.dry_run", "inputs.dryrun"), encoding="utf-8")
    result = actionlint(broken)
    assert result.returncode == 1
    assert 'property \\"dryrun\\" is not defined' in result.stdout


@pytest.mark.parametrize("name", ["ci.yml", "monthly-report.yml", "watch.yml"])
def test_least_privilege_and_actions_pinned_by_commit(name: str) -> None:
    workflow = load(name)
    assert workflow["permissions"] == {"contents": "read"}
    for job in workflow["jobs"].values():
        assert "permissions" not in job  # nothing widens the top-level grant
        for s in job["steps"]:
            if "uses" in s:
                assert re.fullmatch(r"[\w./-]+@[0-9a-f]{40}", s["uses"]), s["uses"]
            # Inputs reach scripts through env, never pasted into the script (injection).
            assert "${{" not in s.get("run", "")


def test_ci_runs_the_readmes_test_command() -> None:
    assert "scripts/test     # set up, then run" in README
    test = load("ci.yml")["jobs"]["test"]
    assert [s["run"] for s in test["steps"] if "run" in s] == ["scripts/test"]
    assert (ROOT / ".ci" / "run").read_text(encoding="utf-8").strip().endswith("exec scripts/test")


def test_monthly_schedule_inputs_secrets_ledger_and_artifact() -> None:
    workflow = load("monthly-report.yml")
    triggers = workflow[True]  # YAML 1.1 reads the key `on` as a boolean
    assert triggers["schedule"] == [{"cron": "0 6 1 * *"}, {"cron": "0 6 3 * *"}]
    inputs = set(triggers["workflow_dispatch"]["inputs"])
    assert inputs == {"period", "reports", "dry_run", "shards"}
    job = workflow["jobs"]["report"]
    assert job["strategy"]["fail-fast"] is False
    assert "scripts/bootstrap" in README
    assert step(job, "Install")["run"] == "scripts/bootstrap"
    env = step(job, "Build and send")["env"]
    assert env["RECHECK"] == "${{ github.event.schedule == '0 6 3 * *' }}"
    for secret in ("MAGNIFIC_API_KEY", "SMTP_HOST", "SMTP_PORT", "SMTP_USERNAME", "SMTP_PASSWORD"):
        assert env[secret] == f"${{{{ secrets.{secret} }}}}"
    restore, save = step(job, "Restore the delivery ledger"), step(job, "Keep the delivery ledger")
    assert restore["with"]["path"] == save["with"]["path"] == ".reporter"
    assert restore["with"]["key"] == save["with"]["key"]
    # A re-run (next run_attempt) restores the ledger the failed attempt saved.
    assert restore["with"]["restore-keys"] == "${{ env.LEDGER_KEY }}"
    assert "run_attempt" in save["with"]["key"]
    assert save["if"].startswith("always()")
    upload = step(job, "Upload the PDFs and CSVs")
    assert upload["if"] == "always()"
    assert upload["with"]["path"].split() == ["out/**/*.pdf", "out/**/*.csv"]


def bash(script: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    # GitHub runs `run:` steps with `bash --noprofile --norc -eo pipefail {0}`.
    return subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_the_workflows_own_steps_shard_every_report_exactly_once(
    tmp_path: Path, api: SandboxServer
) -> None:
    workflow = load("monthly-report.yml")
    names = [f"team-{i}" for i in range(1, 7)]
    (tmp_path / "config").mkdir()
    write_config(
        tmp_path / "config" / "reports.toml",
        "".join(
            f'[[reports]]\nname = "{n}"\nowners = ["{n}@company.com"]\n'
            f'project_references = ["{PROJECTS[i % len(PROJECTS)][0]}"]\n'
            for i, n in enumerate(names)
        ),
    )
    (tmp_path / ".venv" / "bin").mkdir(parents=True)
    (tmp_path / ".venv" / "bin" / "reporter").symlink_to(Path(sys.executable).parent / "reporter")
    base = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}

    plan = step(workflow["jobs"]["plan"], "Decide the shards")
    output = tmp_path / "plan-output"
    result = bash(plan["run"], {**base, "SHARDS": "3", "GITHUB_OUTPUT": str(output)}, tmp_path)
    assert result.returncode == 0, result.stderr
    outputs = dict(line.split("=", 1) for line in output.read_text().splitlines())
    assert outputs == {"count": "3", "list": "[1,2,3]"}
    refused = bash(plan["run"], {**base, "SHARDS": "0", "GITHUB_OUTPUT": str(output)}, tmp_path)
    assert refused.returncode == 1
    assert "::error::shards must be a whole number" in refused.stdout

    run = step(workflow["jobs"]["report"], "Build and send")
    written: list[str] = []
    for shard in (1, 2, 3):
        summary = tmp_path / f"summary-{shard}.md"
        env = {
            **base,
            "MAGNIFIC_API_KEY": API_KEY,
            "MAGNIFIC_API_BASE_URL": api.url,
            "CONFIG": "config/reports.toml",
            "SHARD": f"{shard}/3",
            "PERIOD": "2026-10",
            "REPORTS": " ".join(names[:5]),  # a dispatch naming five of the six
            "DRY_RUN": "true",
            "GITHUB_STEP_SUMMARY": str(summary),
        }
        result = bash(run["run"], env, tmp_path)
        assert result.returncode == 0, result.stderr
        assert f"shard {shard}/3" in summary.read_text(encoding="utf-8")
        written += [p.stem for p in (tmp_path / "out" / "2026-10").glob("*.pdf")]
        shutil.rmtree(tmp_path / "out")
    assert sorted(written) == names[:5]


def test_the_daily_watch_runs_watch_with_its_ledger_and_summary(
    tmp_path: Path, api: SandboxServer
) -> None:
    workflow = load("watch.yml")
    assert workflow[True]["schedule"] == [{"cron": "0 7 * * *"}]
    job = workflow["jobs"]["watch"]
    restore, save = step(job, "Restore the delivery ledger"), step(job, "Keep the delivery ledger")
    assert restore["with"]["path"] == save["with"]["path"] == ".reporter"
    assert restore["with"]["key"] == save["with"]["key"]
    assert save["if"].startswith("always()")
    (tmp_path / "config").mkdir()
    write_config(
        tmp_path / "config" / "reports.toml",
        '[[reports]]\nname = "team"\nowners = ["team@company.com"]\nbudget_credits = 1000\n',
    )
    (tmp_path / ".venv" / "bin").mkdir(parents=True)
    (tmp_path / ".venv" / "bin" / "reporter").symlink_to(Path(sys.executable).parent / "reporter")
    summary = tmp_path / "summary.md"
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "MAGNIFIC_API_KEY": API_KEY,
        "MAGNIFIC_API_BASE_URL": api.url,
        "CONFIG": "config/reports.toml",
        "DATE": "2026-11-20",
        "DRY_RUN": "true",
        "GITHUB_STEP_SUMMARY": str(summary),
    }
    result = bash(step(job, "Send the alerts due")["run"], env, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "| team |" in summary.read_text(encoding="utf-8")
    # A team spending far over 1,000 credits a month: the 80% and 100% alerts are written.
    (eml,) = (tmp_path / "out" / "2026-11" / "alerts").glob("*.eml")
    assert b"100% of the November budget used" in eml.read_bytes()
    assert not (tmp_path / ".reporter").exists()  # a dry run records nothing
