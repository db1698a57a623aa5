"""Help, version, history and refused input answer without loading the report machinery.

pandas, httpx, WeasyPrint, vl-convert, Jinja and rich take most of a second to import;
a person typing ``reporter --help`` or a misspelt option should not wait for them. Each
case runs the installed entry point in a fresh interpreter and reads back which of
those modules it loaded, beside its exit status and output, so a case that silently
took another path fails too.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from reporter.ledger import Ledger
from tests.conftest import API_KEY, HISTORY_HEADER, user_environ, write_config

HEAVY = ("altair", "httpx", "jinja2", "numpy", "pandas", "rich", "vl_convert", "weasyprint")

# Loads the console script's entry point (as `reporter` does), runs it with the given
# arguments and writes what it left in sys.modules to the file named first.
_WRAPPER = """
import json, sys
from importlib.metadata import entry_points

report, *args = sys.argv[1:]
(script,) = entry_points(group="console_scripts", name="reporter")
main = script.load()
sys.argv = ["reporter", *args]
code = 0
try:
    main()
except SystemExit as exc:
    code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
loaded = sorted({name.partition(".")[0] for name in sys.modules})
with open(report, "w", encoding="utf-8") as file:
    json.dump({"code": code, "modules": loaded}, file)
"""

ONE_REPORT = """
[[reports]]
name = "marketing"
owners = ["manager@company.com"]
"""


def run_entry_point(
    tmp_path: Path, *args: str, env: dict[str, str] | None = None
) -> tuple[int, str, list[str]]:
    """Exit status, stdout + stderr, and the heavy modules loaded, for ``reporter *args``."""
    report = tmp_path / "modules.json"
    done = subprocess.run(
        [sys.executable, "-c", _WRAPPER, str(report), *args],
        env=user_environ(env),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        check=False,
    )
    assert report.exists(), done.stderr  # the wrapper itself must not have crashed
    result = json.loads(report.read_text(encoding="utf-8"))
    heavy = sorted(set(result["modules"]) & set(HEAVY))
    return result["code"], done.stdout + done.stderr, heavy


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--help"], "Usage: reporter [OPTIONS] COMMAND [ARGS]..."),
        (["-h"], "Commands:"),
        (["--version"], "reporter, version "),
        (["run", "--help"], "Usage: reporter run [OPTIONS]"),
        (["watch", "--help"], "Usage: reporter watch [OPTIONS]"),
        (["check", "--help"], "Usage: reporter check [OPTIONS]"),
        (["demo", "--help"], "Usage: reporter demo [OPTIONS]"),
        (["sandbox", "--help"], "Usage: reporter sandbox [OPTIONS]"),
        (["history", "--help"], "Usage: reporter history [OPTIONS]"),
    ],
)
def test_help_and_version_load_nothing_heavy(
    tmp_path: Path, args: list[str], expected: str
) -> None:
    code, output, heavy = run_entry_point(tmp_path, *args)
    assert (code, heavy) == (0, [])
    assert expected in output


def test_history_prints_the_ledger_without_loading_anything_heavy(tmp_path: Path) -> None:
    state = tmp_path / "state.sqlite3"
    with Ledger(state) as ledger:
        ledger.claim("marketing", "2026-10", ["manager@company.com"], force=False)
        ledger.mark(["marketing"], "2026-10", ["manager@company.com"], "sent")
    code, output, heavy = run_entry_point(tmp_path, "history", "--state", str(state))
    assert (code, heavy) == (0, [])
    assert output.splitlines()[0].split() == HISTORY_HEADER
    assert output.splitlines()[1].split()[:5] == [
        "2026-10",
        "marketing",
        "report",
        "manager@company.com",
        "sent",
    ]


@pytest.mark.parametrize(
    ("args", "env", "error"),
    [
        (["history", "--state", "missing.sqlite3"], {}, "Error: no delivery ledger at"),
        (["run", "--config", "missing.toml"], {}, "Error: "),
        (["run", "--bogus"], {}, "Error: No such option '--bogus'"),
        (["run", "--config", "{config}", "--jobs", "0"], {}, "Error: Invalid value for '--jobs'"),
        (["run", "--config", "{config}", "--period", "2026-13"], {}, "Error: unknown period"),
        (["run", "--config", "{config}", "--period", "soon"], {}, "Error: unknown period 'soon'"),
        (["run", "--config", "{config}", "--period", "2999-01"], {}, "has not started yet"),
        (["run", "--config", "{config}", "--period", "1969"], {}, "is too early"),
        (["run", "--config", "{config}", "--report", "nope"], {}, "Error: no report named 'nope'"),
        (["run", "--config", "{config}", "--shard", "3/2"], {}, "Error: "),
        (["run", "--config", "{config}", "--templates", "."], {}, "has no report.html.j2"),
        (
            ["run", "--config", "{config}", "--period", "2026-10", "--dry-run"],
            {},
            "Error: MAGNIFIC_API_KEY is not set",
        ),
        (
            ["run", "--config", "{config}", "--period", "2026-10", "--to", "me@", "--dry-run"],
            {},
            "Error: --to 'me@' is not an email address",
        ),
        (["watch", "--config", "{config}", "--date", "12/11"], {}, "Error: --date '12/11'"),
        (["watch", "--config", "missing.toml"], {}, "Error: "),
        (["check", "--config", "missing.toml"], {}, "Error: "),
    ],
)
def test_refused_input_is_refused_before_anything_heavy_loads(
    tmp_path: Path, args: list[str], env: dict[str, str], error: str
) -> None:
    config = write_config(tmp_path / "reports.toml", ONE_REPORT)
    args = [arg.replace("{config}", str(config)) for arg in args]
    code, output, heavy = run_entry_point(tmp_path, *args, env=env)
    assert (code, heavy) == (2, [])
    assert error in output
    assert "Traceback" not in output


def test_an_smtp_error_loads_only_the_url_parser(tmp_path: Path) -> None:
    """The API URL is checked (with httpx, the client's own parser) before SMTP is read;
    nothing else heavy is needed to refuse the missing SMTP_HOST."""
    config = write_config(tmp_path / "reports.toml", ONE_REPORT)
    args = ["run", "--config", str(config), "--period", "2026-10"]
    code, output, heavy = run_entry_point(tmp_path, *args, env={"MAGNIFIC_API_KEY": API_KEY})
    assert code == 2
    assert "Error: SMTP_HOST is not set" in output
    assert set(heavy) <= {"httpx", "rich"}  # httpx's own command line imports rich
