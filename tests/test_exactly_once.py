"""Exactly once under pressure: two runs at once, lost replies, signals, a broken ledger.

Every test here runs real ``reporter`` processes against the stand-in API and a
real SMTP server on loopback, the way a scheduler or a person would.
"""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from reporter.ledger import Ledger, LedgerError
from reporter.sandbox import SandboxServer
from tests.conftest import API_KEY, SmtpServer, free_port, write_config
from tests.test_delivery import copies

PERIOD = "2026-10"
REPORTER = str(Path(sys.executable).parent / "reporter")

FOUR_REPORTS = "".join(
    f'\n[[reports]]\nname = "team-{i}"\nowners = ["team-{i}@company.com", "boss@company.com"]\n'
    f"group_ids = [{10 * (i + 1)}]\n"
    for i in range(4)
)


def env_for(api_url: str, smtp: SmtpServer | None = None) -> dict[str, str]:
    """The run's environment; without ``smtp``, a mail server nobody listens on."""
    env = {**os.environ, "MAGNIFIC_API_KEY": API_KEY, "MAGNIFIC_API_BASE_URL": api_url}
    nobody = {"SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(free_port()), "SMTP_SECURITY": "none"}
    return {**env, **(smtp.env() if smtp else nobody)}


def reporter(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``reporter ...`` as a user types it, bounded in time."""
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=120, check=False)


def run_args(config: Path, tmp_path: Path, *extra: str) -> list[str]:
    files = ["--out", str(tmp_path / "out"), "--state", str(tmp_path / "state.sqlite3")]
    return [REPORTER, "run", "--config", str(config), "--period", PERIOD, *files, *extra]


def statuses(tmp_path: Path) -> dict[tuple[str, str], str]:
    with sqlite3.connect(tmp_path / "state.sqlite3") as db:
        rows = db.execute("SELECT report, recipient, status FROM deliveries")
        return {(report, rcpt): status for report, rcpt, status in rows}


def assert_one_error_line(stderr: str, *needles: str) -> None:
    assert "Traceback" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1, stderr
    assert any(line.startswith("Hint: ") for line in stderr.splitlines()), stderr
    for needle in needles:
        assert needle in errors[0], stderr


# --- two runs at once ----------------------------------------------------------------


def test_two_runs_started_together_send_each_report_once(
    tmp_path: Path, api: SandboxServer, smtp: SmtpServer
) -> None:
    config = write_config(tmp_path / "reports.toml", FOUR_REPORTS)
    smtp.recorder.data_delay = 0.3  # both runs are mid-delivery at the same time
    args = run_args(config, tmp_path)
    runs = [
        subprocess.Popen(
            args, env=env_for(api.url, smtp), stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        for _ in range(2)
    ]
    results = [(p.wait(timeout=180), *p.communicate()) for p in runs]
    for code, _, stderr in results:
        assert code == 0, stderr.decode()
    got = copies(smtp)
    assert set(got.values()) == {1}, got
    assert len(got) == 8  # 4 reports x 2 owners, each exactly once
    assert set(statuses(tmp_path).values()) == {"sent"}
    said = b"".join(out + err for _, out, err in results).decode()
    # Whichever run lost a report says so in one line, instead of "delivered".
    assert said.count("delivered") >= 4
    assert "taken by another run" in said or "already delivered" in said


def test_recovery_never_touches_a_live_runs_rows_and_settles_a_dead_ones(
    tmp_path: Path,
) -> None:
    path = tmp_path / "state.sqlite3"
    with Ledger(path) as first, Ledger(path) as second:
        claim = first.claim("marketing", PERIOD, ["a@company.com"], force=False)
        assert claim.mine == ["a@company.com"]
        first.mark(["marketing"], PERIOD, ["a@company.com"], "committing")

        assert second.recover() == {"failed": 0, "unconfirmed": 0}
        taken = second.claim("marketing", PERIOD, ["a@company.com"], force=False)
        assert taken.mine == []
        assert taken.taken == {"a@company.com": os.getpid()}
        assert {r.status for r in second.rows()} == {"committing"}

        # The first run dies without settling anything: the kernel drops its lock.
        assert first._lock is not None
        first._lock.release()
        first._lock = None
        assert second.recover() == {"failed": 0, "unconfirmed": 1}
        again = second.claim("marketing", PERIOD, ["a@company.com"], force=False)
        assert again.mine == ["a@company.com"]


# --- a reply that never came ------------------------------------------------------------


def test_a_dropped_reply_is_not_delivered_and_the_next_run_sends_it_again(
    tmp_path: Path, api: SandboxServer, smtp: SmtpServer
) -> None:
    config = write_config(
        tmp_path / "reports.toml",
        '[[reports]]\nname = "marketing"\nowners = ["manager@company.com"]\n',
    )
    smtp.recorder.drop_after_data = 1
    first = reporter(run_args(config, tmp_path), env_for(api.url, smtp))
    assert first.returncode == 1, first.stderr
    assert "UNCONFIRMED" in first.stdout
    assert "marketing: delivered" not in first.stderr
    (row,) = [line for line in first.stdout.splitlines() if line.startswith("  marketing")]
    assert row.split()[2] == "UNCONFIRMED"
    assert "sends it again with the same Message-ID" in first.stdout
    assert statuses(tmp_path) == {("marketing", "manager@company.com"): "unconfirmed"}

    second = reporter(run_args(config, tmp_path), env_for(api.url, smtp))
    assert second.returncode == 0, second.stderr
    assert "the message a previous run wrote" in second.stderr
    one, two = (m.message for m in smtp.recorder.messages)
    assert one["Message-ID"] == two["Message-ID"]
    assert statuses(tmp_path) == {("marketing", "manager@company.com"): "sent"}


# --- preview ------------------------------------------------------------------------------


def test_preview_goes_to_one_address_and_leaves_the_ledger_alone(
    tmp_path: Path, api: SandboxServer, smtp: SmtpServer
) -> None:
    config = write_config(tmp_path / "reports.toml", FOUR_REPORTS)
    preview = reporter(
        run_args(config, tmp_path, "--to", "me@company.com", "--report", "team-1"),
        env_for(api.url, smtp),
    )
    assert preview.returncode == 0, preview.stderr
    assert "preview sent" in preview.stdout
    (received,) = smtp.recorder.messages
    assert received.recipients == ["me@company.com"]
    assert str(received.message["Subject"]).startswith("Preview: ")
    assert not (tmp_path / "state.sqlite3").exists()
    assert (tmp_path / "out" / PERIOD / "team-1.preview.eml").is_file()

    real = reporter(run_args(config, tmp_path, "--report", "team-1"), env_for(api.url, smtp))
    assert real.returncode == 0, real.stderr
    assert sorted(r for m in smtp.recorder.messages[1:] for r in m.recipients) == [
        "boss@company.com",
        "team-1@company.com",
    ]
    assert received.message["Message-ID"] != smtp.recorder.messages[1].message["Message-ID"]


def test_preview_to_a_bad_address_is_refused_before_any_request(
    tmp_path: Path, api: SandboxServer
) -> None:
    config = write_config(tmp_path / "reports.toml", FOUR_REPORTS)
    result = reporter(run_args(config, tmp_path, "--to", "not-an-address"), env_for(api.url))
    assert result.returncode == 2
    assert_one_error_line(result.stderr, "--to 'not-an-address'")
    assert api.requests == []


# --- signals ------------------------------------------------------------------------------


@pytest.fixture
def hanging_api() -> Iterator[str]:
    """An API that accepts connections and never answers, like a wedged load balancer."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(32)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            held.append(conn)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join()
        for conn in held:
            conn.close()
        listener.close()


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_stops_a_run_stuck_on_the_api_within_two_seconds(
    tmp_path: Path, hanging_api: str, signum: int, code: int
) -> None:
    config = write_config(tmp_path / "reports.toml", FOUR_REPORTS)
    process = subprocess.Popen(
        run_args(config, tmp_path),
        env=env_for(hanging_api),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(3)  # imports done, every fetch thread waiting on the API
    assert process.poll() is None
    sent_at = time.monotonic()
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=30)
    took = time.monotonic() - sent_at
    assert process.returncode == code, stderr
    assert took < 2.0, f"took {took:.1f} s to stop"
    assert "Traceback" not in stderr
    assert f"Interrupted by {signal.Signals(signum).name}" in stderr


def _children(pid: int) -> set[int]:
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            text = (task / "children").read_text()
        except FileNotFoundError:  # a thread (a fetcher) ended between listing and reading
            continue
        found |= {int(c) for c in text.split()}
    return found


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")


def test_render_workers_die_with_a_killed_parent(tmp_path: Path, api: SandboxServer) -> None:
    config = write_config(tmp_path / "reports.toml", FOUR_REPORTS)
    process = subprocess.Popen(
        run_args(config, tmp_path, "--dry-run", "--jobs", "2"),
        env=env_for(api.url),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    workers: set[int] = set()
    while time.monotonic() < deadline and len(workers) < 2:
        workers = {c for c in _children(process.pid) if b"spawn_main" in _cmdline(c)}
        time.sleep(0.05)
    assert len(workers) == 2, "the run never started its two render workers"
    process.kill()
    process.wait(timeout=10)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(_running(w) for w in workers):
        time.sleep(0.05)
    assert not any(_running(w) for w in workers)


def test_a_printer_killed_mid_run_costs_no_report(tmp_path: Path, api: SandboxServer) -> None:
    """A printer that dies (out of memory, killed) breaks its whole process pool; the run
    starts new printers and gives each job in flight one more try."""
    config = write_config(tmp_path / "reports.toml", FOUR_REPORTS)
    process = subprocess.Popen(
        run_args(config, tmp_path, "--dry-run"),
        env=env_for(api.url),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 60
    printer = None
    while time.monotonic() < deadline and printer is None:
        found = [c for c in _children(process.pid) if b"spawn_main" in _cmdline(c)]
        printer = found[0] if found else None
        time.sleep(0.02)
    assert printer is not None, "the run never started its printer"
    os.kill(printer, signal.SIGKILL)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, (out, err)
    pdfs = sorted(p.name for p in (tmp_path / "out" / PERIOD).glob("*.pdf"))
    assert pdfs == [f"team-{i}.pdf" for i in range(4)]
    assert b"BrokenProcessPool" not in out + err


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return b""


# --- a ledger that cannot be used ---------------------------------------------------------


@pytest.mark.parametrize("command", ["run", "history"])
def test_a_corrupt_ledger_is_one_error_line(
    tmp_path: Path, api: SandboxServer, command: str
) -> None:
    state = tmp_path / "state.sqlite3"
    state.write_bytes(b"this is not a database, just bytes " * 200)
    config = write_config(tmp_path / "reports.toml", FOUR_REPORTS)
    args = (
        run_args(config, tmp_path)
        if command == "run"
        else [REPORTER, "history", "--state", str(state)]
    )
    result = reporter(args, env_for(api.url))
    assert result.returncode == 2
    assert_one_error_line(result.stderr, str(state), "is not a readable ledger")
    assert api.requests == []


def test_a_foreign_sqlite_file_is_refused_and_left_unchanged(
    tmp_path: Path, api: SandboxServer
) -> None:
    state = tmp_path / "state.sqlite3"
    with sqlite3.connect(state) as db:
        db.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL)")
    before = state.read_bytes()
    config = write_config(tmp_path / "reports.toml", FOUR_REPORTS)
    result = reporter(run_args(config, tmp_path), env_for(api.url))
    assert result.returncode == 2
    assert_one_error_line(result.stderr, "another program", "invoices")
    assert state.read_bytes() == before
    assert api.requests == []


def _hold_lock(state: Path, seconds: float) -> subprocess.Popen[str]:
    """Another process holding the ledger's write lock, as an open sqlite3 session would."""
    code = (
        "import sqlite3, sys, time\n"
        f"db = sqlite3.connect({str(state)!r}, isolation_level=None)\n"
        "db.execute('BEGIN EXCLUSIVE')\n"
        "print('locked', flush=True)\n"
        f"time.sleep({seconds})\n"
        "db.execute('COMMIT')\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None
    assert holder.stdout.readline().strip() == "locked"
    return holder


def test_a_locked_ledger_is_waited_for_with_a_message(
    tmp_path: Path, api: SandboxServer, smtp: SmtpServer
) -> None:
    state = tmp_path / "state.sqlite3"
    Ledger(state).close()
    holder = _hold_lock(state, 10)  # longer than the run takes to start
    config = write_config(
        tmp_path / "reports.toml",
        '[[reports]]\nname = "marketing"\nowners = ["manager@company.com"]\n',
    )
    result = reporter(run_args(config, tmp_path), env_for(api.url, smtp))
    holder.communicate(timeout=30)
    assert result.returncode == 0, result.stderr
    assert "is locked by another process; waiting up to 30 s" in result.stderr
    assert len(smtp.recorder.messages) == 1


def test_a_ledger_locked_too_long_is_a_usage_error(tmp_path: Path) -> None:
    state = tmp_path / "state.sqlite3"
    Ledger(state).close()
    holder = _hold_lock(state, 6)
    try:
        with pytest.raises(LedgerError) as caught:
            Ledger(state, lock_wait=1.0)
    finally:
        holder.communicate(timeout=30)
    assert caught.value.exit_code == 2
    assert "stayed locked by another process for 1 s" in caught.value.message
    assert caught.value.hint


def test_an_unconfirmed_mail_per_owner_is_resent_as_it_was_not_rebuilt(
    tmp_path: Path, api: SandboxServer, smtp: SmtpServer
) -> None:
    """With one mail per owner, a message whose reply was lost goes again with its own
    Message-ID, even when the owner's next mail would carry other reports too."""
    reports = "".join(
        f'\n[[reports]]\nname = "{name}"\nowners = ["x@company.com"]\ngroup_ids = [{group}]\n'
        for name, group in (("alpha", 10), ("beta", 20))
    )
    config = write_config(
        tmp_path / "reports.toml", reports, email_extra="one_mail_per_owner = true"
    )
    smtp.recorder.drop_after_data = 1
    first = reporter(run_args(config, tmp_path, "--report", "alpha"), env_for(api.url, smtp))
    assert first.returncode == 1, first.stderr
    assert "UNCONFIRMED" in first.stdout

    second = reporter(run_args(config, tmp_path), env_for(api.url, smtp))
    assert second.returncode == 0, second.stderr
    carrying: dict[str, set[str]] = {"alpha": set(), "beta": set()}  # report -> Message-IDs
    for received in smtp.recorder.messages:
        for part in received.message.iter_attachments():
            report = str(part.get_filename()).removesuffix(f"-{PERIOD}.pdf")
            if report in carrying:
                carrying[report].add(str(received.message["Message-ID"]))
    assert len(smtp.recorder.messages) == 3
    assert len(carrying["alpha"]) == 1, carrying  # the resend is the same message
    assert len(carrying["beta"]) == 1
    assert carrying["alpha"] != carrying["beta"]
    assert set(statuses(tmp_path).values()) == {"sent"}


def test_a_stored_mail_survives_a_rebuild_for_an_owner_added_since(
    tmp_path: Path, api: SandboxServer, smtp: SmtpServer
) -> None:
    """A report rebuilt for a new owner writes ``<name>.eml`` again: the message a previous
    run left unconfirmed must still go to its owner as it was, not as the new build."""
    one = '\n[[reports]]\nname = "alpha"\nowners = ["a@company.com"]\ngroup_ids = [10]\n'
    config = write_config(tmp_path / "reports.toml", one)
    smtp.recorder.drop_after_data = 1
    first = reporter(run_args(config, tmp_path), env_for(api.url, smtp))
    assert first.returncode == 1, first.stderr
    (dropped,) = smtp.recorder.messages
    first_id = str(dropped.message["Message-ID"])

    write_config(
        tmp_path / "reports.toml",
        one.replace('"a@company.com"', '"a@company.com", "b@company.com"'),
    )
    second = reporter(run_args(config, tmp_path), env_for(api.url, smtp))
    assert second.returncode == 0, second.stderr
    again = {r.recipients[0]: r.message for r in smtp.recorder.messages[1:]}
    assert sorted(again) == ["a@company.com", "b@company.com"]
    assert str(again["a@company.com"]["Message-ID"]) == first_id  # the stored message
    assert str(again["b@company.com"]["Message-ID"]) != first_id  # a new build for b
    assert str(again["a@company.com"]["To"]) == str(dropped.message["To"])
    assert set(statuses(tmp_path).values()) == {"sent"}
