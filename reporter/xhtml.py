"""Report pages parsed as the XML they are written as, not as HTML (WeasyPrint 70).

WeasyPrint parses every page with tinyhtml5, an HTML5 parser written in Python that
reads a character at a time: 14 ms of a 280 ms print for a report's page, measured with
``benchmarks/printing.py``. The report template is written as XHTML (well-formed, its
``<html>`` in the XHTML namespace), and the standard library's expat parses that in half
a millisecond into the tree tinyhtml5 builds. ``page`` hands WeasyPrint a page parsed so.
A page that does not declare the namespace (a templates directory copied before the
template did), or is not well-formed XML, or a WeasyPrint release other than the one this
was written for, gets WeasyPrint's own parsing.
"""

from __future__ import annotations

from typing import Any
from xml.etree import ElementTree

# The WeasyPrint release whose HTML.__init__ this stands in for (it sets the five
# attributes below once it has parsed the page); on any other, WeasyPrint parses.
WRITTEN_FOR = "70.0"

NAMESPACE = "http://www.w3.org/1999/xhtml"
_DECLARED = f'xmlns="{NAMESPACE}"'
_PREFIX = f"{{{NAMESPACE}}}"


def page(weasyprint: Any, html: str, *, base_url: str, url_fetcher: Any) -> Any:
    """``weasyprint.HTML(string=html, ...)``, parsed as XML when the page is XHTML."""
    root = parse(html) if weasyprint.__version__ == WRITTEN_FOR else None
    if root is None:
        return weasyprint.HTML(string=html, base_url=base_url, url_fetcher=url_fetcher)
    import cssselect2

    document = weasyprint.HTML.__new__(weasyprint.HTML)
    document.base_url = weasyprint._find_base_url(root, base_url)
    document.url_fetcher = url_fetcher
    document.media_type = "print"
    document.wrapper_element = cssselect2.ElementWrapper.from_html_root(root, content_language=None)
    document.etree_element = document.wrapper_element.etree_element
    return document


def parse(html: str) -> ElementTree.Element | None:
    """The page's tree as WeasyPrint's parser gives it (HTML elements without a
    namespace); None if the page is not XHTML."""
    start = html.find("<html")
    if start < 0 or _DECLARED not in html[start : html.find(">", start) + 1]:
        return None
    try:
        root = ElementTree.fromstring(html)
    except (ElementTree.ParseError, UnicodeError):  # a lone surrogate cannot be encoded
        return None
    if root.tag != _PREFIX + "html":
        return None
    for element in root.iter():
        tag = element.tag
        if isinstance(tag, str) and tag.startswith(_PREFIX):  # SVG or MathML keep theirs
            element.tag = tag[len(_PREFIX) :]
    root.set("xmlns", NAMESPACE)  # an attribute to HTML's parser, as written
    return root
