"""The shared building blocks of every email: escaping, layout and how values and times are shown.

Owns `RenderedEmail` and the `Html` marker for markup built here; any plain `str` that reaches
`h` (and so every table cell, title and paragraph) is HTML-escaped, quotes included, while the
text part keeps values verbatim. The layout is deliberately plain for Outlook and Gmail: nested
tables, inline styles and `bgcolor`, no images, no scripts, no SVG. Times are shown in the zone
the caller passes, with its abbreviation, and month names never depend on the locale.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from html import escape
from typing import Any
from urllib.parse import quote

MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
FONT = "font-family:Arial,Helvetica,sans-serif;font-size:14px;line-height:20px;color:#1f2933;"
LABEL = "padding:4px 12px 4px 0;color:#52606d;vertical-align:top;white-space:nowrap;"
VALUE = "padding:4px 0;vertical-align:top;"
ACCENT_COLOUR = "#2f6fdb"
SUBJECT_MAX = 120  # characters: what a mail client's list shows; longer subjects are cut with "…"


@dataclass(frozen=True)
class RenderedEmail:
    """One email's subject and its two bodies; the HTML body is a complete document."""

    subject: str
    text: str
    html: str


class Html(str):
    """Markup built here, safe to place as is; any plain `str` is escaped on the way in."""

    __slots__ = ()


def email(subject: str, text: str, body: Html) -> RenderedEmail:
    """Wrap `body` sections in the full document.

    The subject is one line of at most SUBJECT_MAX characters (cut with "…"); the text ends in a
    newline. The bodies are never cut.
    """
    subject = shorten(one_line(subject), SUBJECT_MAX)  # no CR/LF can reach a header
    document = (
        '<!DOCTYPE html><html><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{h(subject)}</title></head>"
        '<body style="margin:0;padding:0;background-color:#f4f5f7;">'
        '<table role="presentation" width="100%" cellpadding="0" cellspacing="0" border="0" bgcolor="#f4f5f7">'
        '<tr><td align="center" style="padding:16px;">'
        '<table role="presentation" width="640" cellpadding="0" cellspacing="0" border="0" bgcolor="#ffffff" '
        f'style="width:640px;max-width:640px;background-color:#ffffff;border:1px solid #dde1e6;{FONT}">'
        f"{body}</table></td></tr></table></body></html>"
    )
    return RenderedEmail(subject=subject, text=text.rstrip() + "\n", html=document)


def one_line(value: str) -> str:
    """`value` with every run of whitespace (line breaks included) as one space, trimmed."""
    return " ".join(value.split())


def shorten(value: str, limit: int) -> str:
    """`value` itself when it has at most `limit` characters, else its start and "…", `limit` in all."""
    if len(value) <= limit:
        return value
    return value[: limit - 1].rstrip() + "…"


def section(title: str, content: str, small: bool = False) -> Html:
    """One titled row of the document; `content` is escaped unless it is `Html`."""
    size = "15px" if small else "18px"
    return Html(
        f'<tr><td style="padding:16px 20px 0 20px;{FONT}">'
        f'<div style="font-size:{size};line-height:24px;font-weight:bold;margin:0 0 6px 0;">{h(title)}</div>'
        f"{content}</td></tr>"
    )


def kv_table(rows: Iterable[tuple[str, str]]) -> Html:
    """A two-column label/value table; each cell is escaped unless it is `Html`."""
    cells = "".join(
        f'<tr><td style="{LABEL}">{h(label)}</td><td style="{VALUE}">{h(value)}</td></tr>' for label, value in rows
    )
    return Html(f'<table role="presentation" cellpadding="0" cellspacing="0" border="0" style="{FONT}">{cells}</table>')


def paragraph(text: str) -> Html:
    """An escaped paragraph."""
    return Html(f'<p style="margin:0 0 8px 0;">{h(text)}</p>')


def link(scheme: str, value: str, safe: str) -> Html:
    """A link to `scheme` + `value` (URL-quoted, then escaped) showing `value` escaped."""
    href = escape(scheme + quote(value, safe=safe), quote=True)
    return Html(f'<a href="{href}" style="color:{ACCENT_COLOUR};">{escape(value, quote=True)}</a>')


def text_rows(rows: Iterable[tuple[str, str]]) -> list[str]:
    """The text part's `label: value` lines, values verbatim."""
    return [f"{label}: {value}" for label, value in rows]


def h(value: str) -> str:
    """Escape plain text for HTML (quotes too); markup built here passes through."""
    return value if isinstance(value, Html) else escape(value, quote=True)


def plain(value: Any) -> str:
    """A detail value as text: strings as is, flat lists joined by commas, anything else as JSON."""
    if isinstance(value, str):
        return value
    if isinstance(value, list | tuple) and all(isinstance(item, str | int | float) for item in value):
        return ", ".join(str(item) for item in value)
    return json.dumps(value, ensure_ascii=False, default=str)


def utc(at: datetime) -> datetime:
    """`at` in UTC; a naive time is taken as UTC."""
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def day(at: datetime, tz: tzinfo) -> str:
    """`27 Nov 2026`: the calendar day of `at` in `tz`."""
    local = utc(at).astimezone(tz)
    return f"{local.day} {MONTHS[local.month - 1]} {local.year}"


def iso_time(value: Any, tz: tzinfo) -> str:
    """A stored ISO-8601 time shown like `time`; anything unparseable is shown as given."""
    try:
        return time(datetime.fromisoformat(str(value)), tz)
    except ValueError:
        return plain(value)


def time(at: datetime, tz: tzinfo) -> str:
    """`27 Nov 2026, 13:05 CET`: naive times are taken as UTC; month names never depend on locale."""
    local = utc(at).astimezone(tz)
    return f"{day(local, tz)}, {local:%H:%M} {local.tzname() or ''}".strip()
