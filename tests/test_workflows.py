"""The GitHub Actions workflows: actionlint-clean, pinned, and their shell steps really work.

GitHub itself cannot run here, so the steps' own scripts are run in bash with the
environment GitHub would give them: the plan step's shard list feeds a matrix whose
run steps, against the stand-in API, must cover every report exactly once.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from reporter.sandbox import PROJECTS, SandboxServer
from tests.conftest import API_KEY, SmtpServer, write_config

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
    # `actions: read` lets the action find the last run's ledger artifact; nothing writes.
    assert workflow["permissions"] == {"contents": "read", "actions": "read"}
    for job in workflow["jobs"].values():
        assert "permissions" not in job  # nothing widens the top-level grant
        for s in job["steps"]:
            if "uses" in s and s["uses"] != "./":  # ./ is this checkout's action.yml
                assert re.fullmatch(r"[\w./-]+@[0-9a-f]{40}", s["uses"]), s["uses"]
            # Inputs reach scripts through env, never pasted into the script (injection).
            assert "${{" not in s.get("run", "")


def test_ci_runs_the_readmes_test_command() -> None:
    assert "scripts/test     # set up, then run" in README
    test = load("ci.yml")["jobs"]["test"]
    assert [s["run"] for s in test["steps"] if "run" in s] == ["scripts/test"]
    assert (ROOT / ".ci" / "run").read_text(encoding="utf-8").strip().endswith("exec scripts/test")


def test_monthly_schedule_inputs_secrets_and_artifact_through_the_action() -> None:
    workflow = load("monthly-report.yml")
    triggers = workflow[True]  # YAML 1.1 reads the key `on` as a boolean
    assert triggers["schedule"] == [{"cron": "0 6 1 * *"}, {"cron": "0 6 3 * *"}]
    inputs = set(triggers["workflow_dispatch"]["inputs"])
    assert inputs == {"period", "reports", "dry_run", "shards"}
    job = workflow["jobs"]["report"]
    assert job["strategy"]["fail-fast"] is False
    reports = step(job, "Build and send")
    assert reports["uses"] == "./"  # this repository's own action.yml
    assert set(reports["with"]) <= set(load_action()["inputs"])
    assert reports["with"]["shard"] == "${{ matrix.shard }}/${{ needs.plan.outputs.count }}"
    assert reports["with"]["command"] == (
        "${{ github.event.schedule == '0 6 3 * *' && 'run --recheck' || 'run' }}"
    )
    for secret in ("MAGNIFIC_API_KEY", "SMTP_HOST", "SMTP_PORT", "SMTP_USERNAME", "SMTP_PASSWORD"):
        assert reports["env"][secret] == f"${{{{ secrets.{secret} }}}}"
    upload = step(job, "Upload the PDFs and CSVs")
    assert upload["if"].startswith("always()")
    assert upload["with"]["path"].splitlines() == [
        "${{ steps.reports.outputs.pdf-dir }}/*.pdf",
        "${{ steps.reports.outputs.pdf-dir }}/*.csv",
    ]


def test_ci_runs_the_action_against_the_stand_in() -> None:
    job = load("ci.yml")["jobs"]["action"]
    action_step = step(job, "Run the action")
    assert action_step["uses"] == "./"
    assert set(action_step["with"]) <= set(load_action()["inputs"])
    assert action_step["with"]["dry-run"] is True
    assert action_step["with"]["ledger-name"] != "reporter-ledger"  # not the monthly ledger
    assert action_step["env"]["MAGNIFIC_API_BASE_URL"] == "http://127.0.0.1:8080"
    assert "reporter sandbox --port 8080" in step(job, "Start the stand-in API")["run"]


def test_action_yml_is_composite_pinned_and_passes_actionlint(tmp_path: Path) -> None:
    action = load_action()
    assert action["runs"]["using"] == "composite"
    steps = action["runs"]["steps"]
    ids = {s["id"] for s in steps if "id" in s}
    for name, output in action["outputs"].items():
        found = re.fullmatch(r"\$\{\{ steps\.([\w-]+)\.outputs\.([\w-]+) \}\}", output["value"])
        assert found, name
        assert found[1] in ids
    uploads = [s for s in steps if s.get("uses", "").startswith("actions/upload-artifact@")]
    # The action uploads its ledger only; the PDFs are the caller's to upload or not.
    assert [u["with"]["path"] for u in uploads] == ["${{ steps.keep.outputs.dir }}"]
    assert uploads[0]["with"]["overwrite"] is True
    assert uploads[0]["if"].startswith("always()")
    for s in steps:
        if "uses" in s:
            assert re.fullmatch(r"[\w./-]+@[0-9a-f]{40}", s["uses"]), s["uses"]
        else:
            assert s["shell"] == "bash"
            assert "${{" not in s["run"]
    # actionlint reads workflows, not action metadata: lint the steps as a reusable workflow
    # whose inputs are the action's, so every expression and `uses:` is checked.
    workflow = {
        "on": {"workflow_call": {"inputs": {k: {"type": "string"} for k in action["inputs"]}}},
        "permissions": {"contents": "read"},
        "jobs": {"action": {"runs-on": "ubuntu-24.04", "steps": steps}},
    }
    as_workflow = tmp_path / "action-as-workflow.yml"
    as_workflow.write_text(yaml.safe_dump(workflow, sort_keys=False), encoding="utf-8")
    result = actionlint(as_workflow)
    assert result.returncode == 0, result.stdout + result.stderr
    broken = tmp_path / "broken.yml"
    broken.write_text(
        as_workflow.read_text(encoding="utf-8").replace("inputs.dry-run", "inputs.dry_run"),
        encoding="utf-8",
    )
    assert 'property \\"dry_run\\" is not defined' in actionlint(broken).stdout


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
    tmp_path: Path, api: SandboxServer, gh_store: Path
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

    # Each matrix job passes its shard to the action (as the workflow's `with:` says).
    assert step(workflow["jobs"]["report"], "Build and send")["uses"] == "./"
    written: list[str] = []
    for shard in (1, 2, 3):
        job = ActionRun(
            tmp_path,
            {
                "shard": f"{shard}/3",
                "period": "2026-10",
                "reports": " ".join(names[:5]),  # a dispatch naming five of the six
                "dry-run": "true",
            },
            {
                **base,
                "PATH": f"{gh_store / 'bin'}:/usr/bin:/bin",
                "GH_STUB_DIR": str(gh_store),
                "MAGNIFIC_API_KEY": API_KEY,
                "MAGNIFIC_API_BASE_URL": api.url,
            },
        )
        assert job.step("inputs").returncode == 0
        assert job.step("ledger").returncode == 0
        assert job.outputs["inputs"]["artifact"] == f"reporter-ledger-{shard}-of-3"
        result = job.step("run")
        assert result.returncode == 0, result.stderr
        assert f"shard {shard}/3" in job.summary.read_text(encoding="utf-8")
        written += [p.stem for p in (tmp_path / "out" / "2026-10").glob("*.pdf")]
        shutil.rmtree(tmp_path / "out")
    assert sorted(written) == names[:5]


# --- the reusable action (action.yml) ---------------------------------------------------------

ACTION = ROOT / "action.yml"
REPO = "team/usage"  # the calling repository, as GITHUB_REPOSITORY names it
REPO_ID, FORK_ID = 1001, 2002

# The stand-in for the GitHub CLI: `gh api` against artifacts a test put in $GH_STUB_DIR,
# answering the two requests the action makes as the REST API does (the name filter is the
# API's own; choosing among the answers is the action's job). Without a token it fails as
# `gh` does; with $GH_STUB_DIR/deny it answers the 403 a job without `actions: read` gets.
GH_STUB = """#!{python}
import json, os, re, sys
from pathlib import Path
store = Path(os.environ["GH_STUB_DIR"])
with (store / "calls.log").open("a") as log:
    log.write(" ".join(sys.argv[1:]) + "\\n")
if not os.environ.get("GH_TOKEN"):
    sys.exit("gh: To use GitHub CLI in a GitHub Actions workflow, set the GH_TOKEN variable.")
if (store / "deny").exists():
    sys.exit("gh: Resource not accessible by integration (HTTP 403)")
assert sys.argv[1] == "api", sys.argv
artifacts = json.loads((store / "artifacts.json").read_text())
repo = os.environ["GITHUB_REPOSITORY"]
path = sys.argv[2]
listing = re.fullmatch(f"repos/{{repo}}/actions/artifacts\\\\?name=([^&]+)&per_page=100", path)
download = re.fullmatch(f"repos/{{repo}}/actions/artifacts/(\\\\d+)/zip", path)
if path == f"repos/{{repo}}":
    print(json.dumps({{"private": (store / "private").exists()}}))
elif listing:
    found = [a for a in artifacts if a["name"] == listing[1]]
    print(json.dumps({{"total_count": len(found), "artifacts": found}}))
elif download:
    sys.stdout.buffer.write((store / f"{{download[1]}}.zip").read_bytes())
else:
    sys.exit(f"gh: Not Found (HTTP 404): {{path}}")
"""


def load_action() -> dict[Any, Any]:
    data: dict[Any, Any] = yaml.safe_load(ACTION.read_text(encoding="utf-8"))
    return data


class ActionRun:
    """One job's run of the action's shell steps, with the env GitHub would give each.

    Each step's `env:` is evaluated from the inputs, earlier steps' outputs and the
    `github`/`runner` contexts; an expression this evaluator does not know fails the test,
    so the action cannot lean on something these tests never fed it.
    """

    def __init__(
        self,
        workspace: Path,
        inputs: dict[str, str],
        env: dict[str, str],
        *,
        private: str = "true",
    ) -> None:
        self.private = private  # github.event.repository.private ("" when the event has none)
        self.action = load_action()
        self.workspace = workspace
        workspace.mkdir(parents=True, exist_ok=True)
        self.temp = Path(tempfile.mkdtemp(prefix="runner-temp-", dir=workspace.parent))
        defaults = {k: str(v.get("default", "")) for k, v in self.action["inputs"].items()}
        unknown = set(inputs) - set(defaults)
        assert not unknown, unknown
        self.inputs = {**defaults, **inputs, "github-token": "ghs_stub-token"}
        self.env = env
        self.outputs: dict[str, dict[str, str]] = {"python": {"python-path": sys.executable}}
        self.outcomes: dict[str, str] = {}
        self.summary = self.temp / "step-summary.md"

    def value(self, expression: str) -> str:
        context, _, rest = expression.partition(".")
        if context == "inputs":
            return self.inputs[rest]
        if context == "steps":
            step_id, kind, name = rest.split(".", 2)
            assert kind == "outputs", expression
            return self.outputs.get(step_id, {}).get(name, "")
        if expression == "github.action_path":
            return str(ROOT)
        if expression == "github.event.repository.private":
            return self.private
        raise AssertionError(f"the test does not evaluate ${{{{ {expression} }}}}")

    def evaluate(self, text: str) -> str:
        return re.sub(r"\$\{\{\s*([\w.-]+)\s*\}\}", lambda m: self.value(m[1]), text)

    def step(self, step_id: str) -> subprocess.CompletedProcess[str]:
        """Run the action's shell step with this id (GitHub's bash flags, cwd the workspace)."""
        step = next(s for s in self.action["runs"]["steps"] if s.get("id") == step_id)
        assert step["shell"] == "bash"
        assert "${{" not in step["run"]  # inputs reach the script through env only
        output = self.temp / f"output-{step_id}"
        env = {
            **self.env,
            **{k: self.evaluate(str(v)) for k, v in step.get("env", {}).items()},
            "GITHUB_ACTION_PATH": str(ROOT),
            "GITHUB_OUTPUT": str(output),
            "GITHUB_STEP_SUMMARY": str(self.summary),
            "GITHUB_REPOSITORY": REPO,
            "GITHUB_WORKSPACE": str(self.workspace),
            "RUNNER_TEMP": str(self.temp),
            "RUNNER_OS": "Linux",
        }
        result = bash(step["run"], env, self.workspace)
        lines = output.read_text(encoding="utf-8").splitlines() if output.exists() else []
        self.outputs[step_id] = dict(line.split("=", 1) for line in lines)
        self.outcomes[step_id] = "success" if result.returncode == 0 else "failure"
        return result

    def upload(self, store: Path, *, run_id: int, created_at: str, head_repo: int) -> None:
        """What the upload-artifact step does, into the store the gh stub serves from."""
        step = next(
            s for s in self.action["runs"]["steps"] if s.get("name") == "Keep the delivery ledger"
        )
        name, path = (self.evaluate(step["with"][k]) for k in ("name", "path"))
        publish(store, name, Path(path), run_id=run_id, created_at=created_at, head_repo=head_repo)


def publish(
    store: Path, name: str, folder: Path, *, run_id: int, created_at: str, head_repo: int
) -> None:
    artifacts = json.loads((store / "artifacts.json").read_text())
    artifact_id = 9000 + len(artifacts)
    with zipfile.ZipFile(store / f"{artifact_id}.zip", "w") as archive:
        for file in sorted(folder.rglob("*")):
            if file.is_file():
                archive.write(file, file.relative_to(folder).as_posix())
    artifacts.append(
        {
            "id": artifact_id,
            "name": name,
            "expired": False,
            "created_at": created_at,
            "workflow_run": {
                "id": run_id,
                "repository_id": REPO_ID,
                "head_repository_id": head_repo,
            },
        }
    )
    (store / "artifacts.json").write_text(json.dumps(artifacts))


@pytest.fixture
def gh_store(tmp_path: Path) -> Path:
    """The repository's artifacts, served by a `gh` stub first on PATH."""
    store = tmp_path / "github"
    (store / "bin").mkdir(parents=True)
    (store / "artifacts.json").write_text("[]")
    gh = store / "bin" / "gh"
    gh.write_text(GH_STUB.format(python=sys.executable))
    gh.chmod(0o755)
    return store


def action_env(store: Path, api: SandboxServer, smtp: SmtpServer) -> dict[str, str]:
    """What the caller's step `env:` gives the action: the key and the mail server."""
    return {
        "PATH": f"{store / 'bin'}:/usr/bin:/bin",
        "HOME": str(store),
        "GH_STUB_DIR": str(store),
        "MAGNIFIC_API_KEY": API_KEY,
        "MAGNIFIC_API_BASE_URL": api.url,
        **smtp.env(),
    }


def two_reports(workspace: Path) -> None:
    (workspace / "config").mkdir(parents=True)
    write_config(
        workspace / "config" / "reports.toml",
        "".join(
            f'[[reports]]\nname = "{n}"\nowners = ["{n}@company.com"]\n'
            f'project_references = ["{PROJECTS[i][0]}"]\n'
            for i, n in enumerate(["alpha", "beta"])
        ),
    )


def test_the_actions_steps_keep_the_ledger_so_a_rerun_weeks_later_sends_only_the_rest(
    tmp_path: Path, api: SandboxServer, smtp: SmtpServer, gh_store: Path
) -> None:
    env = action_env(gh_store, api, smtp)
    # A fork's pull request planted a newer artifact of the ledger's name: never restored.
    planted = tmp_path / "planted"
    planted.mkdir()
    (planted / "state.sqlite3").write_bytes(b"not the ledger")
    publish(
        gh_store,
        "reporter-ledger-1-of-1",
        planted,
        run_id=499,
        created_at="2026-11-30T00:00:00Z",
        head_repo=FORK_ID,
    )

    # The 1st of the month: beta's mail server refuses, alpha's report is delivered.
    smtp.recorder.refuse["beta@company.com"] = "550 5.1.1 mailbox unavailable"
    first_job = tmp_path / "job-1"
    two_reports(first_job)
    job = ActionRun(first_job, {"period": "2026-10"}, env)
    for step_id in ("inputs", "install-key", "install"):
        result = job.step(step_id)
        assert result.returncode == 0, result.stdout + result.stderr
    assert job.outputs["inputs"] == {"artifact": "reporter-ledger-1-of-1"}
    assert job.outputs["install-key"]["key"].startswith("reporter-venv-Linux-py3.")
    restored = job.step("ledger")
    assert restored.returncode == 0, restored.stderr
    assert "::notice::no earlier delivery ledger 'reporter-ledger-1-of-1'" in restored.stdout
    sent = job.step("run")
    assert sent.returncode == 1  # a report failed: the step fails
    assert job.outputs["run"] == {
        "delivered": "1",
        "already-delivered": "0",
        "failed": "1",
        "unconfirmed": "0",
        "pdf-dir": "out/2026-10",
    }
    assert sorted(p.name for p in (first_job / "out" / "2026-10").glob("*.pdf")) == [
        "alpha.pdf",
        "beta.pdf",
    ]
    assert "| beta |" in job.summary.read_text(encoding="utf-8")  # the job summary's table
    assert [r.recipients for r in smtp.recorder.messages] == [["alpha@company.com"]]
    assert job.step("keep").returncode == 0  # `if: always()`: runs after the failure
    assert job.outputs["keep"] == {"upload": "true", "dir": job.outputs["ledger"]["dir"]}
    job.upload(gh_store, run_id=500, created_at="2026-11-01T06:09:00Z", head_repo=REPO_ID)

    # Weeks later, on a fresh runner (no cache, no workspace): re-run after the fix.
    del smtp.recorder.refuse["beta@company.com"]
    later = tmp_path / "job-2"
    two_reports(later)
    rerun = ActionRun(later, {"period": "2026-10"}, env)
    assert rerun.step("inputs").returncode == 0
    restored = rerun.step("ledger")
    assert restored.returncode == 0, restored.stderr
    assert "restored from run 500 (2026-11-01T06:09:00Z)" in restored.stdout
    sent = rerun.step("run")
    assert sent.returncode == 0, sent.stdout + sent.stderr
    assert rerun.outputs["run"]["delivered"] == "1"
    assert rerun.outputs["run"]["already-delivered"] == "1"
    assert rerun.outputs["run"]["failed"] == "0"
    # Each owner has the report once: alpha's was not sent again.
    assert sorted(r.recipients[0] for r in smtp.recorder.messages) == [
        "alpha@company.com",
        "beta@company.com",
    ]
    calls = (gh_store / "calls.log").read_text().splitlines()
    assert calls[-1] == f"api repos/{REPO}/actions/artifacts/9001/zip"


@pytest.mark.parametrize(
    ("inputs", "error"),
    [
        ({"command": "send"}, "::error::command must be 'run', 'run --recheck' or 'watch'"),
        ({"command": "watch", "period": "2026-10"}, "::error::period is for command 'run'"),
        ({"command": "run", "date": "2026-11-12"}, "::error::date is for command 'watch'"),
        ({"shard": "4/3"}, "::error::shard must be I/N with 1 <= I <= N"),
        ({"jobs": "two"}, "::error::jobs must be a whole number"),
        ({"dry-run": "yes"}, "::error::dry-run must be true or false, not 'yes'"),
        ({"ledger-name": "a/b"}, "::error::ledger-name may hold only"),
    ],
)
def test_the_action_refuses_what_it_cannot_do(
    tmp_path: Path, inputs: dict[str, str], error: str
) -> None:
    job = ActionRun(tmp_path, inputs, {"PATH": "/usr/bin:/bin"})
    result = job.step("inputs")
    assert result.returncode == 2
    assert result.stdout.startswith(error)
    assert job.outputs["inputs"] == {}


@pytest.mark.parametrize("why", ["deny", "no token"])
def test_a_ledger_that_cannot_be_looked_up_stops_before_anything_is_sent(
    tmp_path: Path, api: SandboxServer, smtp: SmtpServer, gh_store: Path, why: str
) -> None:
    env = action_env(gh_store, api, smtp)
    if why == "deny":
        (gh_store / "deny").touch()
    job = ActionRun(tmp_path / "job", {}, env)
    if why == "no token":
        job.inputs["github-token"] = ""
    assert job.step("inputs").returncode == 0
    result = job.step("ledger")
    assert result.returncode == 1
    assert "give the job 'permissions: actions: read'" in result.stdout
    # The run step's default `if: success()` skips it; the upload's condition is false too.
    steps = {s.get("id"): s for s in load_action()["runs"]["steps"]}
    assert "if" not in steps["run"]
    assert steps["keep"]["if"] == "always() && steps.ledger.outcome == 'success'"
    assert job.outcomes["ledger"] == "failure"


def test_the_readmes_quick_start_workflow_lints_and_calls_the_action(tmp_path: Path) -> None:
    quick_start = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    (block,) = re.findall(r"```yaml\n(.*?)```", quick_start, re.DOTALL)
    assert len(block.strip().splitlines()) <= 22  # "about fifteen lines"
    workflow = tmp_path / "reports.yml"
    workflow.write_text(block, encoding="utf-8")
    result = actionlint(workflow)
    assert result.returncode == 0, result.stdout + result.stderr
    data = yaml.safe_load(block)
    assert data["permissions"] == {"contents": "read", "actions": "read"}
    crons = [c["cron"] for c in data[True]["schedule"]]
    assert crons == ["0 6 1 * *", "0 6 3 * *", "0 7 * * *"]
    (call,) = [s for s in data["jobs"]["reports"]["steps"] if "reporter@" in s["uses"]]
    assert set(call.get("with", {})) <= set(load_action()["inputs"])
    # Each schedule picks its command: watch daily, corrections on the 3rd, else the reports.
    command = call["with"]["command"]
    assert "'0 7 * * *' && 'watch'" in command
    assert "'0 6 3 * *' && 'run --recheck'" in command
    assert command.endswith("|| 'run' }}")


def test_the_daily_watch_calls_the_action_which_keeps_its_own_ledger(
    tmp_path: Path, api: SandboxServer, smtp: SmtpServer, gh_store: Path
) -> None:
    workflow = load("watch.yml")
    assert workflow[True]["schedule"] == [{"cron": "0 7 * * *"}]
    watch = step(workflow["jobs"]["watch"], "Send the alerts due")
    assert watch["uses"] == "./"
    assert watch["with"]["command"] == "watch"
    assert set(watch["with"]) <= set(load_action()["inputs"])

    workspace = tmp_path / "job"
    (workspace / "config").mkdir(parents=True)
    write_config(
        workspace / "config" / "reports.toml",
        '[[reports]]\nname = "team"\nowners = ["team@company.com"]\nbudget_credits = 1000\n',
    )
    inputs = {"command": "watch", "date": "2026-11-20", "dry-run": "true"}
    job = ActionRun(workspace, inputs, action_env(gh_store, api, smtp))
    for step_id in ("inputs", "install-key", "install", "ledger"):
        result = job.step(step_id)
        assert result.returncode == 0, result.stdout + result.stderr
    assert job.outputs["inputs"] == {"artifact": "reporter-ledger-watch-1-of-1"}
    result = job.step("run")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "| team |" in job.summary.read_text(encoding="utf-8")
    # A team spending far over 1,000 credits a month: the 100% alert is written, not sent.
    (eml,) = (workspace / "out" / "2026-11" / "alerts").glob("*.eml")
    assert b"100% of the November budget used" in eml.read_bytes()
    assert smtp.recorder.messages == []


# --- a public repository: the ledger names every owner, so its artifact is sealed ---------


def _job_to_upload(
    workspace: Path, env: dict[str, str], private: str, key: str
) -> tuple[ActionRun, subprocess.CompletedProcess[str]]:
    two_reports(workspace)
    job = ActionRun(workspace, {"period": "2026-10", "ledger-key": key}, env, private=private)
    for step_id in ("inputs", "install"):
        assert job.step(step_id).returncode == 0
    return job, job.step("ledger")


@pytest.mark.parametrize("private", ["false", ""])  # "": the event does not say; the API does
def test_a_public_repository_without_a_ledger_key_is_refused_before_anything_is_sent(
    tmp_path: Path, api: SandboxServer, smtp: SmtpServer, gh_store: Path, private: str
) -> None:
    job, restored = _job_to_upload(tmp_path / "job", action_env(gh_store, api, smtp), private, "")
    assert restored.returncode == 1
    assert restored.stdout.startswith(f"::error::{REPO} is public")
    assert "Set the action's ledger-key input from a secret" in restored.stdout
    assert job.outcomes["ledger"] == "failure"  # so the run step never starts
    assert smtp.recorder.messages == []


def test_with_a_ledger_key_the_artifact_is_sealed_and_the_next_run_opens_it(
    tmp_path: Path, api: SandboxServer, smtp: SmtpServer, gh_store: Path
) -> None:
    env = action_env(gh_store, api, smtp)
    key = subprocess.run(
        [sys.executable, "-m", "reporter.sealed", "key"], capture_output=True, text=True, check=True
    ).stdout.strip()
    smtp.recorder.refuse["beta@company.com"] = "550 5.1.1 mailbox unavailable"
    job, restored = _job_to_upload(tmp_path / "job-1", env, "false", key)
    assert restored.returncode == 0, restored.stdout + restored.stderr
    assert job.step("run").returncode == 1
    kept = job.step("keep")
    assert kept.returncode == 0, kept.stderr
    assert key not in kept.stdout + kept.stderr
    job.upload(gh_store, run_id=600, created_at="2026-11-01T06:09:00Z", head_repo=REPO_ID)
    with zipfile.ZipFile(gh_store / "9000.zip") as archive:
        assert archive.namelist() == ["ledger.sealed"]
        sealed = archive.read("ledger.sealed")
    assert b"@company.com" not in sealed
    assert b"SQLite format" not in sealed
    summary = job.summary.read_text(encoding="utf-8")
    assert "| beta |" in summary
    assert "@" not in summary  # report names and counts, never an address

    # A wrong key: one readable line, nothing sent.
    del smtp.recorder.refuse["beta@company.com"]
    other = subprocess.run(
        [sys.executable, "-m", "reporter.sealed", "key"], capture_output=True, text=True, check=True
    ).stdout.strip()
    _, refused = _job_to_upload(tmp_path / "job-2", env, "false", other)
    assert refused.returncode == 1
    assert "Error: the ledger artifact cannot be opened with this ledger key" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert other not in refused.stdout + refused.stderr

    # The right key: the ledger (and its outbox) come back, and only beta is sent.
    rerun, reopened = _job_to_upload(tmp_path / "job-3", env, "false", key)
    assert reopened.returncode == 0, reopened.stdout + reopened.stderr
    assert (Path(rerun.outputs["ledger"]["dir"]) / "state.sqlite3.outbox").is_dir()
    assert rerun.step("run").returncode == 0
    assert sorted(r.recipients[0] for r in smtp.recorder.messages) == [
        "alpha@company.com",
        "beta@company.com",
    ]


def test_a_private_repository_keeps_working_without_a_key(
    tmp_path: Path, api: SandboxServer, smtp: SmtpServer, gh_store: Path
) -> None:
    (gh_store / "private").touch()
    job, restored = _job_to_upload(tmp_path / "job", action_env(gh_store, api, smtp), "", "")
    assert restored.returncode == 0, restored.stdout
    assert job.step("run").returncode == 0
    assert job.step("keep").returncode == 0
    assert job.outputs["keep"]["dir"] == job.outputs["ledger"]["dir"]
