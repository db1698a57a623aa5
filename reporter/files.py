"""Files: where the package's templates are, and writing what a run makes atomically,
so a killed run never leaves half of one. Imports nothing heavy: printers and the CLI
use it before (or without) the renderer."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

from reporter.errors import UsageError


def write_atomic(path: Path, content: bytes | Callable[[IO[bytes]], object]) -> Path:
    """Write via a temporary file and rename: a killed run never leaves half a PDF.
    ``content`` is the bytes, or a function that writes them to the file it is given
    (a big CSV then never exists whole in memory)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", delete=False) as tmp:
        try:
            if callable(content):
                content(tmp)
            else:
                tmp.write(content)
            tmp.flush()
            os.fsync(tmp.fileno())
        except BaseException:
            tmp.close()
            os.unlink(tmp.name)
            raise
    os.replace(tmp.name, path)
    return path


def default_templates_dir() -> Path:
    """The templates shipped with the package: ``reporter/templates`` when installed,
    the checkout's top-level ``templates/`` when run from source or installed editable."""
    package = Path(__file__).resolve().parent
    for candidate in (package / "templates", package.parent / "templates"):
        if (candidate / "report.html.j2").is_file():
            return candidate
    raise UsageError(  # a broken install: nothing can be built, exit 2
        f"the report templates are missing (looked in {package / 'templates'})",
        hint="reinstall reporter, or pass --templates DIR",
    )
