"""Report pages parsed as XML (reporter/xhtml.py) give WeasyPrint the tree its own HTML
parser gives, and print the same PDF; any page that is not XHTML is parsed as before."""

from __future__ import annotations

import datetime as dt
import subprocess
from collections.abc import Iterator
from pathlib import Path
from xml.etree import ElementTree

import pytest
import tinyhtml5
import weasyprint
from pydantic import SecretStr

from reporter import xhtml
from reporter.config import parse_config
from reporter.environment import ApiSettings
from reporter.files import default_templates_dir
from reporter.jobs import RunOptions, compose_report, fetch_tables
from reporter.magnific import MagnificClient
from reporter.periods import parse_period
from reporter.printer import html_to_pdf
from reporter.sandbox import SandboxServer
from tests.conftest import API_KEY, TODAY

NOW = dt.datetime(2026, 11, 25, 6, 0, tzinfo=dt.UTC)
# Every branch of the page a template change could make ill-formed: a finished month in
# English, and the month in progress, in Spanish, against a budget with a forecast.
CONFIG = parse_config(
    {
        "email": {"from": "reports@company.com"},
        "reports": [
            {"name": "marketing", "title": "Marketing & Co <all>", "owners": ["m@company.com"]},
            {
                "name": "design",
                "owners": ["d@company.com"],
                "budget_credits": 150_000,
                "locale": "es",
            },
        ],
    },
    source="test",
)
PAGES = [("2026-10", 0), ("2026-11", 1)]


@pytest.fixture(scope="module")
def pages(api_module: SandboxServer) -> list[str]:
    settings = ApiSettings(key=SecretStr(API_KEY), base_url=api_module.url)
    html = []
    with MagnificClient(settings) as client:
        for period, index in PAGES:
            options = RunOptions(
                parse_period(period, today=TODAY), Path("unused"), default_templates_dir(), NOW
            )
            report = CONFIG.reports[index]
            tables = fetch_tables(client, report, CONFIG, options)
            html.append(compose_report(report, tables, CONFIG, options).html)
    return html


@pytest.fixture(scope="module")
def api_module() -> Iterator[SandboxServer]:
    from reporter.sandbox import SandboxData

    with SandboxServer(SandboxData(today=TODAY), api_key=API_KEY) as server:
        yield server


def _shape(element: ElementTree.Element) -> list[tuple[str, dict[str, str], str, str]]:
    """Tags, attributes and text, in document order; text that is only white space
    between elements (which HTML's parser keeps in some places and not others, and which
    lays out as nothing) as empty."""

    def words(text: str | None) -> str:
        return " ".join((text or "").split())

    return [
        (str(e.tag), dict(e.attrib), words(e.text), words(e.tail))
        for e in element.iter()
        if isinstance(e.tag, str)
    ]


def test_the_report_page_is_xhtml_and_parses_to_the_tree_html_parsing_gives(
    pages: list[str],
) -> None:
    for html in pages:
        root = xhtml.parse(html)
        assert root is not None, "report.html.j2 is no longer well-formed XHTML"
        stock = tinyhtml5.parse(html, namespace_html_elements=False)
        assert _shape(root) == _shape(stock)
        assert root.find("body") is not None
        assert root.find(".//table") is not None
    # The branches the second page is there for: the in-progress badge, the forecast.
    assert 'class="badge"' in pages[1]
    assert "<br />previsión" in pages[1]


def _text(pdf: bytes, folder: Path, name: str) -> str:
    path = folder / name
    path.write_bytes(pdf)
    return subprocess.run(
        ["pdftotext", "-layout", str(path), "-"], capture_output=True, text=True, check=True
    ).stdout


def test_it_prints_the_pdf_html_parsing_prints(
    pages: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    templates = default_templates_dir()
    for number, html in enumerate(pages):
        ours = html_to_pdf(html, templates_dir=templates)
        with monkeypatch.context() as patch:
            patch.setattr(xhtml, "WRITTEN_FOR", "another release")  # WeasyPrint parses
            stock = html_to_pdf(html, templates_dir=templates)
        text = _text(ours, tmp_path, f"{number}-xml.pdf")
        assert text == _text(stock, tmp_path, f"{number}-html.pdf")
        assert text.count("\f") >= 2  # pages, each ended by a form feed


@pytest.mark.parametrize(
    ("html", "word"),
    [
        # No XHTML namespace: a templates directory copied before the page was XHTML.
        ("<!DOCTYPE html><html lang=en><title>t</title><p>Alpha<br>Beta", "Beta"),
        # Declares it, but is not well-formed (an HTML entity, an unclosed <br>).
        ('<html xmlns="http://www.w3.org/1999/xhtml"><p>Gamma&nbsp;<br>Delta</html>', "Delta"),
        # Well-formed, but its root is not an XHTML <html>.
        ('<div xmlns="http://www.w3.org/1999/xhtml"><p>Epsilon</p></div>', "Epsilon"),
    ],
)
def test_a_page_that_is_not_xhtml_is_left_to_weasyprints_parser(
    html: str, word: str, tmp_path: Path
) -> None:
    assert xhtml.parse(html) is None
    pdf = html_to_pdf(html, templates_dir=default_templates_dir())
    assert word in _text(pdf, tmp_path, "page.pdf").split()


def test_it_is_in_use_on_the_weasyprint_the_lock_file_pins() -> None:
    """When WeasyPrint is upgraded this fails: check what its HTML.__init__ sets once it
    has parsed a page against xhtml.page, and raise WRITTEN_FOR."""
    assert weasyprint.__version__ == xhtml.WRITTEN_FOR
    page = xhtml.page(
        weasyprint,
        '<html xmlns="http://www.w3.org/1999/xhtml"><body><p>x</p></body></html>',
        base_url="file:///",
        url_fetcher=None,
    )
    assert vars(page).keys() == vars(weasyprint.HTML(string="<p>x</p>")).keys()
    assert page.etree_element.tag == "html"


def test_a_page_expat_cannot_even_be_given_is_not_xhtml() -> None:
    """A lone surrogate cannot be encoded for expat: the page is left to WeasyPrint."""
    assert xhtml.parse(f'<html xmlns="{xhtml.NAMESPACE}"><p>\ud800</p></html>') is None
