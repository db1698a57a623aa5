"""HTML -> PDF (WeasyPrint), in this process or in printer processes beside it.

Printing is over half of a report's time and needs none of the data: a run
composes each report's charts and HTML in its own process and hands the HTML
to printers started when the run begins, which import WeasyPrint and set up
its fonts while the run is still fetching. This module imports no pandas, so a
printer is ready in about half a second.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import functools
import gc
from collections.abc import Iterator, Sequence
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse
from urllib.request import url2pathname

from reporter import xhtml
from reporter.errors import RenderError, ReporterError, UsageError
from reporter.files import default_templates_dir, write_atomic
from reporter.lifetime import worker_pool

# Printing leaves a little memory behind in the native libraries (measured: about 0.05 MiB
# a report, 144 -> 153 MiB over 200 prints, once charts stopped being cached). A printer
# is replaced after this many reports, so a long run's memory stays flat; a replacement
# costs about a second of start-up, so not more often than that needs.
PRINTS_PER_PROCESS = 500


def html_to_pdf(
    html: str,
    *,
    templates_dir: Path,
    variant: str = "pdf/ua-1",
    attachments: Sequence[tuple[str, bytes, str]] = (),
    identifier: str | None = None,
) -> bytes:
    """Print HTML to PDF, styled by ``templates_dir``'s report.css; only files under
    ``templates_dir`` and data: URLs may be loaded."""
    with _collected_once():  # once the print's objects are all garbage, on return
        return _print(html, templates_dir, variant, attachments, identifier)


def _print(
    html: str,
    templates_dir: Path,
    variant: str,
    attachments: Sequence[tuple[str, bytes, str]],
    identifier: str | None,
) -> bytes:
    import weasyprint  # Imported here: it takes ~0.3 s and not every command needs it.

    fonts, file_images = _shared(weasyprint)
    fetcher = _local_fetcher(weasyprint, templates_dir)
    document = xhtml.page(
        weasyprint,
        html,
        base_url=templates_dir.resolve().as_uri() + "/",
        url_fetcher=fetcher,
    )
    files = [
        weasyprint.Attachment(
            string=content,
            name=name,
            description=description,
            url_fetcher=fetcher,
            relationship="Data",
        )
        for name, content, description in attachments
    ]
    # This report's images: the templates' files as parsed before, and its own charts,
    # which no other report shows and which are dropped with it.
    images = dict(file_images)
    try:
        stylesheets = [_chart_fonts(weasyprint, fonts)]
        stylesheets.append(_stylesheet(weasyprint, templates_dir / STYLESHEET, fonts))
        pdf: bytes = document.write_pdf(
            pdf_variant=variant,
            attachments=files or None,
            pdf_identifier=identifier.encode() if identifier else None,
            pdf_tags=True,
            finisher=header_scopes,
            custom_metadata=True,
            font_config=fonts,
            cache=images,
            stylesheets=[sheet for sheet in stylesheets if sheet is not None] or None,
        )
    except Exception as exc:  # WeasyPrint raises many kinds; the report alone fails
        raise RenderError(f"could not print the PDF: {type(exc).__name__}: {exc}") from exc
    finally:
        file_images.update((url, image) for url, image in images.items() if _is_file(url))
        # Emptied, not just dropped: each image it holds refers back to it, and a print's
        # images (a report's bars are some 30 backgrounds) held that way outlived the
        # collection after the print and piled up, 5.6 MB a print (benchmark (6)).
        images.clear()
    return pdf


def header_scopes(document: Any, pdf: Any) -> None:
    """Gives every table header cell of the tagged PDF its ``/Scope``: ``/Column`` in a
    table's head, ``/Row`` elsewhere (each body and foot row's first cell names its row,
    as the templates' ``scope="row"`` says).

    WeasyPrint 70 tags ``<th>`` as ``/TH`` and links data cells to them by ``/Headers``,
    but writes no ``/Scope``, without which a checker (and some screen readers) cannot
    tell a column header from a row header (PDF/UA-1, 7.5; ``pdfua`` rule UA-15-003). Done
    through WeasyPrint's own ``finisher`` hook, on its PDF objects before they are
    written: nothing is parsed back or edited as bytes."""
    elements: list[Any] = [obj for obj in pdf.objects if isinstance(obj, dict) and "S" in obj]
    by_reference = {element.reference: element for element in elements}
    for cell in by_reference.values():
        if cell.get("S") != "/TH" or not isinstance(cell.get("A"), dict):
            continue
        row = by_reference.get(cell.get("P"))
        section = by_reference.get(row.get("P")) if row is not None else None
        in_head = section is not None and section.get("S") == "/THead"
        cell["A"]["Scope"] = "/Column" if in_head else "/Row"


@contextlib.contextmanager
def _collected_once() -> Iterator[None]:
    """No garbage collection during a print, one after it.

    A print makes a few hundred thousand objects (boxes, styles, PDF operators), which
    set off about 80 collections of the young generation and several of the whole heap
    (fonts, stylesheets, imports): 75-80 ms of a 450 ms print, measured. One collection
    of the young generation when the print is done frees the same garbage (memory stays
    as flat over a run) in a fraction of that."""
    if not gc.isenabled():  # the caller has its own reasons
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        gc.collect(0)


def _is_file(url: object) -> bool:
    return isinstance(url, str) and url.startswith("file:")


@functools.cache
def _shared(weasyprint: Any) -> tuple[Any, dict[str, Any]]:
    """One font configuration and one cache of the templates' images (the logo) for
    every report a process prints: fontconfig is set up once, and the logo is read and
    parsed once. Charts are not kept: each report has its own, and keeping them held
    about 7.6 MiB a report (3.7 GiB in a printer's 500 reports). Chart labels are drawn
    as whole runs from here on (reporter/svg_text.py)."""
    from weasyprint.text.fonts import FontConfiguration

    from reporter import svg_text

    svg_text.install()
    return FontConfiguration(), {}


# The stylesheet the printer applies to every page, from the templates directory. The
# page does not link it: WeasyPrint would parse a linked stylesheet again for each report.
STYLESHEET = "report.css"


def _stylesheet(weasyprint: Any, path: Path, fonts: Any) -> Any:
    """The templates' stylesheet, parsed once per process rather than once per report
    (measured: 3 % of a print); parsed again if the file has changed since, and None if
    the templates directory has none."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return _parsed_stylesheet(weasyprint, path.resolve(), stat.st_mtime_ns, stat.st_size, fonts)


@functools.cache
def _parsed_stylesheet(weasyprint: Any, path: Path, mtime_ns: int, size: int, fonts: Any) -> Any:
    """Parsed through the same local-only fetcher as the page, for what it imports."""
    return weasyprint.CSS(
        filename=str(path),
        url_fetcher=_local_fetcher(weasyprint, path.parent),
        font_config=fonts,
    )


# The charts' typeface (reporter/charts.py FONT), shipped with the package's templates.
CHART_FONTS = (("LiberationSans-Regular.ttf", "normal"), ("LiberationSans-Bold.ttf", "bold"))


@functools.cache
def _chart_fonts(weasyprint: Any, fonts: Any) -> Any:
    """The charts' typeface, from the package's own templates whatever ``--templates``
    says: vl-convert measured every chart label in it, and a copy of the templates made
    before it shipped (or without fonts/) drew the labels in a wider fallback that ran the
    legend's names into the next swatch. None if the package's fonts are missing."""
    try:
        folder = default_templates_dir() / "fonts"
    except UsageError:
        return None
    if not all((folder / name).is_file() for name, _ in CHART_FONTS):
        return None
    rules = "".join(
        f'@font-face {{ font-family: "Liberation Sans"; src: url({name}); font-weight: {weight}; }}'
        for name, weight in CHART_FONTS
    )
    return weasyprint.CSS(
        string=rules,
        base_url=folder.as_uri() + "/",
        url_fetcher=_local_fetcher(weasyprint, folder),
        font_config=fonts,
    )


@functools.cache
def _fetcher_class(weasyprint: Any) -> type:
    class LocalOnlyFetcher(weasyprint.urls.URLFetcher):  # type: ignore[misc]
        """Refuses the network and any file outside the templates directory."""

        def __init__(self, root: Path) -> None:
            super().__init__(allowed_protocols=("file", "data"))
            self.root = root.resolve()

        def fetch(self, url: str, headers: Any = None) -> Any:
            if url.startswith("file:"):
                path = Path(url2pathname(urlparse(url).path)).resolve()
                if not path.is_relative_to(self.root):
                    raise ValueError(f"refusing to read {path}: outside {self.root}")
            elif not url.startswith("data:"):
                raise ValueError(f"refusing to fetch {url}: reports load no remote resources")
            return super().fetch(url, headers)

    return LocalOnlyFetcher


def _local_fetcher(weasyprint: Any, root: Path) -> Any:
    return _fetcher_class(weasyprint)(root)


# --- printers ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PrintJob:
    """One report's page, ready to print: what a printer process is sent."""

    html: str
    templates_dir: Path
    path: Path  # where the PDF goes
    variant: str = "pdf/ua-1"
    attachments: tuple[tuple[str, bytes, str], ...] = ()
    identifier: str | None = None


# A failure comes back from a printer as (message, hint): it pickles cleanly across
# processes, where exceptions with keyword arguments do not.
Printed = Path | tuple[str, str | None]


def print_job(job: PrintJob) -> Path:
    """Print and write one PDF; the caller gets its path, never its bytes."""
    pdf = html_to_pdf(
        job.html,
        templates_dir=job.templates_dir,
        variant=job.variant,
        attachments=job.attachments,
        identifier=job.identifier,
    )
    return write_atomic(job.path, pdf)


def print_safely(job: PrintJob) -> Printed:
    try:
        return print_job(job)
    except ReporterError as exc:
        return (exc.message, exc.hint)
    except Exception as exc:  # a bug costs one report, not the run
        return (f"internal error: {type(exc).__name__}: {exc}", "report it")


# Text in both of the report's families: html_to_pdf applies report.css and loads the charts'
# typeface before the first report does.
WARM_UP = (
    "<!DOCTYPE html><html lang=en><title>-</title>"
    "<p>0 <b>0</b> <span style='font-family: Liberation Sans'>0 <b>0</b></span>"
)


def warm_up(templates_dir: Path) -> None:
    """In each printer, before its first report: WeasyPrint imported and its fonts set
    up while the run fetches, so the first report prints warm. A failure here is left to
    the real print, which says what is wrong, per report."""
    with contextlib.suppress(Exception):
        html_to_pdf(WARM_UP, templates_dir=templates_dir)


def start_printers(workers: int, templates_dir: Path) -> concurrent.futures.ProcessPoolExecutor:
    """Printer processes, started now: they warm up while the caller goes on."""
    return worker_pool(
        workers,
        setup=warm_up,
        setup_args=(templates_dir,),
        max_tasks_per_child=PRINTS_PER_PROCESS,
    )


PRINTER_DIED = "the printer process died while printing it (killed, or out of memory)"


class Printers:
    """Printer processes that outlive one of them dying.

    A printer that is killed (out of memory, by hand) breaks its whole pool, and with it
    every job in flight. New printers are then started and each of those jobs gets one
    more try, so one lost printer costs no report; a job that loses its printer twice
    fails alone, with a line that says so."""

    def __init__(self, workers: int, templates_dir: Path) -> None:
        self._workers = workers
        self._templates_dir = templates_dir
        self._pool = start_printers(workers, templates_dir)
        self._tries: dict[Path, int] = {}

    def submit(self, job: PrintJob) -> concurrent.futures.Future[Printed]:
        self._tries[job.path] = self._tries.get(job.path, 0) + 1
        try:
            return self._pool.submit(print_safely, job)
        except BrokenProcessPool:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = start_printers(self._workers, self._templates_dir)
            return self._pool.submit(print_safely, job)

    def retry(self, job: PrintJob) -> concurrent.futures.Future[Printed] | None:
        """The job again, after its printer died; None once it has had its second try."""
        if self._tries.get(job.path, 0) >= 2:
            return None
        return self.submit(job)

    def shutdown(self, *, wait: bool) -> None:
        self._pool.shutdown(wait=wait, cancel_futures=True)
