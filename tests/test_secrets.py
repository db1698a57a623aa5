"""No secret leaves the process, even when a server echoes it back in an error.

A loopback API answers some reports with 400, 500 or 401 and an error body that
quotes every secret it could know; a loopback mail server refuses an owner with
a reply that quotes the SMTP password. ``reporter run`` runs as a subprocess, and
no secret may appear in its output, the GitHub step summary, the ledger, or any
file it wrote.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from reporter.redact import REDACTED, Redactor
from reporter.sandbox import SandboxData, dumps
from tests.conftest import API_KEY, SMTP_PASSWORD, SmtpServer, pdf_text, user_environ

URL_PASSWORD = "url-pass-6a1d93ce"
SECRETS = (API_KEY, SMTP_PASSWORD, URL_PASSWORD)
ECHOED = f"no such project for key {API_KEY} (smtp {SMTP_PASSWORD}, url {URL_PASSWORD})"
FAULTS = {400: 400, 500: 500, 401: 401}  # group id -> status answered with the echo


class EchoingApi:
    """The stand-in API's data, but a request for group 400, 500 or 401 gets that status
    and a JSON error body quoting the secrets, as a careless API might."""

    def __init__(self, data: SandboxData) -> None:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                group = (body.get("group_ids") or [None])[0]
                if group in FAULTS:
                    status, content = FAULTS[group], json.dumps({"message": ECHOED}).encode()
                else:
                    status, payload = outer.data.answer(body)
                    content = dumps(payload)
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

        self.data = data
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://reports:{URL_PASSWORD}@127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture
def echoing_api(sandbox_data: SandboxData) -> Iterator[EchoingApi]:
    api = EchoingApi(sandbox_data)
    api.thread.start()
    try:
        yield api
    finally:
        api.server.shutdown()
        api.server.server_close()


CONFIG = """[email]
from = "Usage Reports <reports@company.com>"

[api]
max_attempts = 1

[[reports]]
name = "fine"
owners = ["manager@company.com", "cfo@company.com"]

[[reports]]
name = "refused"
owners = ["manager@company.com"]
group_ids = [400]

[[reports]]
name = "broken"
owners = ["manager@company.com"]
group_ids = [500]
"""


def _run(
    tmp_path: Path, config: str, api: EchoingApi, smtp: SmtpServer, *extra: str
) -> subprocess.CompletedProcess[str]:
    (tmp_path / "team.toml").write_text(config, encoding="utf-8")
    env = user_environ()
    env |= {
        "MAGNIFIC_API_KEY": API_KEY,
        "MAGNIFIC_API_BASE_URL": api.url,
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": str(smtp.port),
        "SMTP_SECURITY": "none",
        "SMTP_USERNAME": "reports",
        "SMTP_PASSWORD": SMTP_PASSWORD,
        "GITHUB_STEP_SUMMARY": str(tmp_path / "step-summary.md"),
    }
    extra = ("--period", "2026-10", "--out", "out", "--state", "state.sqlite3", *extra)
    return subprocess.run(
        [str(Path(sys.executable).parent / "reporter"), "run", "--config", "team.toml", *extra],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def _leaks(tmp_path: Path, result: subprocess.CompletedProcess[str]) -> dict[str, list[str]]:
    """Where each secret shows up: the outputs, then every file the run left behind."""
    places = {"stdout": result.stdout.encode(), "stderr": result.stderr.encode()}
    for path in sorted(tmp_path.rglob("*")):
        if path.is_file() and path.name != "team.toml":
            places[str(path.relative_to(tmp_path))] = path.read_bytes()
            if path.suffix == ".pdf":
                places[f"{path.name} (text)"] = pdf_text(path).encode()
    return {
        secret: [where for where, content in places.items() if secret.encode() in content]
        for secret in SECRETS
    }


def test_secrets_echoed_by_the_api_or_mail_server_are_redacted_everywhere(
    tmp_path: Path, echoing_api: EchoingApi, smtp_auth: SmtpServer
) -> None:
    smtp_auth.recorder.refuse["cfo@company.com"] = f"550 5.1.1 unknown user (auth {SMTP_PASSWORD})"
    result = _run(tmp_path, CONFIG, echoing_api, smtp_auth, "--verbose")
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    # The errors are still told, with the secrets blacked out.
    assert (
        "refused: FAILED (the Magnific API refused the request (400): no such project for"
        " key [redacted] (smtp [redacted], url [redacted])" in result.stderr
    )
    assert "[redacted]" in result.stdout
    assert "[redacted]" in (tmp_path / "step-summary.md").read_text(encoding="utf-8")
    assert (tmp_path / "state.sqlite3").exists()
    assert list(smtp_auth.recorder.by_recipient()) == ["manager@company.com"]
    assert _leaks(tmp_path, result) == {secret: [] for secret in SECRETS}


def test_a_rejected_key_echoed_in_the_error_line_is_redacted(
    tmp_path: Path, echoing_api: EchoingApi, smtp_auth: SmtpServer
) -> None:
    config = (
        CONFIG.split("[[reports]]", maxsplit=1)[0]
        + '[[reports]]\nname = "x"\nowners = ["a@b.com"]\n'
    )
    result = _run(tmp_path, config + "group_ids = [401]\n", echoing_api, smtp_auth)
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines()[-2].startswith(
        "Error: the Magnific API rejected the key in MAGNIFIC_API_KEY (401): no such project for"
        " key [redacted]"
    )
    assert _leaks(tmp_path, result) == {secret: [] for secret in SECRETS}


@pytest.mark.parametrize(
    ("environ", "text", "expected"),
    [
        ({"MAGNIFIC_API_KEY": "sk-1234"}, "key sk-1234!", "key [redacted]!"),
        ({"SMTP_PASSWORD": "hunter22"}, "pw=hunter22", "pw=[redacted]"),
        (
            {"MAGNIFIC_API_BASE_URL": "http://u:p%40ss@h"},
            "p%40ss and p@ss",
            "[redacted] and [redacted]",
        ),
        ({"SMTP_HOST": "smtp://user:s3cr3t@mail"}, "s3cr3t", "[redacted]"),
        ({"MAGNIFIC_API_KEY": "abc"}, "abc", "abc"),  # too short to mean anything: kept
        ({"HOME": "/root"}, "/root", "/root"),
    ],
)
def test_redactor_knows_the_secrets_of_the_environment(
    environ: dict[str, str], text: str, expected: str
) -> None:
    assert Redactor.from_environ(environ)(text) == expected


TEAMS_HOOK = (
    "https://prod-01.example.logic.azure.com/workflows/9f2e7a1c4b/triggers/manual/paths/invoke"
    "?api-version=2016-06-01&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig=Ab+Cd%2Bs3cret%2FEf%3D"
)


HOOK = {"TEAMS_WEBHOOK_OPS": TEAMS_HOOK}


@pytest.mark.parametrize(
    ("environ", "text", "expected"),
    [
        # The value of a secret-bearing query parameter, however a server quotes it.
        (HOOK, "sig=Ab+Cd%2Bs3cret%2FEf%3D", "sig=[redacted]"),  # as written
        (HOOK, "sig=Ab+Cd+s3cret/Ef=", "sig=[redacted]"),  # URL-decoded
        (HOOK, "sig=Ab Cd+s3cret/Ef=", "sig=[redacted]"),  # form-decoded: "+" is a space
        (HOOK, "sig=Ab%20Cd%2Bs3cret/Ef%3D", "sig=[redacted]"),  # re-encoded: "%20"
        (HOOK, "sig=Ab+Cd%2bs3cret/Ef%3d", "sig=[redacted]"),  # partly decoded, lower hex
        (HOOK, "sig=Ab%2BCd%252Bs3cret%252FEf%253D", "sig=[redacted]"),  # encoded twice
        (
            {"SLACK_API_URL": "https://proxy.example/api?access_token=tok%2Fsecret9"},
            "token tok/secret9",
            "token [redacted]",
        ),
        (
            {"MAGNIFIC_API_BASE_URL": "https://gw.example/v1?Key=abcd+efgh"},
            "abcd%20efgh",
            "[redacted]",
        ),
        (
            {"MAGNIFIC_API_BASE_URL": "https://gw.example/v1?CODE=q1w2e3r4"},
            "code q1w2e3r4",
            "code [redacted]",
        ),
        # A webhook's URL is its credential: its path, its id alone, JSON-escaped.
        (HOOK, "/workflows/9f2e7a1c4b/triggers/manual/paths/invoke", "[redacted]"),
        (HOOK, "no workflow 9f2e7a1c4b", "no workflow [redacted]"),
        (
            {"SLACK_WEBHOOK_OPS": "https://hooks.slack.com/services/T0A1/B0B2/x9Y8z7W6"},
            "\\/services\\/T0A1\\/B0B2\\/x9Y8z7W6",
            "[redacted]",
        ),
    ],
)
def test_a_url_secret_is_redacted_in_every_form_a_server_may_quote_it(
    environ: dict[str, str], text: str, expected: str
) -> None:
    redacted = Redactor.from_environ(environ)(f"Bad Request: {text} (HTTP/1.1)")
    assert redacted == f"Bad Request: {expected} (HTTP/1.1)"


def test_a_config_named_webhook_variable_is_redacted_decoded_once_the_config_is_read() -> None:
    environ = {"OPS_TEAMS": TEAMS_HOOK}  # no WEBHOOK in its name: known only from the config
    decoded = urllib.parse.unquote(TEAMS_HOOK.partition(".com")[2])
    assert Redactor.from_environ(environ).also(environ, ["OPS_TEAMS"])(decoded) == REDACTED


@pytest.mark.parametrize(
    ("environ", "text"),
    [
        ({"SLACK_API_URL": "https://slack.com/api"}, "/api/files.completeUploadExternal"),
        ({"MAGNIFIC_API_BASE_URL": "https://api.example/v1?code=1"}, "code=1"),
        ({"MAGNIFIC_API_BASE_URL": "https://api.example/v1?page=abcdef"}, "page=abcdef"),
        ({"TEAMS_WEBHOOK_OPS": TEAMS_HOOK}, "triggers manual paths invoke workflows"),
    ],
)
def test_ordinary_parts_of_a_url_are_kept(environ: dict[str, str], text: str) -> None:
    assert Redactor.from_environ(environ)(text) == text


def test_overlapping_secrets_are_redacted_as_one_stretch() -> None:
    redact = Redactor.of(["xyzabcd", "abcd1234"])
    assert redact("see xyzabcd1234 here") == "see [redacted] here"
