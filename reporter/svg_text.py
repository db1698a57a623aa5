"""Chart labels drawn as whole runs of text, not one letter at a time (WeasyPrint 70).

WeasyPrint 70 draws every SVG ``<text>`` one code point at a time, so that per-character
``x``/``y``/``dx``/``dy``/``rotate`` lists can place each letter: a Pango layout and a
text object per letter. A report's two charts have some 70 labels, each plain text at
one position, and drawing them that way was a fifth of a print (57 of 300 ms, measured
with ``benchmarks/printing.py``). Drawn as one run each, they cost about half of that,
and the run is shaped as a whole: kerned as vl-convert measured it, accents kept on their
letters. A label centred or right-aligned is drawn in place, moved back by its width,
instead of into a PDF group of its own (another 7 ms a print, and 70 -> 52 KiB a PDF).
Upstream draws unpositioned text as runs on its main branch
(Kozea/WeasyPrint#2249); until a release has it, ``install`` puts this in front of
WeasyPrint's own drawing for the version it was written against. Any label that places
letters one by one, or aligns its baseline, still goes to WeasyPrint's own code.
"""

from __future__ import annotations

from math import inf
from typing import Any

# The WeasyPrint release whose SVG text drawing this replaces for plain labels; on any
# other, install() leaves WeasyPrint alone (tests/test_svg_text.py then says to look).
WRITTEN_FOR = "70.0"

# Attributes that place or space letters one by one, or move the baseline: text that has
# any of them is drawn by WeasyPrint itself.
_PER_LETTER = (
    "dx",
    "dy",
    "rotate",
    "letter-spacing",
    "textLength",
    "display-anchor",
    "dominant-baseline",
    "alignment-baseline",
)

# While ours is installed: "text", WeasyPrint's own text drawing; "tags", the tags it drew.
_stock: dict[str, Any] = {}


def install() -> bool:
    """Draw plain SVG labels as whole runs from now on, in this process; False (and
    WeasyPrint's own drawing kept) on a WeasyPrint version this was not written for."""
    import weasyprint
    import weasyprint.svg

    if weasyprint.__version__ != WRITTEN_FOR:
        return False
    if "text" not in _stock:
        stock = _stock["text"] = weasyprint.svg.TAGS["text"]
        # svg/__init__.py also compares nodes' drawers with its module-level ``text`` (to
        # anchor text, and to size a <text> by its <tspan>s), so that name and every tag
        # drawn by it (tspan, textPath, a) must point to the one drawer: a <tspan> left on
        # the old one is no text to it, and the image it is in fails to draw at all.
        _stock["tags"] = [tag for tag, drawer in weasyprint.svg.TAGS.items() if drawer is stock]
        for tag in _stock["tags"]:
            weasyprint.svg.TAGS[tag] = _draw_text
        weasyprint.svg.text = _draw_text
        _stock["draw_node"] = weasyprint.svg.SVG.draw_node
        weasyprint.svg.SVG.draw_node = _draw_node
    return True


def uninstall() -> None:
    """WeasyPrint's own drawing again (the tests compare the two)."""
    import weasyprint.svg

    if "text" in _stock:
        stock = _stock.pop("text")
        for tag in _stock.pop("tags"):
            weasyprint.svg.TAGS[tag] = stock
        weasyprint.svg.text = stock
        weasyprint.svg.SVG.draw_node = _stock.pop("draw_node")


def _single(value: str | None) -> bool:
    return value is None or len(value.replace(",", " ").split()) == 1


def _plain(node: Any) -> bool:
    attributes = node.attrib
    return bool(
        node.tag == "text"  # not its <tspan>s and the like, which WeasyPrint places itself
        and node.text
        and not any(name in attributes for name in _PER_LETTER)
        and _single(attributes.get("x"))
        and _single(attributes.get("y"))
    )


# How far a label is moved back by its own width, by its text-anchor.
_ALIGN = {"middle": 0.5, "end": 1.0}
# The key under which _draw_node tells _draw_text to move the label it is drawing.
_MOVE_BACK = "reporter:move-back"


def _draw_node(
    svg: Any, node: Any, font_size: float, fill_stroke: bool = True, context: Any = None
) -> None:
    """Draw a node as WeasyPrint 70 would, but a plain label anchored at its middle or end
    in place, moved back by its width, rather than in a group of its own.

    WeasyPrint draws such a label into a transparency group (a PDF form XObject with its
    own resources), only to move it by the width it turns out to have; a chart has some
    fifty. A plain label is one run whose width is known before it is drawn."""
    attributes = node.attrib
    anchor = attributes.get("text-anchor")
    if (
        anchor not in _ALIGN
        or attributes.get("direction", "ltr") != "ltr"
        or not _plain(node)
        or any(True for _ in node)
    ):
        _stock["draw_node"](svg, node, font_size, fill_stroke, context)
        return
    attributes["text-anchor"] = "start"
    attributes[_MOVE_BACK] = _ALIGN[anchor]
    try:
        _stock["draw_node"](svg, node, font_size, fill_stroke, context)
    finally:
        attributes["text-anchor"] = anchor
        attributes.pop(_MOVE_BACK, None)


def _draw_text(svg: Any, node: Any, font_size: float) -> None:
    """Draw a ``<text>`` node the way WeasyPrint 70 would, as one run when it is plain."""
    attributes = node.attrib
    if not _plain(node):
        _stock["text"](svg, node, font_size)
        return

    from weasyprint.css.properties import INITIAL_VALUES
    from weasyprint.draw.text import draw_emojis, draw_first_line
    from weasyprint.matrix import Matrix
    from weasyprint.svg.bounding_box import extend_bounding_box
    from weasyprint.svg.text import Style, TextBox
    from weasyprint.svg.utils import size
    from weasyprint.text.line_break import split_first_line

    # The style WeasyPrint 70 builds for SVG text (svg/text.py), unchanged.
    style = Style()
    style.update(INITIAL_VALUES)
    style.font_config = svg.font_config
    style["font_family"] = [
        font.strip("\"'") for font in node.get("font-family", "sans-serif").split(",")
    ]
    style["font_style"] = node.get("font-style", "normal")
    style["font_size"] = font_size
    if node.get("direction") in ("ltr", "rtl"):
        style["direction"] = node.get("direction")
    weight = node.get("font-weight", 400)
    if weight == "normal":
        style["font_weight"] = 400
    elif weight == "bold":
        style["font_weight"] = 700
    else:
        try:
            style["font_weight"] = int(weight)
        except ValueError:
            style["font_weight"] = 400

    layout, _, _, width, height, baseline = split_first_line(node.text, style, svg.context, inf, 0)

    # One position for the run, as WeasyPrint gives its first letter.
    x = size(attributes["x"], font_size, svg.inner_width) if "x" in attributes else None
    y = size(attributes["y"], font_size, svg.inner_height) if "y" in attributes else None
    if x:  # sic: WeasyPrint 70 keeps the shift of an earlier dx at x="0"
        svg.cursor_d_position[0] = 0
    if y:
        svg.cursor_d_position[1] = 0
    x = svg.cursor_position[0] if x is None else x
    y = svg.cursor_position[1] if y is None else y
    svg.cursor_position = x + width, y
    back = width * attributes.get(_MOVE_BACK, 0)  # anchored at its middle or end
    x_position = x + svg.cursor_d_position[0] - back
    y_position = y + svg.cursor_d_position[1]
    # The box text-anchor centres or right-aligns the run by.
    node.text_bounding_box = extend_bounding_box(
        node.text_bounding_box,
        (
            (x_position, y_position - baseline),
            (x_position + width, y_position - baseline + height),
        ),
    )

    svg.stream.push_state()
    fill, stroke = svg.set_graphical_state(node, font_size)
    svg.stream.begin_text()
    layout.reactivate(style)
    svg.fill_stroke(fill, stroke, text=True)
    text_box = TextBox(layout, style)
    text_box.baseline = baseline
    emojis = draw_first_line(
        svg.stream, text_box, "none", "none", Matrix(d=-1, e=x_position, f=y_position)
    )
    svg.stream.end_text()
    svg.stream.pop_state()
    draw_emojis(svg.stream, style, x - back, y, emojis)
