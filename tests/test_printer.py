"""Printer and worker processes: started at once, and without re-running the main script."""

from __future__ import annotations

import base64
import gc
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from reporter.errors import RenderError
from reporter.files import default_templates_dir
from reporter.printer import html_to_pdf
from reporter.render import solid
from tests.conftest import WebServer, pdf_text

SCRIPT = """
import concurrent.futures, multiprocessing, os, sys
from pathlib import Path

if __name__ != "__main__":  # this script run again inside a spawned process
    Path(os.environ["MARKER"]).write_text(__name__)

if __name__ == "__main__":
    from reporter.lifetime import worker_pool

    if sys.argv[1] == "worker_pool":
        pool = worker_pool(1)
    else:
        spawn = multiprocessing.get_context("spawn")
        pool = concurrent.futures.ProcessPoolExecutor(1, mp_context=spawn)
    print(pool.submit(os.getpid).result())
    pool.shutdown()
"""


@pytest.mark.parametrize(("pool", "reruns_script"), [("worker_pool", False), ("plain", True)])
def test_workers_start_without_running_the_main_script_again(
    tmp_path: Path, pool: str, reruns_script: bool
) -> None:
    """A spawned process first re-runs its parent's main script; the ``reporter`` script
    imports the whole CLI, so ``worker_pool`` starts its processes without it (a plain
    spawn pool, the control, does re-run it)."""
    script = tmp_path / "main_script.py"
    script.write_text(SCRIPT, encoding="utf-8")
    marker = tmp_path / "marker"
    done = subprocess.run(
        [sys.executable, str(script), pool],
        env={"MARKER": str(marker), "PATH": "/usr/bin:/bin", **_pythonpath()},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) > 0  # the task ran in a worker
    assert marker.exists() is reruns_script
    if reruns_script:
        assert marker.read_text() == "__mp_main__"


def _pythonpath() -> dict[str, str]:
    return {"PYTHONPATH": os.environ["PYTHONPATH"]} if "PYTHONPATH" in os.environ else {}


# --- printing one report after another ------------------------------------------

CHART = (
    '<svg xmlns="http://www.w3.org/2000/svg" width="40" height="20">'
    '<rect width="40" height="20"/></svg>'
)


def test_a_reports_charts_are_not_kept_for_the_next_reports() -> None:
    """Each report's charts are its own: a printer that kept them held every chart of its
    50 reports (about 7.6 MiB a report); the templates' logo is still parsed only once."""
    import weasyprint

    from reporter.printer import _shared

    templates = default_templates_dir()
    chart = "data:image/svg+xml;base64," + base64.b64encode(CHART.encode()).decode()
    html = f'<img src="logo.svg" alt="logo"><img src="{chart}" alt="chart"><p>one report</p>'
    pdf = html_to_pdf(html, templates_dir=templates)
    assert pdf.startswith(b"%PDF-")
    cached = list(_shared(weasyprint)[1])
    assert (templates / "logo.svg").resolve().as_uri() in cached
    assert [url for url in cached if str(url).startswith("data:")] == []


PAGE = (
    '<h1>Credits</h1><img src="logo.svg" alt="logo">'
    "<table><tr><th>Tool</th><td>12</td></tr><tr><th>Video</th><td>30</td></tr></table>"
)


def test_a_print_frees_its_garbage_as_it_returns_and_leaves_collection_on() -> None:
    """The collector sleeps during a print (its ~80 collections took 75-80 ms of 450) and
    runs once as the print returns: nothing the print made is left for a later
    collection, so a printer's memory stays as flat as before."""
    html_to_pdf(PAGE, templates_dir=default_templates_dir())  # warm: fonts, imports
    gc.collect()
    html_to_pdf(PAGE, templates_dir=default_templates_dir())
    assert gc.isenabled()
    assert gc.collect() == 0  # no unreachable objects were waiting


def test_a_page_with_background_images_leaves_nothing_for_a_later_collection() -> None:
    """The report's bars are images stretched as cell backgrounds (report.html.j2). Each
    image refers back to the print's image cache: held that way, a print's whole document
    outlived the collection after it and became garbage only during the next, in the old
    generation, which is rarely collected (5.6 MB a print piled up, benchmark (6))."""
    bars = "".join(
        f'<tr><td style="background-image: url({solid(colour)}); background-size: 9mm 2mm;'
        f' background-repeat: no-repeat">{colour}</td></tr>'
        for colour in ("#332288", "#88CCEE", "#44AA99")
    )
    html = f'<img src="logo.svg" alt="logo"><table>{bars}</table>'
    html_to_pdf(html, templates_dir=default_templates_dir())
    gc.collect()
    for _ in range(2):
        html_to_pdf(html, templates_dir=default_templates_dir())
    assert gc.collect() == 0  # no earlier print's objects were waiting


def test_a_failing_print_leaves_collection_on() -> None:
    with pytest.raises(RenderError, match="could not print the PDF"):
        html_to_pdf(PAGE, templates_dir=default_templates_dir(), variant="pdf/none")
    assert gc.isenabled()


def test_a_caller_that_turned_collection_off_finds_it_off() -> None:
    gc.disable()
    try:
        html_to_pdf(PAGE, templates_dir=default_templates_dir())
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_the_templates_stylesheet_styles_the_page_and_an_edit_to_it_is_seen(
    tmp_path: Path,
) -> None:
    """The page links no stylesheet: the printer applies the templates' report.css, parsed
    once per process, and parses it again once it has been edited."""
    templates = tmp_path / "templates"
    shutil.copytree(default_templates_dir(), templates)
    html = '<p class="kicker">credit usage</p>'
    first = tmp_path / "first.pdf"
    first.write_bytes(html_to_pdf(html, templates_dir=templates))
    assert "CREDIT USAGE" in pdf_text(first)  # .kicker is upper-cased by report.css

    css = templates / "report.css"
    css.write_text(css.read_text(encoding="utf-8") + "\n.kicker { text-transform: none; }\n")
    second = tmp_path / "second.pdf"
    second.write_bytes(html_to_pdf(html, templates_dir=templates))
    assert "credit usage" in pdf_text(second)


def test_the_templates_stylesheet_loads_nothing_from_the_network_or_outside(
    tmp_path: Path, web: WebServer
) -> None:
    """A copied report.css that imports a remote stylesheet or points at a file outside
    the templates directory loads neither; the report still prints."""
    secret = tmp_path / "secret.css"
    secret.write_text("p { text-transform: uppercase; }", encoding="utf-8")
    templates = tmp_path / "templates"
    shutil.copytree(default_templates_dir(), templates)
    css = templates / "report.css"
    css.write_text(
        f'@import url("{web.url}/x.css");\n@import url("{secret.as_uri()}");\n'
        f"body {{ background: url({web.url}/bg.png); }}\n" + css.read_text(encoding="utf-8"),
        encoding="utf-8",
    )
    out = tmp_path / "report.pdf"
    out.write_bytes(html_to_pdf("<p>quiet report</p>", templates_dir=templates))
    assert web.hits == []
    assert "quiet report" in pdf_text(out)  # the secret stylesheet would upper-case it
