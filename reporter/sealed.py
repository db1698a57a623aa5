"""The delivery ledger sealed for a place others can read: a GitHub artifact.

The ledger and its outbox name every owner and hold the messages sent to them;
in a public repository anyone signed in to GitHub can download a run's
artifacts. The action seals the ledger's folder (a tar archive, encrypted and
authenticated with Fernet from ``cryptography``) with a key from a secret before
uploading it, and opens it again on the next runner. Run by the action as::

    python -m reporter.sealed seal   FOLDER FILE   # key in REPORTER_LEDGER_KEY
    python -m reporter.sealed open   FILE FOLDER
    python -m reporter.sealed key                  # prints a new key for the secret

Errors are one ``Error:`` line (exit 2); the key is never printed.
"""

from __future__ import annotations

import io
import os
import sys
import tarfile
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from reporter.errors import UsageError
from reporter.files import write_atomic

KEY_VARIABLE = "REPORTER_LEDGER_KEY"
MAGIC = b"reporter-sealed-ledger/1\n"  # so an unsealed file is told apart from a wrong key
_NEW_KEY_HINT = (
    f"make one with `python -m reporter.sealed key` and store it as a secret, passed to the"
    f" action's ledger-key input (here: the {KEY_VARIABLE} variable)"
)


def fernet(key: str) -> Fernet:
    try:
        return Fernet(key.strip().encode())
    except (ValueError, TypeError):
        raise UsageError(
            "the ledger key is not a Fernet key (44 characters of URL-safe base64)",
            hint=_NEW_KEY_HINT,
        ) from None


def seal(folder: Path, key: str) -> bytes:
    """Every file under ``folder`` (the ledger, its outbox), archived and encrypted."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file() and not path.name.endswith(".lock"):
                archive.add(path, path.relative_to(folder).as_posix(), recursive=False)
    return MAGIC + fernet(key).encrypt(buffer.getvalue())


def open_sealed(content: bytes, folder: Path, key: str) -> list[str]:
    """Decrypt and unpack ``content`` into ``folder``; the names of the files written."""
    if not content.startswith(MAGIC):
        raise UsageError(
            "the ledger artifact is not a sealed ledger",
            hint="it was uploaded by another tool or damaged; remove the artifact to start anew",
        )
    try:
        plain = fernet(key).decrypt(content[len(MAGIC) :])
    except InvalidToken:
        raise UsageError(
            "the ledger artifact cannot be opened with this ledger key (a different key, or a"
            " damaged artifact)",
            hint="pass the key it was sealed with; a new key needs a new ledger-name",
        ) from None
    with tarfile.open(fileobj=io.BytesIO(plain), mode="r:gz") as archive:
        archive.extractall(folder, filter="data")  # no absolute paths, no "..", no devices
        return archive.getnames()


def main(argv: list[str]) -> int:
    try:
        if argv[:1] == ["key"] and len(argv) == 1:
            print(Fernet.generate_key().decode())
            return 0
        key = os.environ.get(KEY_VARIABLE, "")
        if not key.strip():
            raise UsageError(f"{KEY_VARIABLE} is not set", hint=_NEW_KEY_HINT)
        if argv[:1] == ["seal"] and len(argv) == 3:
            write_atomic(Path(argv[2]), seal(Path(argv[1]), key))
            return 0
        if argv[:1] == ["open"] and len(argv) == 3:
            open_sealed(Path(argv[1]).read_bytes(), Path(argv[2]), key)
            return 0
        raise UsageError(
            "usage: python -m reporter.sealed seal FOLDER FILE | open FILE FOLDER | key",
            hint="see the module's docstring",
        )
    except UsageError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        if exc.hint:
            print(f"Hint: {exc.hint}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"Error: {exc.filename}: {exc.strerror}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
