"""`reporter check` against the stand-in API in every reading of its documentation, and
real SMTP servers on loopback: it names what it met, and sends nothing."""

from __future__ import annotations

import csv
import datetime as dt
import sqlite3
import ssl
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from reporter.check import (
    Finding,
    date_form_finding,
    end_finding,
    filter_findings,
    smtputf8_finding,
)
from reporter.magnific import EndProbe
from reporter.periods import last_complete_month
from reporter.sandbox import (
    DATE_FORMS,
    END_MEANINGS,
    DateForms,
    EndMeaning,
    SandboxData,
    SandboxServer,
    synthetic_team,
)
from tests.conftest import (
    API_KEY,
    SMTP_PASSWORD,
    Recorder,
    SmtpServer,
    free_port,
    reporter,
    write_config,
)
from tests.test_break import BUSY, OFFERS_AUTH, ScriptedSmtp

MARKETING = "a1b2c3d4-1111-4000-8000-000000000001"
UNKNOWN = "a1b2c3d4-1111-4000-8000-0000000000ff"

REPORTS = f"""
[[reports]]
name = "marketing"
owners = ["manager@company.com"]
project_references = ["{MARKETING}"]

[[reports]]
name = "team"
owners = ["manager@company.com"]
"""

_LAST_MONTH = last_complete_month(dt.datetime.now(dt.UTC).date())
WINDOW = f"{_LAST_MONTH.shifted(-2).key}..{_LAST_MONTH.key}"


@pytest.fixture(scope="module")
def live_data() -> SandboxData:
    """The stand-in's team with today's date: `reporter check` looks at the last days and
    months as the real clock has them."""
    return SandboxData(synthetic_team(users=48, seed=7))


def stand_in(
    data: SandboxData, dates: DateForms = "both", end: EndMeaning = "inclusive"
) -> SandboxServer:
    return SandboxServer(data, api_key=API_KEY, dates=dates, end=end)


def check(
    tmp_path: Path,
    api: SandboxServer,
    smtp_env: dict[str, str],
    *args: str,
    reports: str = REPORTS,
    api_table: str = "",
) -> tuple[int, list[str], str]:
    config = write_config(tmp_path / "reports.toml", api_table + reports)
    env = {"MAGNIFIC_API_KEY": API_KEY, "MAGNIFIC_API_BASE_URL": api.url, **smtp_env}
    result = reporter(
        "check",
        "--config",
        str(config),
        "--out",
        str(tmp_path / "out"),
        "--state",
        str(tmp_path / "state" / "ledger.sqlite3"),
        *args,
        env=env,
    )
    assert "Traceback" not in result.stderr
    return result.returncode, result.stdout.splitlines(), result.stderr


def line(lines: list[str], item: str) -> str:
    (found,) = [text for text in lines if text[6:].startswith(item + ":")]
    return found


# --- every reading of the documentation ------------------------------------------------


@pytest.mark.parametrize("end", END_MEANINGS)
@pytest.mark.parametrize("dates", DATE_FORMS)
def test_check_names_the_date_form_and_end_it_met_and_sends_nothing(
    tmp_path: Path, live_data: SandboxData, smtp: SmtpServer, dates: DateForms, end: EndMeaning
) -> None:
    with stand_in(live_data, dates, end) as api:
        code, lines, stderr = check(tmp_path, api, smtp.env())
        url = api.url
    assert code == 0, [*lines, stderr]
    accepted = {
        "both": "the API accepts datetimes (2026-10-01T00:00:00.000Z) and plain dates (2026-10-01)",
        "datetime": "the API accepts only datetimes (2026-10-01T00:00:00.000Z);"
        " date_format = auto sends them",
        "date": "the API accepts only plain dates (2026-10-01); date_format = auto switches to them"
        " after one refused request per run",
    }[dates]
    assert line(lines, "date format").startswith(f"ok    date format: {accepted}")
    form = "plain" if dates == "date" else "datetime"
    assert line(lines, "end_date").startswith(
        f"ok    end_date: {end} with {form} dates (an answer ending "
    )
    assert line(lines, "API key") == f"ok    API key: accepted by {url}"
    assert line(lines, "report marketing").startswith("ok    report marketing: its filters match ")
    assert line(lines, "report team") == "ok    report team: no filters: the whole team"
    assert (
        line(lines, "SMTP")
        == f"ok    SMTP: 127.0.0.1:{smtp.port}, no encryption, no login (SMTP_USERNAME unset);"
        " nothing sent"
    )
    assert lines[-1] == f"All {len(lines) - 1} item(s) OK; nothing was sent."
    assert smtp.recorder.messages == []
    assert not (tmp_path / "out").exists()
    assert not (tmp_path / "state").exists()
    # One request per date form, two for the end probe, one for the filtered report.
    assert sum(r.status == 422 for r in api.requests) == (0 if dates == "both" else 1)
    assert len(api.requests) == 5


@pytest.mark.parametrize("end", END_MEANINGS)
@pytest.mark.parametrize("dates", DATE_FORMS)
def test_a_run_for_october_covers_exactly_its_days_whatever_the_api_reading(
    tmp_path: Path, live_data: SandboxData, dates: DateForms, end: EndMeaning
) -> None:
    team = '[[reports]]\nname = "team"\nowners = ["manager@company.com"]\n'
    config = write_config(tmp_path / "reports.toml", team)
    days = live_data.rows(dt.date(2026, 10, 1), dt.date(2026, 10, 31))
    expected = int(days["credits"].sum())
    assert dt.date(2026, 10, 31) in set(days["date"].dt.date)  # the day an exclusive end loses
    with stand_in(live_data, dates, end) as api:
        args = ["--config", str(config), "--period", "2026-10", "--dry-run"]
        result = reporter(
            "run",
            *args,
            "--out",
            str(tmp_path / "out"),
            env={"MAGNIFIC_API_KEY": API_KEY, "MAGNIFIC_API_BASE_URL": api.url},
        )
    assert result.returncode == 0, result.stderr
    assert f"team: written, {expected:,} credits" in result.stderr
    with (tmp_path / "out" / "2026-10" / "team.csv").open(encoding="utf-8") as rows:
        written = list(csv.DictReader(rows))
    assert round(sum(float(row["credits"]) for row in written)) == expected
    assert {row["date"] for row in written} == {
        day.isoformat() for day in set(days["date"].dt.date)
    }


# --- what it finds -----------------------------------------------------------------------


def test_an_unknown_project_reference_is_named(
    tmp_path: Path, live_data: SandboxData, smtp: SmtpServer
) -> None:
    typo = (
        REPORTS
        + f"""
[[reports]]
name = "launch"
owners = ["manager@company.com"]
project_references = ["{UNKNOWN}"]
group_ids = [10]
"""
    )
    with stand_in(live_data) as api:
        code, lines, _ = check(tmp_path, api, smtp.env(), reports=typo)
    assert code == 1
    assert line(lines, "report launch") == (
        f"FAIL  report launch: project reference {UNKNOWN} has no usage at all in {WINDOW}:"
        " is it right? Hint: check project_references in the config against the Magnific dashboard"
    )
    assert line(lines, "report marketing").startswith("ok")
    assert lines[-1] == f"1 of {len(lines) - 1} item(s) need attention; nothing was sent."


def test_only_the_named_reports_filters_are_checked(
    tmp_path: Path, live_data: SandboxData, smtp: SmtpServer
) -> None:
    typo = (
        REPORTS
        + '[[reports]]\nname = "launch"\nowners = ["m@company.com"]\n'
        + f'project_references = ["{UNKNOWN}"]\n'
    )
    with stand_in(live_data) as api:
        code, lines, _ = check(tmp_path, api, smtp.env(), "--report", "marketing", reports=typo)
    assert code == 0
    assert next(text for text in lines if "report " in text).startswith("ok    report marketing:")
    assert not any("launch" in text for text in lines)


def _refuse_every_login(
    server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
) -> AuthResult:
    assert isinstance(auth_data, LoginPassword)
    return AuthResult(success=False, handled=False)


def test_a_refused_smtp_login_is_reported_without_the_password(
    tmp_path: Path, live_data: SandboxData
) -> None:
    recorder, port = Recorder(), free_port()
    controller = Controller(
        recorder,
        hostname="127.0.0.1",
        port=port,
        auth_require_tls=False,
        authenticator=_refuse_every_login,
    )
    controller.start()
    env = {
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": str(port),
        "SMTP_SECURITY": "none",
        "SMTP_USERNAME": "reports",
        "SMTP_PASSWORD": SMTP_PASSWORD,
    }
    try:
        with stand_in(live_data) as api:
            code, lines, stderr = check(tmp_path, api, env)
    finally:
        controller.stop()
    assert code == 1
    assert line(lines, "SMTP") == (
        f"FAIL  SMTP: the mail server 127.0.0.1:{port} rejected SMTP_USERNAME/SMTP_PASSWORD (535)"
        " Hint: check the SMTP credentials in the environment"
    )
    assert SMTP_PASSWORD not in "\n".join(lines) + stderr
    assert recorder.messages == []


def test_starttls_and_login_are_checked_like_a_send(tmp_path: Path, live_data: SandboxData) -> None:
    ca = trustme.CA()
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_tls)
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))

    def accept(
        server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        ok = auth_data == LoginPassword(b"reports", SMTP_PASSWORD.encode())
        return AuthResult(success=ok, handled=False)

    recorder, port = Recorder(), free_port()
    controller = Controller(
        recorder,
        hostname="127.0.0.1",
        port=port,
        tls_context=server_tls,
        require_starttls=True,
        auth_required=True,
        authenticator=accept,
    )
    controller.start()
    env = {
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": str(port),
        "SMTP_USERNAME": "reports",
        "SMTP_PASSWORD": SMTP_PASSWORD,
        "SSL_CERT_FILE": str(tmp_path / "ca.pem"),  # OpenSSL's own way to trust a CA
    }
    try:
        with stand_in(live_data) as api:
            code, lines, _ = check(tmp_path, api, env)
    finally:
        controller.stop()
    assert code == 0, lines
    assert (
        line(lines, "SMTP")
        == f"ok    SMTP: 127.0.0.1:{port}, STARTTLS, logged in as reports; nothing sent"
    )
    assert recorder.messages == []


def test_a_mail_server_too_busy_to_log_in_is_not_called_a_wrong_password(
    tmp_path: Path, live_data: SandboxData
) -> None:
    scripted = ScriptedSmtp([{"ehlo": OFFERS_AUTH, "auth": BUSY}])
    env = {**scripted.env(), "SMTP_USERNAME": "reports", "SMTP_PASSWORD": SMTP_PASSWORD}
    try:
        with stand_in(live_data) as api:
            code, lines, stderr = check(tmp_path, api, env)
    finally:
        scripted.close()
    assert code == 1
    assert line(lines, "SMTP") == (
        f"FAIL  SMTP: the mail server 127.0.0.1:{scripted.port} is busy and did not log in"
        " (421 4.3.2 Too busy, try later) Hint: run `reporter check` again later: the login"
        " was not checked"
    )
    assert "SMTP_PASSWORD" not in "\n".join(lines) + stderr
    assert scripted.handed == []


UTF8_OWNERS = """
[[reports]]
name = "team"
owners = ["manager@company.com", "josé.núñez@company.com"]

[[reports]]
name = "board"
owners = ["jörg@company.com", "JOSÉ.núñez@company.com", "cfo@company.com"]
"""


def test_owners_the_mail_server_cannot_address_without_smtputf8_are_a_warning(
    tmp_path: Path, live_data: SandboxData, smtp_ascii: SmtpServer
) -> None:
    with stand_in(live_data) as api:
        code, lines, _ = check(tmp_path, api, smtp_ascii.env(), reports=UTF8_OWNERS)
    assert code == 0, lines
    assert line(lines, "SMTPUTF8") == (
        f"warn  SMTPUTF8: the mail server 127.0.0.1:{smtp_ascii.port} does not offer SMTPUTF8,"
        " which the owner addresses josé.núñez@company.com, jörg@company.com need: they get no"
        " mail Hint: use an ASCII address for these owners, or a mail server that offers SMTPUTF8"
    )
    assert lines[lines.index(line(lines, "SMTP")) + 1].startswith("warn  SMTPUTF8: ")
    assert lines[-1] == "No item failed; 1 of 11 has a warning; nothing was sent."  # 2 alert lines
    assert smtp_ascii.recorder.messages == []


@pytest.mark.parametrize(
    ("reports", "offers_smtputf8"),
    [(UTF8_OWNERS, True), (REPORTS.replace('name = "marketing"', 'name = "m"'), False)],
    ids=["server-offers-it", "ascii-owners"],
)
def test_no_smtputf8_warning_when_the_server_offers_it_or_no_owner_needs_it(
    tmp_path: Path,
    live_data: SandboxData,
    smtp: SmtpServer,
    smtp_ascii: SmtpServer,
    reports: str,
    offers_smtputf8: bool,
) -> None:
    server = smtp if offers_smtputf8 else smtp_ascii
    with stand_in(live_data) as api:
        code, lines, _ = check(tmp_path, api, server.env(), reports=reports)
    assert code == 0, lines
    assert not [text for text in lines if "SMTPUTF8" in text]
    assert lines[-1].startswith("All ")


def test_smtputf8_finding_names_one_owner_in_the_singular() -> None:
    finding = smtputf8_finding(["a@x.com", "zoë@x.com"], offered=False, server="mx:25")
    assert finding == Finding(
        "warn",
        "SMTPUTF8",
        "the mail server mx:25 does not offer SMTPUTF8, which the owner address zoë@x.com"
        " needs: it gets no mail",
        hint="use an ASCII address for this owner, or a mail server that offers SMTPUTF8",
    )
    assert smtputf8_finding(["zoë@x.com"], offered=True, server="mx:25") is None
    assert smtputf8_finding(["a@x.com"], offered=False, server="mx:25") is None


@pytest.mark.parametrize(
    ("api_table", "dates", "end", "item", "expected"),
    [
        (
            '[api]\ndate_format = "datetime"\n',
            "date",
            "inclusive",
            "date format",
            "FAIL  date format: the API accepts only plain dates (2026-10-01), but [api]"
            ' date_format = "datetime": every request would be refused Hint: set [api]'
            ' date_format = "date" or "auto" in the config',
        ),
        (
            "[api]\nend_inclusive = true\n",
            "both",
            "exclusive",
            "end_date",
            "but [api] end_inclusive = true: every report would lose its last day"
            ' Hint: set [api] end_inclusive = "auto" or false',
        ),
    ],
)
def test_an_api_setting_the_api_contradicts_needs_attention(
    tmp_path: Path,
    live_data: SandboxData,
    smtp: SmtpServer,
    api_table: str,
    dates: DateForms,
    end: EndMeaning,
    item: str,
    expected: str,
) -> None:
    with stand_in(live_data, dates, end) as api:
        code, lines, _ = check(tmp_path, api, smtp.env(), api_table=api_table)
    assert code == 1
    assert line(lines, item).startswith("FAIL")
    assert line(lines, item).endswith(expected)


def test_a_rejected_key_skips_what_needs_the_api(
    tmp_path: Path, live_data: SandboxData, smtp: SmtpServer
) -> None:
    config = write_config(tmp_path / "reports.toml", REPORTS)
    with stand_in(live_data) as api:
        env = {"MAGNIFIC_API_KEY": "sk-wrong-0000", "MAGNIFIC_API_BASE_URL": api.url, **smtp.env()}
        result = reporter(
            "check", "--config", str(config), "--out", str(tmp_path / "out"), env=env, cwd=tmp_path
        )
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert lines[:2] == [
        "FAIL  API key: the Magnific API rejected the key in MAGNIFIC_API_KEY (401):"
        " Invalid API key Hint: check that MAGNIFIC_API_KEY holds a current key of your team",
        "skip  API: date format, end_date and report filters not checked",
    ]
    assert len(api.requests) == 1
    assert "sk-wrong-0000" not in result.stdout + result.stderr


def test_no_key_is_a_finding_and_the_rest_is_still_checked(
    tmp_path: Path, smtp: SmtpServer
) -> None:
    config = write_config(tmp_path / "reports.toml", REPORTS)
    result = reporter("check", "--config", str(config), env=smtp.env(), cwd=tmp_path)
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert lines[0].startswith(
        "FAIL  API key: MAGNIFIC_API_KEY is not set Hint: export MAGNIFIC_API_KEY"
    )
    assert line(lines, "SMTP").startswith("ok")
    assert line(lines, "--out out") == "ok    --out out: writable (will be created)"


def test_unwritable_out_and_a_foreign_ledger_need_attention(
    tmp_path: Path, live_data: SandboxData, smtp: SmtpServer
) -> None:
    (tmp_path / "out").write_text("a file where the output directory should be")
    foreign = tmp_path / "state" / "ledger.sqlite3"
    foreign.parent.mkdir()
    with sqlite3.connect(foreign) as db:
        db.execute("CREATE TABLE notes (text TEXT)")
    db.close()
    with stand_in(live_data) as api:
        code, lines, _ = check(tmp_path, api, smtp.env())
    assert code == 1
    assert line(lines, f"--out {tmp_path / 'out'}") == (
        f"FAIL  --out {tmp_path / 'out'}: {tmp_path / 'out'} is not a directory"
        " Hint: pass --out with a writable directory"
    )
    assert line(lines, f"ledger {foreign}").startswith(
        f"FAIL  ledger {foreign}: the delivery ledger {foreign} "
    )
    with sqlite3.connect(foreign) as db:
        tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master")}
    db.close()
    assert tables == {"notes"}  # refused, not written to


def test_an_unknown_report_name_cannot_start(tmp_path: Path) -> None:
    config = write_config(tmp_path / "reports.toml", REPORTS)
    result = reporter(
        "check", "--config", str(config), "--report", "nope", env={"MAGNIFIC_API_KEY": API_KEY}
    )
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"Error: no report named 'nope' in {config}",
        "Hint: reports in the config: marketing, team",
    ]
    assert result.stdout == ""


# --- the decisions, with literals ------------------------------------------------------


def test_filters_that_each_match_but_not_together_are_named_as_a_combination() -> None:
    (finding,) = filter_findings(
        "launch",
        "2026-08..2026-10",
        0.0,
        {("project_references", MARKETING): 10.0, ("group_ids", 10): 5.0},
    )
    assert finding.status == "FAIL"
    assert finding.detail == (
        "each filter has usage in 2026-08..2026-10, but together they match none:"
        " is the combination right?"
    )


def test_every_empty_filter_value_is_named() -> None:
    findings = filter_findings(
        "launch",
        "2026-08..2026-10",
        0.0,
        {("group_ids", 99): 0.0, ("api_key_ids", "api-key-9"): 0.0, ("group_ids", 10): 5.0},
    )
    assert [f.detail.split(" has")[0] for f in findings] == ["group id 99", "API key id api-key-9"]


@pytest.mark.parametrize(
    ("datetime_ok", "date_ok", "configured", "status"),
    [
        (True, True, "date", "ok"),
        (False, True, "auto", "ok"),
        (False, True, "date", "ok"),
        (True, False, "date", "FAIL"),
        (False, False, "auto", "FAIL"),
    ],
)
def test_date_form_finding(datetime_ok: bool, date_ok: bool, configured: str, status: str) -> None:
    assert date_form_finding(datetime_ok, date_ok, configured).status == status


@pytest.mark.parametrize(
    ("inclusive", "configured", "status"),
    [
        (True, "auto", "ok"),
        (False, "auto", "ok"),
        (False, False, "ok"),
        (False, True, "FAIL"),
        (True, False, "FAIL"),
        (None, "auto", "note"),
        (None, True, "note"),
    ],
)
def test_end_finding(inclusive: bool | None, configured: bool | str, status: str) -> None:
    probe = EndProbe(inclusive, dt.date(2026, 11, 23), "literal")
    finding = end_finding(probe, configured, "datetime")
    assert finding.status == status
    assert isinstance(finding, Finding)


def test_the_end_probe_uses_the_date_form_a_run_will_send(
    tmp_path: Path, live_data: SandboxData, smtp: SmtpServer
) -> None:
    """End semantics may differ by form, so a pinned form that works is the one probed."""
    with stand_in(live_data, "both", "exclusive") as api:
        code, lines, _ = check(tmp_path, api, smtp.env(), api_table='[api]\ndate_format = "date"\n')
    assert code == 0, lines
    assert line(lines, "end_date").startswith("ok    end_date: exclusive with plain dates")
    probes = [r.body for r in api.requests if r.body["granularity"] == "day"]
    assert len(probes) == 2
    assert all("T" not in body["end_date"] for body in probes)


def test_the_readme_says_what_check_does_with_chat() -> None:
    """It once said chat delivery did not exist, long after it did."""
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    section = readme.split("## First contact: `reporter check`")[1].split("\n## ")[0]
    assert "does not exist" not in section
    assert "each webhook variable the config names must be set" in " ".join(section.split())


def test_ctrl_c_during_check_says_nothing_was_sent(tmp_path: Path) -> None:
    """Not the run's "delivered reports are recorded": check never sends anything."""
    import signal
    import socket
    import subprocess
    import sys
    import time

    from tests.conftest import user_environ

    silent = socket.socket()  # accepts the API request and never answers it
    silent.bind(("127.0.0.1", 0))
    silent.listen()
    config = write_config(
        tmp_path / "reports.toml",
        '[[reports]]\nname = "marketing"\nowners = ["lead@company.com"]\n',
    )
    env = user_environ(
        {
            "MAGNIFIC_API_KEY": API_KEY,
            "MAGNIFIC_API_BASE_URL": f"http://127.0.0.1:{silent.getsockname()[1]}",
        }
    )
    command = [str(Path(sys.executable).parent / "reporter"), "check", "--config", str(config)]
    command += ["--state", str(tmp_path / "state.sqlite3"), "--out", str(tmp_path / "out")]
    with subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True) as process:
        connection, _ = silent.accept()  # check is now waiting on the API
        time.sleep(0.3)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=30)
    connection.close()
    silent.close()
    assert process.returncode == 130
    assert "Interrupted: the check stopped before it finished; it sends nothing" in stderr
    assert "delivered reports" not in stderr
    assert "Traceback" not in stderr
