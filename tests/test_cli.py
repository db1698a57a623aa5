"""The CLI's contract: exit statuses and exact, one-line error messages, never a traceback."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from reporter.sandbox import SandboxServer
from tests.conftest import API_KEY, SmtpServer, reporter, write_config

GOOD = """
[[reports]]
name = "marketing"
owners = ["manager@company.com"]
"""


def dry_october(
    config: Path, tmp_path: Path, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    """``reporter run`` for October 2026, dry, writing under ``tmp_path``."""
    args = ["--config", str(config), "--period", "2026-10", "--dry-run"]
    return reporter("run", *args, "--out", str(tmp_path / "out"), env=env)


@pytest.mark.parametrize(
    ("reports", "message"),
    [
        (
            GOOD.replace("owners", "ownerz"),
            "reports[0] ('marketing'): ownerz: unknown key 'ownerz'; did you mean 'owners'?",
        ),
        (
            GOOD.replace('"manager@company.com"', '"manager@"'),
            "reports[0] ('marketing'): owners[0]: value is not a valid email address",
        ),
        (
            GOOD + 'project_references = ["not-a-uuid"]\n',
            "reports[0] ('marketing'): project_references[0]: Input should be a valid UUID",
        ),
        (
            GOOD + "group_ids = [0]\n",
            "reports[0] ('marketing'): group_ids[0]: Input should be greater than or equal to 1",
        ),
        (
            GOOD + GOOD,
            "reports[1] ('marketing'): name: already used by reports[0]",
        ),
        (
            GOOD.replace('"marketing"', '"Marketing Team"'),
            "reports[0] ('Marketing Team'): name: must be a lowercase slug",
        ),
        (
            GOOD.replace("owners = [", "owners = [[").replace("]\n", "]\n", 1) + "x = = 1\n",
            "invalid TOML",
        ),
        ("", "reports: required key is missing"),
    ],
)
def test_bad_config_exits_2_naming_file_report_and_field(
    tmp_path: Path, reports: str, message: str
) -> None:
    config = write_config(tmp_path / "team.toml", reports)
    result = reporter(
        "run", "--config", str(config), "--dry-run", env={"MAGNIFIC_API_KEY": API_KEY}
    )
    assert result.returncode == 2
    first = result.stderr.splitlines()[0]
    assert first.startswith(f"Error: {config}: ")
    assert message in first
    assert "Traceback" not in result.stderr


def test_toml_syntax_error_names_the_line(tmp_path: Path) -> None:
    config = write_config(tmp_path / "team.toml", GOOD + "budget_credits = = 3\n")
    result = reporter("run", "--config", str(config), env={"MAGNIFIC_API_KEY": API_KEY})
    assert result.returncode == 2
    assert "invalid TOML" in result.stderr
    assert "line 8" in result.stderr


def test_missing_config_file(tmp_path: Path) -> None:
    result = reporter("run", "--config", str(tmp_path / "nope.toml"))
    assert result.returncode == 2
    assert (
        result.stderr.splitlines()[0] == f"Error: {tmp_path / 'nope.toml'}: config file not found"
    )


def test_missing_api_key_exits_2_naming_the_variable(tmp_path: Path) -> None:
    config = write_config(tmp_path / "team.toml", GOOD)
    result = reporter("run", "--config", str(config), "--dry-run")
    assert result.returncode == 2
    assert result.stderr.splitlines()[0] == "Error: MAGNIFIC_API_KEY is not set"
    assert result.stderr.splitlines()[1].startswith("Hint: export MAGNIFIC_API_KEY")


def test_missing_smtp_host_is_refused_before_any_api_call(
    tmp_path: Path, api: SandboxServer
) -> None:
    config = write_config(tmp_path / "team.toml", GOOD)
    result = reporter(
        "run",
        "--config",
        str(config),
        "--period",
        "2026-10",
        env={"MAGNIFIC_API_KEY": API_KEY, "MAGNIFIC_API_BASE_URL": api.url},
    )
    assert result.returncode == 2
    assert result.stderr.splitlines()[0] == "Error: SMTP_HOST is not set"
    assert api.requests == []


@pytest.mark.parametrize(
    ("period", "message"),
    [
        ("2026-13", "Error: unknown period '2026-13': month must be in 1..12"),
        ("October", "Error: unknown period 'October'"),
        ("2099-01", "Error: period 2099-01 has not started yet"),
        ("2026-W60", "Error: unknown period '2026-W60'"),
    ],
)
def test_bad_period_exits_2(tmp_path: Path, period: str, message: str) -> None:
    config = write_config(tmp_path / "team.toml", GOOD)
    result = reporter(
        "run",
        "--config",
        str(config),
        "--period",
        period,
        "--dry-run",
        env={"MAGNIFIC_API_KEY": API_KEY},
    )
    assert result.returncode == 2
    assert result.stderr.startswith(message)


def test_unknown_report_name_lists_the_known_ones(tmp_path: Path) -> None:
    config = write_config(tmp_path / "team.toml", GOOD)
    result = reporter(
        "run",
        "--config",
        str(config),
        "--report",
        "sales",
        "--dry-run",
        env={"MAGNIFIC_API_KEY": API_KEY},
    )
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"Error: no report named 'sales' in {config}",
        "Hint: reports in the config: marketing",
    ]


def test_rejected_key_exits_2_with_one_line_and_no_secret(
    tmp_path: Path, api: SandboxServer
) -> None:
    config = write_config(tmp_path / "team.toml", GOOD)
    wrong = "sk-wrong-8d7c6b5a4f3e"
    result = dry_october(
        config, tmp_path, {"MAGNIFIC_API_KEY": wrong, "MAGNIFIC_API_BASE_URL": api.url}
    )
    assert result.returncode == 2
    assert "Error: the Magnific API rejected the key in MAGNIFIC_API_KEY (401)" in result.stderr
    assert "Traceback" not in result.stderr
    assert wrong not in result.stdout + result.stderr


def test_unreachable_api_fails_the_report_with_exit_1(tmp_path: Path) -> None:
    from tests.conftest import free_port

    config = write_config(tmp_path / "team.toml", "[api]\nmax_attempts = 2\n" + GOOD)
    result = dry_october(
        config,
        tmp_path,
        {"MAGNIFIC_API_KEY": API_KEY, "MAGNIFIC_API_BASE_URL": f"http://127.0.0.1:{free_port()}"},
    )
    assert result.returncode == 1
    assert "marketing: FAILED (the Magnific API did not answer successfully: cannot reach" in (
        result.stderr
    )
    assert "(gave up after 2 attempts" in result.stderr
    assert "FAILED" in result.stdout
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("--jobs=0", "Error: Invalid value for '--jobs': 0 is not in the range 1<=x<=64."),
        ("--bogus", "Error: No such option '--bogus'."),
    ],
)
def test_a_bad_option_is_one_error_line_and_a_hint(
    tmp_path: Path, option: str, message: str
) -> None:
    config = write_config(tmp_path / "team.toml", GOOD)
    result = reporter(
        "run", "--config", str(config), "--dry-run", option, env={"MAGNIFIC_API_KEY": API_KEY}
    )
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert lines[0].startswith(message)
    assert lines[1:] == ["Hint: see 'reporter run --help'"]


# --- owners' addresses, end to end -------------------------------------------


def _send_october(
    config: Path, tmp_path: Path, api: SandboxServer, smtp_env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    args = ["--config", str(config), "--period", "2026-10", "--out", str(tmp_path / "out")]
    return reporter(
        "run",
        *args,
        "--state",
        str(tmp_path / "state.sqlite3"),
        env={"MAGNIFIC_API_KEY": API_KEY, "MAGNIFIC_API_BASE_URL": api.url, **smtp_env},
    )


def test_an_owner_listed_twice_gets_one_message_and_counts_once(
    tmp_path: Path, api: SandboxServer, smtp: SmtpServer
) -> None:
    owners = '["Ann <ann@company.com>", "ANN@COMPANY.COM", "bob@company.com"]'
    config = write_config(tmp_path / "team.toml", GOOD.replace('["manager@company.com"]', owners))
    result = _send_october(config, tmp_path, api, smtp.env())
    assert result.returncode == 0, result.stderr
    (received,) = smtp.recorder.messages
    assert received.recipients == ["ann@company.com", "bob@company.com"]
    assert received.message["To"] == "ann@company.com, bob@company.com"
    assert "sent to 2 owners" in result.stdout


def test_an_internationalised_domain_is_sent_as_punycode(
    tmp_path: Path, api: SandboxServer, smtp: SmtpServer
) -> None:
    config = write_config(
        tmp_path / "team.toml", GOOD.replace("manager@company.com", "ann@bücher.de")
    )
    result = _send_october(config, tmp_path, api, smtp.env())
    assert result.returncode == 0, result.stderr
    (received,) = smtp.recorder.messages
    assert received.recipients == ["ann@xn--bcher-kva.de"]
    assert received.message["To"] == "ann@xn--bcher-kva.de"


TWO_REPORTS = (
    GOOD
    + """
[[reports]]
name = "intl"
owners = ["jörg@company.com"]
"""
)


def test_a_utf8_local_part_is_sent_with_smtputf8(
    tmp_path: Path, api: SandboxServer, smtp: SmtpServer
) -> None:
    """aiosmtpd offers SMTPUTF8 by default, as most servers do today."""
    config = write_config(tmp_path / "team.toml", TWO_REPORTS)
    result = _send_october(config, tmp_path, api, smtp.env())
    assert result.returncode == 0, result.stderr
    got = smtp.recorder.by_recipient()
    assert sorted(got) == ["jörg@company.com", "manager@company.com"]
    assert got["jörg@company.com"][0]["To"] == "jörg@company.com"


def test_a_utf8_local_part_without_smtputf8_fails_that_report_only(
    tmp_path: Path, api: SandboxServer, smtp_ascii: SmtpServer
) -> None:
    config = write_config(tmp_path / "team.toml", TWO_REPORTS)
    for attempt in (1, 2):  # the re-run meets the same server and must not crash either
        result = _send_october(config, tmp_path, api, smtp_ascii.env())
        assert result.returncode == 1, result.stderr
        assert "Traceback" not in result.stderr
        failed = [line for line in result.stderr.splitlines() if line.startswith("intl: FAILED")]
        assert len(failed) == 1, result.stderr
        assert (
            f"(jörg@company.com: the mail server 127.0.0.1:{smtp_ascii.port} does not offer"
            " SMTPUTF8, which the address jörg@company.com needs)"
        ) in failed[0]
        assert list(smtp_ascii.recorder.by_recipient()) == ["manager@company.com"]
        assert len(smtp_ascii.recorder.messages) == 1, attempt
    assert "already delivered" in result.stdout


# --- --out and the API URL, checked before any API call -------------------------


@pytest.mark.parametrize(
    ("out", "reason"),
    [
        ("a-file", "it is a file, not a directory"),
        ("a-file/reports", "Not a directory"),
        ("/proc/self", "No such file or directory"),  # a directory even root cannot write in
        ("/sys/reporter-out", "Operation not permitted"),
    ],
)
def test_an_unwritable_out_is_refused_before_any_api_call(
    tmp_path: Path, api: SandboxServer, out: str, reason: str
) -> None:
    (tmp_path / "a-file").write_text("not a directory", encoding="utf-8")
    config = write_config(tmp_path / "team.toml", GOOD)
    result = reporter(
        "run",
        *("--config", str(config), "--period", "2026-10", "--dry-run", "--out", out),
        env={"MAGNIFIC_API_KEY": API_KEY, "MAGNIFIC_API_BASE_URL": api.url},
        cwd=tmp_path,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [
        f"Error: --out {out}: cannot write reports there: {reason}",
        "Hint: pass --out with a directory you can create and write to",
    ]
    assert api.requests == []


def _key_warnings(base_url: str, tmp_path: Path) -> list[str]:
    config = write_config(
        tmp_path / "team.toml",
        "[api]\nmax_attempts = 1\nconnect_timeout_seconds = 0.5\n" + GOOD,
    )
    result = dry_october(
        config, tmp_path, {"MAGNIFIC_API_KEY": API_KEY, "MAGNIFIC_API_BASE_URL": base_url}
    )
    assert "Traceback" not in result.stderr
    return [line for line in result.stderr.splitlines() if line.startswith("Warning:")]


def test_plain_http_to_another_host_warns_once_that_the_key_travels_in_clear(
    tmp_path: Path,
) -> None:
    # TEST-NET-1 (RFC 5737): never routed, so the warning is all this run achieves.
    assert _key_warnings("http://192.0.2.1:8080", tmp_path) == [
        "Warning: MAGNIFIC_API_BASE_URL is plain http:// to 192.0.2.1:"
        " the API key travels in clear text; use https://"
    ]


def test_plain_http_to_loopback_does_not_warn(tmp_path: Path, api: SandboxServer) -> None:
    assert _key_warnings(api.url, tmp_path) == []


@pytest.mark.parametrize(
    ("url", "in_clear"),
    [
        ("http://api.magnific.example", True),
        ("http://10.0.0.7:8080", True),
        ("http://[2001:db8::1]", True),
        ("https://api.magnific.com", False),
        ("http://127.0.0.1:8080", False),
        ("http://127.3.2.1", False),
        ("http://[::1]:8080", False),
        ("http://localhost:8080", False),
        ("http://LOCALHOST", False),
    ],
)
def test_which_api_urls_send_the_key_in_clear(url: str, in_clear: bool) -> None:
    from reporter.environment import sends_key_in_clear

    assert sends_key_in_clear(url) is in_clear
