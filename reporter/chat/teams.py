"""A ``ChatMessage`` as a Microsoft Teams Workflows webhook body carrying an Adaptive Card
(version 1.4, which Teams renders everywhere). Pure.

Text from the API (user, project and tool names) goes into ``RichTextBlock`` text runs,
which Adaptive Cards never read as Markdown, so a name like ``**x**`` or ``[a](b)`` shows
as written; ``{{`` is broken with a zero-width space because Teams expands
``{{DATE(...)}}`` functions in card text.
"""

from __future__ import annotations

import json
from typing import Any

from reporter.chat.message import ChatMessage

CARD_VERSION = "1.4"
CARD_CONTENT_TYPE = "application/vnd.microsoft.card.adaptive"
# Teams refuses webhook messages over about 28 KB; items are dropped until it fits.
MAX_BYTES = 27 * 1024
_ZWSP = "\u200b"


def plain(text: str) -> str:
    """Text an Adaptive Card shows as written."""
    return text.replace("{{", "{" + _ZWSP + "{").replace("}}", "}" + _ZWSP + "}")


def _runs(text: str, **style: Any) -> dict[str, Any]:
    return {
        "type": "RichTextBlock",
        "inlines": [{"type": "TextRun", "text": plain(text), **style}],
    }


def _card(message: ChatMessage, items: tuple[str, ...]) -> dict[str, Any]:
    body: list[dict[str, Any]] = [
        _runs(message.title, size="Large", weight="Bolder"),
    ]
    if message.notice:
        body.append(_runs(message.notice, weight="Bolder", color="Attention"))
    if message.subtitle:
        body.append(_runs(message.subtitle, isSubtle=True))
    if message.facts:
        # FactSet values are Markdown to Teams: ours are numbers and our own labels.
        body.append(
            {
                "type": "FactSet",
                "facts": [{"title": plain(k), "value": plain(v)} for k, v in message.facts],
            }
        )
    if items:
        body.append(_runs(message.list_title, weight="Bolder"))
        body += [_runs(f"• {item}") for item in items]
    body.append(_runs(message.footer, isSubtle=True, size="Small"))
    card: dict[str, Any] = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": CARD_VERSION,
        "body": body,
    }
    if message.link:
        label, url = message.link
        card["actions"] = [{"type": "Action.OpenUrl", "title": plain(label), "url": url}]
    return card


def teams_payload(message: ChatMessage) -> dict[str, Any]:
    """The JSON body for a Teams Workflows ("Post to a channel when a webhook request is
    received") webhook."""
    items = message.items
    while True:
        payload = {
            "type": "message",
            "attachments": [
                {
                    "contentType": CARD_CONTENT_TYPE,
                    "contentUrl": None,
                    "content": _card(message, items),
                }
            ],
        }
        if not items or len(json.dumps(payload).encode()) <= MAX_BYTES:
            return payload
        items = items[:-1]
