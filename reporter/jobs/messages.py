"""A report's email: the part of it each message carries, and the message on disk.

A message is written as soon as its reports are built (into the outbox, see
``reporter.outbox``, with a copy under ``--out``) and is read back from there to
be sent, so a run never holds a message's bytes longer than it takes to write
them, and a later run can send the very same file (same Message-ID) if this one
could not. Its Message-ID and its outbox name follow from what it is: the
reports and versions it carries, its recipients and its variant (a correction,
a preview), so two different messages never share either.
"""

from __future__ import annotations

import pickle
import urllib.parse
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reporter.config import Config
from reporter.jobs.build import BuiltReport, RunOptions
from reporter.jobs.records import MailFile, Written
from reporter.ledger import recipient_key
from reporter.mail import (
    Attachment,
    InlineImage,
    build_message,
    content_id,
    message_id,
    needs_smtputf8,
)
from reporter.outbox import identity, write_message
from reporter.render import render_template, translations

# Mail servers commonly refuse messages over 10 to 25 MB, and base64 adds a third.
CSV_ATTACHMENT_LIMIT = 5 * 1024 * 1024

# Rendered into the PDF only: the charts' data URLs are most of a context's size.
_PDF_ONLY = ("charts",)


@dataclass(frozen=True, slots=True)
class EmailPiece:
    """What a message needs of one report: small, and picklable to wait on disk."""

    name: str
    display_title: str
    locale: str
    context: dict[str, Any]
    chart_png: bytes | None  # the inline chart; None when there is nothing to draw
    pdf_path: Path
    csv_path: Path
    csv_rows: int
    version: int | None = None  # the report's version (None: a dry run or preview)


def email_piece(built: BuiltReport, version: int | None = None) -> EmailPiece:
    context = {k: v for k, v in built.context.items() if k not in _PDF_ONLY}
    return EmailPiece(
        built.report.name,
        built.report.display_title,
        built.locale,
        context,
        built.chart_png,
        built.pdf_path,
        built.csv_path,
        len(built.tables.detail),
        version,
    )


def mail_path(options: RunOptions, stem: str) -> Path:
    """Where people find a message under ``--out`` (never the file that is delivered)."""
    suffix = ".preview.eml" if options.preview_to else ".eml"
    return options.out_dir / options.period.key / f"{stem}{suffix}"


def owner_stem(owner: str) -> str:
    """A file name for one owner's message that no other address shares: the address
    itself, with only what a file name cannot hold percent-encoded (``j.smith`` and
    ``j_smith`` stay two files)."""
    return "mail-" + urllib.parse.quote(owner.lower(), safe="@.+-_=")


def compose_each(
    pieces: Sequence[EmailPiece],
    recipients: list[str],
    config: Config,
    options: RunOptions,
    stem: str,
) -> list[MailFile]:
    """``compose`` once for the owners whose addresses are ASCII and once for those who
    need SMTPUTF8, so a mail server without it fails only the latter."""
    plain = [r for r in recipients if not needs_smtputf8([r])]
    utf8 = [r for r in recipients if needs_smtputf8([r])]
    groups = [(plain, stem), (utf8, f"{stem}.smtputf8" if plain else stem)]
    return [
        compose(pieces, group, config, options, mail_path(options, name))
        for group, name in groups
        if group
    ]


def compose(
    pieces: Sequence[EmailPiece],
    recipients: list[str],
    config: Config,
    options: RunOptions,
    path: Path,
) -> MailFile:
    """One message carrying ``pieces`` to ``recipients``: its copy at ``path`` and, for a
    delivery, its file in the outbox, which is what ``MailFile.path`` names."""
    first = pieces[0]
    catalog = translations(options.templates_dir, first.locale)
    period = options.period
    contexts = []
    images = []
    attach_csv = {piece.name: _attach_csv(piece) for piece in pieces}
    for piece in pieces:
        cid = content_id(piece.name, period.key) if piece.chart_png else None
        if piece.chart_png and cid:
            images.append(InlineImage(cid, piece.chart_png))
        contexts.append(
            {
                **piece.context,
                "chart_cid": cid,
                "pdf_name": _attachment_name(piece.name, period.key),  # as attached
                "csv_name": piece.csv_path.name,  # named only when it stays on disk
                "csv_rows": piece.csv_rows,
                "csv_attached": attach_csv[piece.name],
            }
        )
    period_label = contexts[0]["period_name"]  # within the subject's sentence
    if len(pieces) == 1:
        subject = catalog.gettext("%(title)s — credit usage, %(period)s") % {
            "title": first.display_title,
            "period": period_label,
        }
    else:
        subject = catalog.gettext("Credit usage, %(period)s: %(titles)s") % {
            "period": period_label,
            "titles": ", ".join(p.display_title for p in pieces),
        }
    correction = first.context.get("correction")
    if correction:
        subject = catalog.gettext("Corrected: %(subject)s") % {"subject": subject}
    if options.preview_to:
        subject = catalog.gettext("Preview: %(subject)s") % {"subject": subject}
    template_context = {"reports": contexts, "subject": subject}
    text = render_template(options.templates_dir, "email.txt.j2", first.locale, template_context)
    html = render_template(options.templates_dir, "email.html.j2", first.locale, template_context)
    attachments = []
    for piece in pieces:
        attachments.append(
            Attachment(
                _attachment_name(piece.name, period.key),
                piece.pdf_path.read_bytes(),
                "application/pdf",
            )
        )
        if attach_csv[piece.name]:
            attachments.append(
                Attachment(
                    _attachment_name(piece.name, period.key, "csv"),
                    piece.csv_path.read_bytes(),
                    "text/csv",
                )
            )
    names = [p.name for p in pieces]
    versions = {p.name: p.version for p in pieces if p.version is not None}
    shown = ", ".join(f"{name}={number}" for name, number in sorted(versions.items()))
    variant = [f"versions {shown}"] if versions else []
    if options.preview_to:
        # Each preview is new mail: a mailbox must not drop it as a copy of the last one.
        variant.append(f"preview {options.now.isoformat()}")
    if correction:
        # A correction is new mail, not a copy of the report it corrects.
        variant.append(f"correction {correction['sent']:.0f} {correction['current']:.0f}")
    msg_id = message_id(
        names, period.key, recipients, config.email.from_, variant=" ".join(variant)
    )
    message = build_message(
        sender=config.email.from_,
        recipients=recipients,
        subject=subject,
        text=text,
        html=html,
        inline_images=images,
        attachments=attachments,
        msg_id=msg_id,
        date=options.now,
        reply_to=config.email.reply_to,
        headers={"X-Reporter-Version": shown} if shown else {},
    )
    name = f"{identity(msg_id)}.eml"
    path = write_message(options.outbox, path, period.key, name, bytes(message))
    return MailFile(names, recipients, path, msg_id, versions=versions)


def per_owner_mails(
    written: Iterable[Written],
    pending: Mapping[str, list[str]],
    config: Config,
    options: RunOptions,
) -> list[MailFile]:
    """With ``[email] one_mail_per_owner``: one message per owner with all their reports,
    composed from the parts the reports left on disk, one owner at a time."""
    # An owner is a mailbox: ``Ann@x`` owning one report and ``ann@x`` another get one
    # message, addressed as first spelt (the ledger stores both as ``ann@x``).
    by_owner: dict[str, list[Path]] = {}
    spelt: dict[str, str] = {}
    for item in written:
        if item.piece_path is None:
            continue
        for owner in pending[item.report]:
            key = recipient_key(owner)
            by_owner.setdefault(spelt.setdefault(key, owner), []).append(item.piece_path)
    mails = []
    for owner, paths in by_owner.items():
        pieces = [pickle.loads(p.read_bytes()) for p in paths]
        mails.append(
            compose(pieces, [owner], config, options, mail_path(options, owner_stem(owner)))
        )
    return mails


def _attach_csv(piece: EmailPiece) -> bool:
    """A big team's usage rows (a million rows is ~100 MB) stay on disk, not in the mail."""
    return piece.csv_path.stat().st_size <= CSV_ATTACHMENT_LIMIT


def _attachment_name(name: str, period_key: str, ext: str = "pdf") -> str:
    return f"{name}-{period_key}.{ext}"
