"""Every command the README and the ``--help`` texts show runs as typed, on loopback.

The commands are extracted, not copied: a new example in README.md or in a
command's docstring is covered by these tests without touching them. Only what
makes a command hermetic is changed: the stand-in API and an aiosmtpd server on
loopback instead of the real ones, temporary directories for ``--out`` and
``--state``, and a free port instead of the example's 8080.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from reporter.sandbox import SandboxServer
from tests.conftest import API_KEY, SMTP_PASSWORD, SmtpServer, free_port, user_environ

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

# Commands a test may not run as written, and why; every other documented command runs.
NOT_RUN = {
    "scripts/test": "it runs this test suite",
}
# Too slow for the suite (minutes each): their --help runs instead.
HELP_ONLY = ("benchmarks/run.py",)


# --- extracting the documented commands --------------------------------------


@dataclass
class Command:
    text: str  # as documented, continuation lines joined
    expected: list[str] = field(default_factory=list)  # transcript lines that follow it


@dataclass
class Session:
    """Commands typed one after another in one shell, as a block shows them."""

    where: str
    commands: list[Command]


def _joined(lines: list[str]) -> list[str]:
    """Shell lines with backslash continuations joined."""
    out: list[str] = []
    pending = ""
    for line in lines:
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
        else:
            out.append((pending + line).strip())
            pending = ""
    return [line for line in out if line]


def readme_sessions() -> list[Session]:
    """```sh blocks: each line is a command on its own. ```console blocks: one session of
    ``$ `` commands, each followed by the output the README promises."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    sessions: list[Session] = []
    for number, match in enumerate(re.finditer(r"^```(\w+)\n(.*?)^```", text, re.M | re.S)):
        language, body = match.group(1), match.group(2).splitlines()
        where = f"README.md block {number + 1}"
        if language == "sh":
            sessions += [Session(where, [Command(line)]) for line in _joined(body)]
        elif language == "console":
            commands: list[Command] = []
            for line in body:
                if line.startswith("$ "):
                    commands.append(Command(line[2:]))
                elif commands and line.strip():
                    commands[-1].expected.append(line)
            sessions.append(Session(where, commands))
    return sessions


def _help(*command: str) -> str:
    result = subprocess.run(
        [str(BIN / "reporter"), *command, "--help"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return result.stdout


def command_names() -> list[str]:
    """The commands ``reporter --help`` lists."""
    listing = _help().partition("\nCommands:\n")[2]
    return [line.split()[0] for line in listing.splitlines() if line.startswith("  ")]


def help_sessions() -> list[Session]:
    """The indented lines after ``Example:`` (or ``Examples:``) in ``reporter --help`` and
    each command's."""
    sessions = []
    for command in ["", *command_names()]:
        text = _help(*([command] if command else []))
        example = re.split(r"Examples?:\n", text, maxsplit=1)[-1] if "Example" in text else ""
        lines = []
        for line in example.splitlines():
            if not line.startswith("    "):
                break
            lines.append(line)
        assert lines, f"`reporter {command} --help` shows no example"
        sessions.append(Session(f"reporter {command} --help".replace("  ", " "), _commands(lines)))
    return sessions


def _commands(lines: list[str]) -> list[Command]:
    return [Command(line) for line in _joined(lines)]


# --- running them -------------------------------------------------------------


@dataclass
class Shell:
    """Runs documented commands from the repository root, as a user of a clone types them."""

    tmp: Path
    api: SandboxServer
    smtp: SmtpServer
    env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)  # stands in for the examples' 8080
    background: list[subprocess.Popen[str]] = field(default_factory=list)

    def loopback(self, name: str, documented: str) -> str:
        """The value a documented variable gets here: every one must have a stand-in."""
        values = {
            "MAGNIFIC_API_KEY": API_KEY if documented == "..." else documented,
            "MAGNIFIC_API_BASE_URL": documented.replace(":8080", f":{self.port}"),
            "SMTP_HOST": "127.0.0.1",
            "SMTP_PORT": str(self.smtp.port),
            "SMTP_USERNAME": documented,
            "SMTP_PASSWORD": SMTP_PASSWORD,
        }
        assert name in values, f"documented variable {name} has no loopback stand-in"
        return values[name]

    def base_env(self) -> dict[str, str]:
        keep = user_environ()
        return {
            **keep,
            "PATH": f"{BIN}{os.pathsep}{keep.get('PATH', '')}",
            # What a user has exported before typing an example; the README's transcript
            # leaves the URL unset, where the default is the real API.
            "MAGNIFIC_API_KEY": API_KEY,
            "MAGNIFIC_API_BASE_URL": self.api.url,
            "SMTP_HOST": "127.0.0.1",
            "SMTP_PORT": str(self.smtp.port),
            "SMTP_USERNAME": "reports",
            "SMTP_PASSWORD": SMTP_PASSWORD,
            "SMTP_SECURITY": "none",
            **self.env,
        }

    def argv(self, words: list[str]) -> list[str]:
        """Temporary directories for what a command writes; a free port for 8080."""
        slow = [i for i, word in enumerate(words) if word in HELP_ONLY]
        if slow:
            return [*words[: slow[0] + 1], "--help"]
        words = [str(self.port) if word == "8080" else word for word in words]
        places = {"--out": self.tmp / "out", "--state": self.tmp / "state.sqlite3"}
        for i, word in enumerate(words[:-1]):
            if word in places:
                words[i + 1] = str(places[word])
        sub = words[1] if words[0] == "reporter" and len(words) > 1 else words[0]
        if sub in ("run", "demo", "scripts/demo") and "--out" not in words:
            words += ["--out", str(places["--out"])]
        if sub in ("run", "history") and "--state" not in words:
            words += ["--state", str(places["--state"])]
        return words

    def run(self, command: Command) -> subprocess.CompletedProcess[str] | None:
        words = shlex.split(command.text, comments=True)
        if words[0] == "export":
            for assignment in words[1:]:
                name, _, value = assignment.partition("=")
                self.env[name] = self.loopback(name, value)
            return None
        env = self.base_env()
        while "=" in words[0]:
            name, _, value = words.pop(0).partition("=")
            env[name] = self.loopback(name, value)
        if words[-1] == "&":
            self.start(self.argv(words[:-1]), env)
            return None
        return subprocess.run(
            self.argv(words),
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )

    def start(self, argv: list[str], env: dict[str, str]) -> None:
        """A ``&`` command: started, and ready once it prints its URL (the sandbox)."""
        process = subprocess.Popen(
            argv, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self.background.append(process)
        assert process.stdout is not None
        line = process.stdout.readline()
        assert f"http://127.0.0.1:{self.port}/" in line, (line, process.stderr.read())
        url = line.split(" on ", 1)[1].split()[0]
        answer = httpx.post(
            url,
            json={"granularity": "month", "start_date": "2026-10-01", "end_date": "2026-10-31"},
            headers={"x-magnific-api-key": "any"},
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["data"], "the stand-in API answered with no usage"

    def stop_background(self) -> None:
        """Ctrl-C, as the sandbox's banner says: it must stop cleanly."""
        for process in self.background:
            process.send_signal(signal.SIGINT)
            _, stderr = process.communicate(timeout=30)
            assert process.returncode == 0, stderr
            assert "Traceback" not in stderr, stderr


def _folded(line: str) -> str:
    return " ".join(line.split())


def _check(command: Command, result: subprocess.CompletedProcess[str]) -> None:
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output
    assert result.returncode == 0, f"`{command.text}` exited {result.returncode}:\n{output}"
    printed = {_folded(line) for line in output.splitlines()}
    missing = [line for line in command.expected if _folded(line) not in printed]
    assert not missing, f"`{command.text}` did not print {missing}:\n{output}"


SESSIONS = readme_sessions() + help_sessions()


@pytest.mark.parametrize(
    "session",
    SESSIONS,
    ids=[
        f"{s.where}: {shlex.join(shlex.split(s.commands[0].text, comments=True))}" for s in SESSIONS
    ],
)
def test_documented_commands_run_as_shown(
    session: Session, tmp_path: Path, api: SandboxServer, smtp_auth: SmtpServer
) -> None:
    shell = Shell(tmp_path, api, smtp_auth)
    ran = 0
    try:
        if any(" history" in c.text for c in session.commands):
            # A ledger to print: the README's own run, delivered to the loopback server.
            seed = shell.run(Command("reporter run --config config/example.toml --period 2026-10"))
            assert seed is not None
            assert seed.returncode == 0, seed.stderr
        for command in session.commands:
            if command.text.split()[0] in NOT_RUN:
                continue
            result = shell.run(command)
            if result is not None:
                _check(command, result)
                ran += 1
    finally:
        if shell.background:
            shell.stop_background()
    if not all(c.text.split()[0] in NOT_RUN for c in session.commands):
        assert ran, f"{session.where}: nothing was run"


def test_every_documented_session_is_found() -> None:
    """The extraction itself: the README's run, its re-run and the sandbox example are there."""
    texts = [c.text for s in SESSIONS for c in s.commands]
    assert "reporter run --config config/example.toml --period 2026-10" in texts
    assert any(t.startswith("reporter sandbox --port 8080 &") for t in texts)
    assert any(t.startswith("MAGNIFIC_API_BASE_URL=http://127.0.0.1:8080") for t in texts)
    assert "reporter history --period 2026-10" in texts
    assert any(t.startswith("scripts/demo ") for t in texts)
    assert set(command_names()) == {"run", "demo", "sandbox", "history", "check", "watch"}


def test_readme_command_table_matches_each_commands_options() -> None:
    """Every option the README's table lists for a command is one its --help knows."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| `reporter (\w+)([^`]*)` \|", text, re.M)
    assert {name for name, _ in rows} == set(command_names())
    for name, synopsis in rows:
        shown = set(re.findall(r"--[a-z-]+|(?<![\w-])-[a-z]\b", synopsis))
        known = set(re.findall(r"--[a-z-]+|(?<![\w-])-[a-z]\b", _help(name)))
        assert shown <= known, f"reporter {name}: {sorted(shown - known)} not in --help"
