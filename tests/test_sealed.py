"""The sealed ledger: what a public repository's artifact holds is unreadable without the key."""

from __future__ import annotations

import io
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml
from cryptography.fernet import Fernet

from reporter.errors import UsageError
from reporter.sealed import MAGIC, open_sealed, seal


def test_a_sealed_ledger_round_trips_and_hides_every_byte(tmp_path: Path) -> None:
    folder = tmp_path / "ledger"
    (folder / "state.sqlite3.outbox" / "2026-10").mkdir(parents=True)
    (folder / "state.sqlite3").write_bytes(b"SQLite format 3\x00 ann@company.com")
    (folder / "state.sqlite3.outbox" / "2026-10" / "a.eml").write_bytes(b"To: ann@company.com")
    (folder / "state.sqlite3.runs").mkdir()
    (folder / "state.sqlite3.runs" / "abc.lock").write_bytes(b"123")
    key = Fernet.generate_key().decode()
    sealed = seal(folder, key)
    assert b"ann@company.com" not in sealed
    assert b"SQLite" not in sealed
    out = tmp_path / "restored"
    names = open_sealed(sealed, out, key)
    assert sorted(names) == ["state.sqlite3", "state.sqlite3.outbox/2026-10/a.eml"]
    assert (out / "state.sqlite3").read_bytes() == (folder / "state.sqlite3").read_bytes()


@pytest.mark.parametrize(
    ("content", "key", "error"),
    [
        (b"PK\x03\x04 a zip", None, "the ledger artifact is not a sealed ledger"),
        (MAGIC + b"gAAAAA-garbage", None, "cannot be opened with this ledger key"),
        (MAGIC + b"x", "not-a-key", "the ledger key is not a Fernet key"),
    ],
)
def test_what_cannot_be_opened_is_one_readable_error(
    tmp_path: Path, content: bytes, key: str | None, error: str
) -> None:
    with pytest.raises(UsageError, match=error):
        open_sealed(content, tmp_path, key or Fernet.generate_key().decode())


def test_an_archive_that_climbs_out_of_its_folder_is_refused(tmp_path: Path) -> None:
    key = Fernet.generate_key().decode()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        info = tarfile.TarInfo("../escaped")
        info.size = 1
        archive.addfile(info, io.BytesIO(b"x"))
    sealed = MAGIC + Fernet(key.encode()).encrypt(buffer.getvalue())
    with pytest.raises(tarfile.OutsideDestinationError):
        open_sealed(sealed, tmp_path / "in", key)
    assert not (tmp_path / "escaped").exists()


def test_the_command_line_names_the_problem_and_never_the_key(tmp_path: Path) -> None:
    key = Fernet.generate_key().decode()
    (tmp_path / "ledger").mkdir()
    (tmp_path / "ledger" / "state.sqlite3").write_bytes(b"x")
    env = {"REPORTER_LEDGER_KEY": key, "PATH": "/usr/bin:/bin"}
    run = [sys.executable, "-m", "reporter.sealed"]
    sealed = tmp_path / "ledger.sealed"
    ok = subprocess.run([*run, "seal", str(tmp_path / "ledger"), str(sealed)], env=env, check=False)
    assert ok.returncode == 0
    other = {**env, "REPORTER_LEDGER_KEY": Fernet.generate_key().decode()}
    wrong = subprocess.run(
        [*run, "open", str(sealed), str(tmp_path / "out")],
        env=other,
        capture_output=True,
        text=True,
        check=False,
    )
    assert wrong.returncode == 2
    assert wrong.stderr.startswith("Error: the ledger artifact cannot be opened with this")
    assert "Traceback" not in wrong.stderr
    assert other["REPORTER_LEDGER_KEY"] not in wrong.stderr
    missing = subprocess.run(
        [*run, "open", str(sealed), str(tmp_path / "out")],
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert missing.returncode == 2
    assert missing.stderr.startswith("Error: REPORTER_LEDGER_KEY is not set")


def test_this_repositorys_workflow_uploads_reports_only_from_a_private_repository() -> None:
    root = Path(__file__).resolve().parent.parent
    workflow = yaml.safe_load((root / ".github/workflows/monthly-report.yml").read_text())
    steps = [s for job in workflow["jobs"].values() for s in job.get("steps", [])]
    uploads = [s for s in steps if s.get("uses", "").startswith("actions/upload-artifact@")]
    assert uploads
    for upload in uploads:
        assert "github.event.repository.private == true" in upload["if"]
    callers = [s for s in steps if s.get("uses") == "./"]
    assert all(s["with"]["ledger-key"] == "${{ secrets.REPORTER_LEDGER_KEY }}" for s in callers)
