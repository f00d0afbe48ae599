"""Chat messages for a new lead or an incident alert: Slack Block Kit and a Teams Adaptive Card.

Pure functions over the lead as `StoredLead.ops_view()` gives it and the alert payload the outbox
stores; nothing here sends. Wording, field order and the time format are the emails' own
(`shared.notify.templates`), times shown in UTC.

Lead text is kept inert. Slack (mrkdwn): `&`, `<`, `>` become `&amp;`, `&lt;`, `&gt;` (Slack's
rule, which also disarms `<!channel>` mentions and `<url|label>` links; nothing else is
entity-encoded); every backtick, and a `*`, `_` or `~` that touches anything but a letter or digit,
is wrapped in zero-width spaces so Slack shows it as typed, while a mark inside a word
(`first_last@example.com`) is left alone, since Slack never formats there, so addresses copy
cleanly; a `>` opening a line gets a zero-width space so it does not quote. Text objects are
`mrkdwn` with `verbatim`, so nothing is auto-linked. Teams: lead values and alert details only ever
sit in `TextRun`s, which render no Markdown; `TextBlock` carries only our own fixed words.

Both fit their service: answers are cut with "…" and answers beyond Slack's 50 blocks or the size
budget are left out, and a closing note says how many; the stored lead keeps them whole. Sizes are
measured as `json.dumps` writes by default (non-ASCII as `\\u` escapes), the longest form a sender
may post, and Slack's character limits in UTF-16 units, as Slack counts.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC
from typing import Any

# The alert email's wording, reused: alert_email has no public function for the guidance paragraph.
from shared.notify.templates.alert_email import alert_guidance, alert_title
from shared.notify.templates.html import iso_time, one_line, plain, shorten
from shared.notify.templates.lead_email import NAME_IN_SUBJECT

SLACK_MAX_BLOCKS = 50
SLACK_SECTION_CHARS = 3000  # a section's text
SLACK_FIELD_CHARS = 2000  # one of a section's fields
SLACK_MAX_BYTES = 40_000  # Slack takes more; the margin is ours
TEAMS_MAX_BYTES = 25_000  # Teams refuses about 28 KB
NAME_CHARS = 150
VALUE_CHARS = 300  # email, phone, form name, a detail value
ID_CHARS = 64
KEY_CHARS = 200  # a question's key
ANSWER_CHARS = 2000  # one question's answers; the stored lead keeps them whole
ZWSP = "\u200b"
CARD_SCHEMA = "http://adaptivecards.io/schemas/adaptive-card.json"
_NONE = "—"
_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
_NOTE_RESERVE = 400  # bytes kept for the closing note


def slack_lead(lead: Mapping[str, Any], form_name: str | None) -> dict[str, Any]:
    """A Slack incoming-webhook message announcing `lead`, with every answer that fits.

    At most 50 blocks, section texts of at most 3000 and fields of at most 2000 characters, under
    40 KB as JSON; a note says how many answers were shortened or left out.
    """
    name = _name(lead)
    form = _form_label(lead, form_name)
    fields = [_mrkdwn_object(_slack_field(label, value)) for label, value in _contact_rows(lead, form_name)]
    top: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": "New lead"}},
        _slack_section(slack_escape(name)),
        {"type": "section", "fields": fields},  # email, phone, form, ad: at most 10, each under 2000
    ]
    context = " · ".join(
        [iso_time(lead.get("created_time"), UTC), f"source {_text(lead.get('source'))}", *_id_parts(lead)]
    )
    bottom = [{"type": "context", "elements": [_mrkdwn_object(slack_escape(context))]}]
    text = slack_escape(f"New lead: {shorten(name, NAME_IN_SUBJECT)} ({shorten(form, NAME_IN_SUBJECT)})")
    answers = [_slack_answer(key, values) for key, values in _answers(lead)]
    room = SLACK_MAX_BYTES - _size({"text": text, "blocks": top + bottom}) - _NOTE_RESERVE
    sections, shown = _pack_sections([line for line, _ in answers], room, SLACK_MAX_BLOCKS - len(top + bottom) - 1)
    if not answers:
        sections = [_slack_section("*Answers*\nNo answers.")]
    note = _cut_note("Slack", sum(cut for _, cut in answers[:shown]), len(answers) - shown)
    notes = [{"type": "context", "elements": [_mrkdwn_object(note)]}] if note else []
    return {"text": text, "blocks": top + sections + bottom + notes}


def slack_alert(alert: Mapping[str, Any]) -> dict[str, Any]:
    """A Slack message for an incident opened or resolved: title, what to do (or what it means), the time."""
    heading, words, rows = _alert_words(alert)
    return {
        "text": slack_escape(heading),
        "blocks": [
            _slack_section(f"*{_slack_cut(heading, SLACK_SECTION_CHARS - 2)[0]}*"),
            _slack_section(_slack_cut(words, SLACK_SECTION_CHARS)[0]),
            _slack_section(_slack_rows(rows)),
        ],
    }


def teams_lead(lead: Mapping[str, Any], form_name: str | None) -> dict[str, Any]:
    """A Teams Workflows-webhook message announcing `lead`: an Adaptive Card with every answer that fits.

    Under 25 KB as JSON; a note says how many answers were shortened or left out.
    """
    top: list[dict[str, Any]] = [
        _text_block("New lead", weight="Bolder", size="Medium"),
        _rich(_run(_name(lead), weight="Bolder", size="Medium")),
        *(_labelled(label, value) for label, value in _contact_rows(lead, form_name, teams=True)),
        _text_block("Answers", weight="Bolder", separator=True),
    ]
    bottom = [_rich(_run(" · ".join(_id_parts(lead)), isSubtle=True, size="Small"))]
    answers = [_teams_answer(key, values) for key, values in _answers(lead)]
    room = TEAMS_MAX_BYTES - _size(_card(top + bottom)) - _NOTE_RESERVE
    shown = _fitting([block for block, _ in answers], room)
    body = top + ([block for block, _ in answers[:shown]] if answers else [_text_block("No answers.")])
    note = _cut_note("Teams", sum(cut for _, cut in answers[:shown]), len(answers) - shown)
    notes = [_text_block(note, isSubtle=True)] if note else []
    return _card(body + notes + bottom)


def teams_alert(alert: Mapping[str, Any]) -> dict[str, Any]:
    """A Teams message for an incident opened or resolved: title, what to do (or what it means), the time."""
    heading, words, rows = _alert_words(alert)
    top = [_rich(_run(heading, weight="Bolder", size="Medium")), _rich(_run(words))]
    lines = [_labelled(label, value) for label, value in rows]
    shown = _fitting(lines, TEAMS_MAX_BYTES - _size(_card(top)) - _NOTE_RESERVE)
    left_out = len(lines) - shown
    notes = [_text_block(f"{left_out} details left out to fit Teams.", isSubtle=True)] if left_out else []
    return _card(top + lines[:shown] + notes)


def slack_escape(value: str) -> str:
    """`value` as inert Slack mrkdwn: entities for `&`, `<`, `>`, formatting marks shown as typed.

    See the module docstring for the rule; the text reads the same, only zero-width spaces are added.
    """
    return "".join(_slack_tokens(value))


def _slack_cut(value: str, limit: int) -> tuple[str, bool]:
    """`slack_escape(value)` cut with "…" to at most `limit` UTF-16 units, and whether it was cut.

    A cut never splits an entity or a wrapped mark.
    """
    tokens = _slack_tokens(value)
    text = "".join(tokens)
    if _units(text) <= limit:
        return text, False
    kept, used = [], 1  # the "…"
    for token in tokens:
        used += _units(token)
        if used > limit:
            break
        kept.append(token)
    return "".join(kept).rstrip() + "…", True


def _slack_tokens(value: str) -> list[str]:
    """Each character of `value` as it must be written in mrkdwn to show as typed."""
    tokens = []
    for index, char in enumerate(value):
        if char == ">" and (index == 0 or value[index - 1] == "\n"):
            tokens.append(ZWSP + _ENTITIES[char])  # not a block quote
        elif char in _ENTITIES:
            tokens.append(_ENTITIES[char])
        elif char == "`" or (char in "*_~" and not _inside_word(value, index)):
            tokens.append(f"{ZWSP}{char}{ZWSP}")
        else:
            tokens.append(char)
    return tokens


def _inside_word(value: str, index: int) -> bool:
    """Whether a letter or digit stands on both sides of `value[index]`: Slack never formats there."""
    return 0 < index < len(value) - 1 and value[index - 1].isalnum() and value[index + 1].isalnum()


def _units(text: str) -> int:
    """Length as Slack counts it: UTF-16 code units."""
    return len(text.encode("utf-16-le")) // 2


def _slack_field(label: str, value: str) -> str:
    return f"*{label}*\n{_slack_cut(value, SLACK_FIELD_CHARS - len(label) - 3)[0]}"


def _slack_rows(rows: list[tuple[str, str]]) -> str:
    """`*Label:* value` lines, as many as fit one section, then how many were left out."""
    lines: list[str] = []
    for index, (label, value) in enumerate(rows):
        line = f"*{label}:* {slack_escape(value)}"
        if _units("\n".join([*lines, line])) > SLACK_SECTION_CHARS - 40:
            return "\n".join([*lines, f"… {len(rows) - index} more left out to fit Slack."])
        lines.append(line)
    return "\n".join(lines)


def _slack_answer(key: str, values: list[str]) -> tuple[str, bool]:
    """One answer as `*key*` over its values, at most a section long; whether anything was cut."""
    key_text, key_cut = _slack_cut(one_line(key), KEY_CHARS)
    value_text, value_cut = _slack_cut(_joined(values), ANSWER_CHARS)
    return f"*{key_text}*\n{value_text}", key_cut or value_cut


def _pack_sections(lines: list[str], room: int, max_blocks: int) -> tuple[list[dict[str, Any]], int]:
    """`lines` packed in order into sections of at most 3000 characters, the first titled "Answers".

    Stops at the first line that would exceed `room` bytes or `max_blocks` sections; returns the
    sections and how many lines they hold.
    """
    texts: list[str] = []
    done = 0  # bytes of the sections before the last
    for shown, line in enumerate(lines):
        head = "*Answers*\n" if not texts else ""
        if texts and _units(texts[-1]) + 2 + _units(line) <= SLACK_SECTION_CHARS:
            candidate, before = [*texts[:-1], f"{texts[-1]}\n\n{line}"], done
        else:
            candidate, before = [*texts, head + line], done + (_block_size(_slack_section(texts[-1])) if texts else 0)
        if len(candidate) > max_blocks or before + _block_size(_slack_section(candidate[-1])) > room:
            return [_slack_section(text) for text in texts], shown
        texts, done = candidate, before
    return [_slack_section(text) for text in texts], len(lines)


def _slack_section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": _mrkdwn_object(text)}


def _mrkdwn_object(text: str) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": text, "verbatim": True}


def _card(body: list[dict[str, Any]]) -> dict[str, Any]:
    """The Workflows webhook's message: one Adaptive Card 1.4 attachment."""
    content = {"$schema": CARD_SCHEMA, "type": "AdaptiveCard", "version": "1.4", "body": body}
    attachment = {"contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None, "content": content}
    return {"type": "message", "attachments": [attachment]}


def _text_block(text: str, **style: Any) -> dict[str, Any]:
    """Our own fixed words only: a TextBlock renders Markdown."""
    return {"type": "TextBlock", "text": text, "wrap": True, **style}


def _rich(*runs: dict[str, Any]) -> dict[str, Any]:
    return {"type": "RichTextBlock", "inlines": list(runs)}


def _run(text: str, **style: Any) -> dict[str, Any]:
    """Any text, lead values included: a TextRun renders no Markdown."""
    return {"type": "TextRun", "text": text, **style}


def _labelled(label: str, value: str) -> dict[str, Any]:
    return _rich(_run(f"{label}: ", weight="Bolder"), _run(value))


def _teams_answer(key: str, values: list[str]) -> tuple[dict[str, Any], bool]:
    """One answer as `key: values`, both in TextRuns; whether anything was cut."""
    key, joined = one_line(key), _joined(values)
    shown_key, shown_values = shorten(key, KEY_CHARS), shorten(joined, ANSWER_CHARS)
    return _labelled(shown_key, shown_values), shown_key != key or shown_values != joined


def _fitting(blocks: list[dict[str, Any]], room: int) -> int:
    """How many of `blocks`, in order, fit in `room` bytes."""
    used = 0
    for count, block in enumerate(blocks):
        used += _block_size(block)
        if used > room:
            return count
    return len(blocks)


def _cut_note(service: str, shortened: int, left_out: int) -> str | None:
    """Our own words on what was cut, or None when nothing was."""
    parts = [f"{shortened} shortened"] if shortened else []
    parts += [f"{left_out} not shown"] if left_out else []
    if not parts:
        return None
    return f"Answers cut to fit {service}: {', '.join(parts)}. The stored lead keeps every answer whole."


def _contact_rows(lead: Mapping[str, Any], form_name: str | None, teams: bool = False) -> list[tuple[str, str]]:
    """The email's main rows in its order: email, phone, time, form, ad, source (Slack puts time and source
    in its context line instead); one line each, cut with "…"."""
    ad_id, form_id = lead.get("ad_id"), lead.get("form_id")
    rows = [
        ("Email", _short(lead.get("email"))),
        ("Phone", _short(lead.get("phone_number"))),
        ("Time", iso_time(lead.get("created_time"), UTC)),
        ("Form", _form_label(lead, form_name) + (f" (id {_id(form_id)})" if form_name and form_id else "")),
        ("Ad", f"id {_id(ad_id)}" if ad_id else _NONE),
        ("Source", _short(lead.get("source"))),
    ]
    return rows if teams else [(label, value) for label, value in rows if label not in ("Time", "Source")]


def _id_parts(lead: Mapping[str, Any]) -> list[str]:
    ids = [("Lead id", "facebook_lead_id"), ("page", "page_id")]
    return [f"{label} {_id(lead[key])}" for label, key in ids if lead.get(key)]


def _id(value: Any) -> str:
    return shorten(one_line(str(value)), ID_CHARS)


def _answers(lead: Mapping[str, Any]) -> list[tuple[str, list[str]]]:
    fields = lead.get("fields") or {}
    return [(str(key), [str(value) for value in values or []]) for key, values in fields.items()]


def _joined(values: list[str]) -> str:
    return ", ".join(values) if values else _NONE


def _name(lead: Mapping[str, Any]) -> str:
    return shorten(one_line(_text(lead.get("full_name"))), NAME_CHARS) or "(no name)"


def _form_label(lead: Mapping[str, Any], form_name: str | None) -> str:
    form_id = lead.get("form_id")
    label = form_name or (f"form {form_id}" if form_id else "unknown form")
    return shorten(one_line(label), VALUE_CHARS)


def _short(value: Any) -> str:
    return shorten(one_line(_text(value)), VALUE_CHARS) or _NONE


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _alert_words(alert: Mapping[str, Any]) -> tuple[str, str, list[tuple[str, str]]]:
    """The alert email's title, guidance (or what resolution means) and rows, for chat."""
    kind = str(alert.get("kind"))
    opened = bool(alert.get("opened"))
    detail = dict(alert.get("detail") or {})
    title = alert_title(kind, detail)
    rows = [
        ("Incident", kind),
        ("Opened at" if opened else "Resolved at", iso_time(alert.get("at"), UTC)),
        *((shorten(str(key), KEY_CHARS), shorten(plain(value), VALUE_CHARS)) for key, value in detail.items()),
    ]
    heading = f"Lead agent: {title}" if opened else f"Lead agent resolved: {title}"
    return heading, alert_guidance(kind, opened, detail), rows


def _size(message: Any) -> int:
    """Bytes of `message` as `json.dumps` writes it by default (ASCII escapes): the longest a sender posts."""
    return len(json.dumps(message))


def _block_size(block: dict[str, Any]) -> int:
    return _size(block) + 2  # the ", " before it in its list
