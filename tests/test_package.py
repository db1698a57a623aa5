"""The distribution: `magnific-reporter` builds, installs and runs away from the checkout.

`pip install reporter` is someone else's 2012 package, so the distribution has its own
name while the command and the import stay `reporter`. These tests build the sdist and,
from it, the wheel with pypa/build (as a release would), install the wheel into a fresh
virtualenv and run `reporter demo` from an empty directory: a template, a translation or
the example config missing from the wheel fails here, not on a user's machine.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from reporter import __version__

ROOT = Path(__file__).resolve().parent.parent
DIST = "magnific_reporter"  # the distribution's name as wheel and sdist file names spell it

# What a user's `reporter demo` cannot run without, as paths inside the installed package.
PACKAGE_DATA = [
    "reporter/example.toml",
    "reporter/py.typed",
    "reporter/templates/report.html.j2",
    "reporter/templates/report.css",
    "reporter/templates/email.html.j2",
    "reporter/templates/email.txt.j2",
    "reporter/templates/logo.svg",
    "reporter/templates/fonts/LiberationSans-Regular.ttf",
    "reporter/templates/fonts/LiberationSans-Bold.ttf",
    "reporter/templates/locale/es/LC_MESSAGES/messages.po",
]


def sh(*args: str | Path, cwd: Path, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert result.returncode == 0, f"{args}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def venv(path: Path) -> Path:
    """A plain virtualenv (no system site-packages): only what is installed into it."""
    sh(sys.executable, "-m", "venv", path, cwd=path.parent)
    return path / "bin"


def clean_env(tmp: Path) -> dict[str, str]:
    """No PYTHONPATH or checkout on the path: the installed package or nothing."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    return {**env, "HOME": str(tmp)}


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """sdist and wheel built from a copy of the tracked (and new, unignored) files."""
    tmp = tmp_path_factory.mktemp("package")
    listed = sh("git", "ls-files", "--cached", "--others", "--exclude-standard", "-z", cwd=ROOT)
    source = tmp / "source"
    for name in filter(None, listed.split("\0")):
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    bin_dir = venv(tmp / "build-env")
    sh(bin_dir / "python", "-m", "pip", "install", "--quiet", "build==1.*", cwd=tmp)
    # Without --sdist/--wheel, build makes the sdist and then the wheel *from the sdist*.
    sh(bin_dir / "python", "-m", "build", "--outdir", tmp / "dist", source, cwd=tmp)
    return tmp / "dist"


def test_the_sdist_and_wheel_are_magnific_reporter_with_the_package_data(dist: Path) -> None:
    wheel = dist / f"{DIST}-{__version__}-py3-none-any.whl"
    sdist = dist / f"{DIST}-{__version__}.tar.gz"
    assert {p.name for p in dist.iterdir()} == {sdist.name, wheel.name}
    with zipfile.ZipFile(wheel) as whl:
        names = set(whl.namelist())
        metadata = whl.read(f"{DIST}-{__version__}.dist-info/METADATA").decode()
        entry_points = whl.read(f"{DIST}-{__version__}.dist-info/entry_points.txt").decode()
    assert "Name: magnific-reporter\n" in metadata
    assert f"Version: {__version__}\n" in metadata
    assert "reporter = reporter.cli:main" in entry_points
    assert set(PACKAGE_DATA) <= names
    modules = {p.relative_to(ROOT).as_posix() for p in (ROOT / "reporter").rglob("*.py")}
    assert modules - names == set()  # a subpackage left out of pyproject's list
    with tarfile.open(sdist) as tar:
        members = {m.name.split("/", 1)[1] for m in tar.getmembers() if "/" in m.name}
    assert {"pyproject.toml", "README.md", "templates/report.html.j2"} <= members


def test_the_installed_wheel_runs_the_demo_from_an_empty_directory(
    dist: Path, tmp_path: Path
) -> None:
    bin_dir = venv(tmp_path / "venv")
    (wheel,) = dist.glob("*.whl")
    env = clean_env(tmp_path)
    sh(bin_dir / "python", "-m", "pip", "install", "--quiet", wheel, cwd=tmp_path, env=env)
    empty = tmp_path / "elsewhere"
    empty.mkdir()

    where = sh(bin_dir / "python", "-c", "import reporter; print(reporter.__file__)", cwd=empty)
    assert Path(where.strip()).is_relative_to(tmp_path / "venv")  # not the checkout
    installed = sh(
        bin_dir / "python",
        "-c",
        "from importlib.metadata import version; print(version('magnific-reporter'))",
        cwd=empty,
        env=env,
    ).strip()
    assert installed == __version__
    assert sh(bin_dir / "reporter", "--version", cwd=empty, env=env).strip() == (
        f"reporter, version {installed}"
    )

    sh(bin_dir / "reporter", "demo", "--quiet", cwd=empty, env=env)
    # The last complete month, and the design team's last complete billing cycle (15th).
    month, cycle = sorted((empty / "out" / "demo").iterdir(), key=lambda p: len(p.name))
    start, end = (dt.date.fromisoformat(day) for day in cycle.name.split("_"))
    assert start.day == 15
    assert end == (start + dt.timedelta(days=20)).replace(day=14)
    assert end < dt.datetime.now(dt.UTC).date() <= (end + dt.timedelta(days=20)).replace(day=14)
    assert sorted(p.name for p in cycle.glob("*.pdf")) == ["design-team.pdf"]
    period_dir = month
    written = sorted(p.name for p in period_dir.glob("*.pdf"))
    assert written == ["marketing.pdf", "whole-team.pdf"]
    # The Spanish catalogue came with the wheel: the `locale = "es"` report is in Spanish.
    spanish = sh("pdftotext", "whole-team.pdf", "-", cwd=period_dir)
    english = sh("pdftotext", "marketing.pdf", "-", cwd=period_dir)
    assert "uso de créditos" in spanish.lower()
    assert "uso de créditos" not in english.lower()
