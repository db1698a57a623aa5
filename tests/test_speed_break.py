"""What this session's speed changes (issue 11) must not break, found by trying to."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from reporter.cli import cli
from reporter.files import default_templates_dir
from reporter.sandbox import SandboxServer
from tests.conftest import API_KEY, write_config
from tests.test_report import TEAM, run


def _embedded_fonts(pdf: Path) -> set[str]:
    listing = subprocess.run(
        ["pdffonts", str(pdf)], capture_output=True, text=True, check=True
    ).stdout
    return {line.split()[0].split("+")[-1] for line in listing.splitlines()[2:]}


def test_a_templates_copy_made_before_the_charts_font_shipped_still_draws_it(
    tmp_path: Path, api: SandboxServer
) -> None:
    """The charts are measured in Liberation Sans whatever ``--templates`` says. A copy of
    the templates made before templates/fonts existed (no fonts/, no @font-face in its
    report.css, a <link> to it in its page) drew their labels in DejaVu Sans, whose wider
    glyphs ran the legend's names into the next swatch."""
    templates = tmp_path / "old-templates"
    shutil.copytree(default_templates_dir(), templates)
    shutil.rmtree(templates / "fonts")
    css = templates / "report.css"
    css.write_text(
        re.sub(r"@font-face \{[^}]*\}", "", css.read_text(encoding="utf-8")), encoding="utf-8"
    )
    page = templates / "report.html.j2"
    page.write_text(
        page.read_text(encoding="utf-8").replace(
            "<head>", '<head>\n  <link rel="stylesheet" href="report.css">', 1
        ),
        encoding="utf-8",
    )
    assert "@font-face" not in css.read_text(encoding="utf-8")

    folder = run(tmp_path, api, "2026-10", "--templates", str(templates))
    assert {"Liberation-Sans", "Liberation-Sans-Bold"} <= _embedded_fonts(folder / "team.pdf")


def test_a_templates_copy_without_report_css_is_refused_before_any_request(
    tmp_path: Path, api: SandboxServer
) -> None:
    """The printer applies the templates' report.css itself; without one it printed an
    unstyled report (serif, a page longer) and said nothing. Now it is a usage error."""
    templates = tmp_path / "templates"
    shutil.copytree(default_templates_dir(), templates)
    (templates / "report.css").unlink()
    config = write_config(tmp_path / "c.toml", TEAM)
    args = ["run", "--config", str(config), "--period", "2026-10", "--dry-run"]
    args += ["--out", str(tmp_path / "out"), "--templates", str(templates)]
    result = CliRunner().invoke(
        cli,
        args,
        env={"MAGNIFIC_API_KEY": API_KEY, "MAGNIFIC_API_BASE_URL": api.url},
    )
    assert result.exit_code == 2, result.output
    assert result.stderr.splitlines() == [
        f"Error: --templates {templates} has no report.css",
        "Hint: copy the package's templates/ directory and point --templates at the copy",
    ]
    assert api.requests == []
    assert not list(tmp_path.glob("out/**/*.pdf"))


def test_an_install_without_its_templates_is_an_environment_error(tmp_path: Path) -> None:
    """The package's own templates missing (a broken install) is exit 2 with a hint, before
    anything is built: like a missing key, not like one report failing."""
    package = tmp_path / "site" / "reporter"
    shutil.copytree(Path(__file__).resolve().parent.parent / "reporter", package)
    result = subprocess.run(
        [sys.executable, "-c", "from reporter.cli import main; main()", "demo", "--out", "out"],
        check=False,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(package.parent)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert lines[0].startswith("Error: the report templates are missing")
    assert lines[1] == "Hint: reinstall reporter, or pass --templates DIR"
    assert "Traceback" not in result.stderr
    assert not list(tmp_path.glob("out/**/*.pdf"))
