"""A ``ChatMessage`` as a Slack incoming-webhook payload: Block Kit plus a ``text`` fallback.
Pure.

Slack's limits (api.slack.com/reference/block-kit): 50 blocks a message, 3,000
characters in a section's text, 150 in a header; mrkdwn needs ``&``, ``<`` and ``>``
escaped, or a name like ``<!channel>`` from the API would ping a whole channel.
"""

from __future__ import annotations

from typing import Any

from reporter.chat.message import ChatMessage

MAX_BLOCKS = 50
MAX_SECTION = 3000
MAX_HEADER = 150
MAX_CONTEXT_ELEMENT = 2000
MAX_TEXT = 40000  # the top-level fallback, which notifications show


def escape(text: str) -> str:
    """Slack mrkdwn escaping: the three characters Slack's docs say to replace."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def clip(text: str, limit: int) -> str:
    """At most ``limit`` characters, ending in an ellipsis when cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _clip_escaped(text: str, limit: int) -> str:
    """Escape, then cut without splitting an entity (``&amp;`` counts five characters)."""
    escaped = escape(text)
    if len(escaped) <= limit:
        return escaped
    cut = escaped[: limit - 1]
    amp = cut.rfind("&")
    if amp != -1 and ";" not in cut[amp:]:
        cut = cut[:amp]
    return cut + "…"


def _sections(lines: list[str]) -> list[str]:
    """Lines packed into section texts of at most MAX_SECTION characters each."""
    texts: list[str] = []
    current = ""
    for full in lines:
        line = clip(full, MAX_SECTION)
        if current and len(current) + 1 + len(line) > MAX_SECTION:
            texts.append(current)
            current = ""
        current = f"{current}\n{line}" if current else line
    if current:
        texts.append(current)
    return texts


def slack_payload(message: ChatMessage) -> dict[str, Any]:
    """The JSON body for a Slack incoming webhook."""
    section = {"type": "section", "text": {"type": "mrkdwn", "text": ""}}
    facts = [f"*{escape(label)}:* {escape(value)}" for label, value in message.facts]
    head = [f"*{escape(message.subtitle)}*", *facts] if message.subtitle else facts
    blocks: list[dict[str, Any]] = [
        {
            "type": "header",
            "text": {"type": "plain_text", "text": clip(message.title, MAX_HEADER)},
        },
    ]
    if message.notice:
        notice = f":warning: *{_clip_escaped(message.notice, MAX_SECTION - 20)}*"
        blocks.append({**section, "text": {"type": "mrkdwn", "text": notice}})
    blocks += [{**section, "text": {"type": "mrkdwn", "text": t}} for t in _sections(head)]
    if message.items:
        lines = [f"*{escape(message.list_title)}*"]
        lines += [f"• {_clip_escaped(item, MAX_SECTION - 2)}" for item in message.items]
        blocks += [{**section, "text": {"type": "mrkdwn", "text": t}} for t in _sections(lines)]
    context: list[dict[str, str]] = []
    if message.link:
        label, url = message.link
        context.append({"type": "mrkdwn", "text": f"<{url}|{_clip_escaped(label, 200)}>"})
    context.append({"type": "mrkdwn", "text": _clip_escaped(message.footer, MAX_CONTEXT_ELEMENT)})
    blocks = blocks[: MAX_BLOCKS - 1]
    blocks.append({"type": "context", "elements": context})
    return {"text": _clip_escaped(message.plain_text(), MAX_TEXT), "blocks": blocks}
