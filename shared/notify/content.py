"""What the emails say: the instant lead email, the daily digest and incident alerts, as text and HTML.

Pure functions over `shared.notify.models`; nothing here sends, reads settings or touches the store.
Every value that comes from a lead or from Meta is HTML-escaped in the HTML part (attribute values
too) and kept verbatim in the text part. The HTML is deliberately plain for Outlook and Gmail:
nested tables, inline styles and `bgcolor`, no images, no scripts, no SVG; the digest's bar chart
is table cells only. Times are shown in the zone the caller passes, with its abbreviation.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from html import escape
from typing import Any
from urllib.parse import quote

from shared.notify.models import AlertData, DigestData, LeadSummary

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_FONT = "font-family:Arial,Helvetica,sans-serif;font-size:14px;line-height:20px;color:#1f2933;"
_LABEL = "padding:4px 12px 4px 0;color:#52606d;vertical-align:top;white-space:nowrap;"
_VALUE = "padding:4px 0;vertical-align:top;"
_BAR_COLOUR = "#2f6fdb"
_BAR_MAX_PX = 300
_TEXT_BAR_MAX = 40
_MAX_GRID_HOURS = 48
_SOURCES = ("webhook", "polling", "reprocess")
_NONE = "—"

# kind: (title, what to do when opened, what it means when resolved)
_KINDS: dict[str, tuple[str, str, str]] = {
    "token_invalid": (
        "Meta access token is invalid",
        "The Meta access token is invalid or expired, or its user lost the page role, so lead details "
        "cannot be fetched. Create a new long-lived Page or system-user token with leads_retrieval and "
        "pages_manage_metadata for the page, and put it in Key Vault (or the FACEBOOK_ACCESS_TOKEN app "
        "setting). Leads keep arriving and wait in the queue; none are lost, and they are fetched as soon "
        "as the new token works.",
        "The access token works again; leads that waited are being fetched now.",
    ),
    "subscription_lost": (
        "Page stopped sending lead webhooks",
        "A page stopped sending lead webhooks (its app subscription was dropped). The agent has "
        "re-subscribed it and the poller fills any gap. Check that the app is still installed on the page "
        "and that Leads Access in Meta Business Suite still allows the app, or it will drop again.",
        "Every page is subscribed again.",
    ),
    "polling_failing": (
        "Safety-net poller is failing",
        "The safety-net poller that catches leads the webhook missed is failing. Webhook leads still "
        "arrive, but missed ones are not recovered until it works. Check /api/health and the function logs "
        "for the error.",
        "The poller runs cleanly again and catches up on its window.",
    ),
    "dead_letters_growing": (
        "Dead letters are growing",
        "{count} dead letters are open: events the agent gave up on after retries. Inspect them at "
        "/api/ops/failed-events, fix the cause, then reprocess them from there.",
        "The open dead letters are back under the threshold.",
    ),
    "silence": (
        "No leads for {hours} hours",
        "No lead has arrived for {hours} hours although the recent baseline expects some. Check that the "
        "ads are running and approved, that the page is still subscribed to the app, and that the access "
        "token is valid (/api/health).",
        "Leads are arriving again.",
    ),
}
_UNKNOWN_KIND = (
    "Incident {kind}",
    "The agent raised an incident it has no guidance for. Check /api/health and the function logs.",
    "The incident is resolved.",
)


@dataclass(frozen=True)
class RenderedEmail:
    """One email's subject and its two bodies; the HTML body is a complete document."""

    subject: str
    text: str
    html: str


class _Html(str):
    """Markup built here, safe to place as is; any plain `str` is escaped on the way in."""

    __slots__ = ()


def render_lead_email(leads: Sequence[LeadSummary], tz: tzinfo) -> RenderedEmail:
    """The instant email for one or more new leads, each listed once (by Facebook lead id).

    Shows every answered field with all its values, the lead time in `tz`, form, ad names (or
    "organic") and source. Raises `ValueError` for an empty sequence: there is nothing to announce.
    """
    by_id: dict[str, LeadSummary] = {}
    for lead in leads:
        by_id.setdefault(lead.facebook_lead_id, lead)
    unique = list(by_id.values())
    if not unique:
        raise ValueError("render_lead_email needs at least one lead")
    forms = {_form_label(lead) for lead in unique}
    if len(unique) == 1:
        subject = f"New lead: {unique[0].full_name or '(no name)'} — {forms.pop()}"
    else:
        subject = f"{len(unique)} new leads" + (f" — {forms.pop()}" if len(forms) == 1 else "")
    texts, blocks = [], []
    for index, lead in enumerate(unique, start=1):
        heading = lead.full_name or "(no name)"
        if len(unique) > 1:
            heading = f"{index}. {heading}"
        rows = _lead_rows(lead, tz)
        answers = [(key, ", ".join(values) if values else _NONE) for key, values in lead.fields.items()]
        answer_lines = [f"  {key}: {value}" for key, value in answers] or ["  none"]
        texts.append("\n".join([heading, *_text_rows(rows), "Answers:", *answer_lines]))
        blocks.append(
            _section(heading, _kv_table(_with_links(rows, lead)))
            + _section("Answers", _kv_table(answers) if answers else _paragraph("No answers."), small=True)
        )
    return _email(subject, "\n\n".join(texts), _Html("".join(blocks)))


def render_digest(data: DigestData, tz: tzinfo) -> RenderedEmail:
    """The daily summary: totals, sources, forms, reconciliation, health and leads per hour in `tz`.

    The subject names the last day of the period (its exclusive end minus an instant, in `tz`). The
    hourly chart has one row per hour of the period (capped at 48) plus any hour the data names,
    each bar's width proportional to its count; an hour without leads has no bar.
    """
    day = _day(_utc(data.period_end) - timedelta(microseconds=1), tz)
    subject = f"Lead digest for {day}: {data.leads_total} lead{'' if data.leads_total == 1 else 's'}"
    totals = [
        ("Period", f"{_time(data.period_start, tz)} to {_time(data.period_end, tz)}"),
        ("New leads", str(data.leads_total)),
        ("Emails sent", str(data.notifications_sent)),
        ("Duplicates ignored", str(data.duplicates_ignored)),
        ("Dead letters open", _dead_letters(data.dead_letters_open)),
    ]
    others = [key for key in data.by_source if key not in _SOURCES]
    sources = [(key, str(data.by_source.get(key, 0))) for key in (*_SOURCES, *sorted(others))]
    forms = [(label, str(count)) for label, count in data.by_form]
    reconciliation = [
        ("Poll runs", str(data.poll_runs)),
        ("Poll errors", str(data.poll_errors)),
        ("Missing leads found (webhook never delivered)", str(data.missing_found)),
        ("Queued by the poller", str(data.enqueued_by_poller)),
    ]
    health = _token_rows(data.token)
    incidents = [(_title(kind, detail), _incident_summary(detail, tz)) for kind, detail in data.open_incidents.items()]
    hours = _hour_rows(data, tz)
    peak = max((count for _, count in hours), default=0)
    sections: list[tuple[str, list[tuple[str, str]], str]] = [
        ("Totals", totals, ""),
        ("By source", sources, ""),
        ("By form", forms, "No leads."),
        ("Reconciliation", reconciliation, ""),
        ("Integration health", health, ""),
        ("Open incidents", incidents, "None."),
    ]
    text = [f"Lead digest for {day}"]
    blocks = []
    for title, rows, empty in sections:
        text += ["", title, *(_text_rows(rows) if rows else [empty])]
        blocks.append(_section(title, _kv_table(rows) if rows else _paragraph(empty)))
    zones = ", ".join(dict.fromkeys(label.split(" ")[-1] for label, _ in hours)) if hours else ""
    chart_title = f"Leads per hour ({zones})" if zones else "Leads per hour"
    text += ["", chart_title]
    text += [f"{label} | {'#' * _bar(count, peak, _TEXT_BAR_MAX)} {count}" for label, count in hours] or ["No data."]
    blocks.append(_section(chart_title, _bar_chart(hours, peak) if hours else _paragraph("No data.")))
    return _email(subject, "\n".join(text), _Html("".join(blocks)))


def render_alert(alert: AlertData, tz: tzinfo) -> RenderedEmail:
    """An incident opened (what happened and what to do) or resolved; unknown kinds get a generic text."""
    title = _title(alert.kind, alert.detail)
    _, guidance, resolved = _KINDS.get(alert.kind, _UNKNOWN_KIND)
    state = "ALERT" if alert.opened else "RESOLVED"
    paragraph = _fill(guidance if alert.opened else resolved, alert.kind, alert.detail)
    rows = [
        ("Incident", alert.kind),
        ("Opened at" if alert.opened else "Resolved at", _time(alert.at, tz)),
        *((str(key), _plain(value)) for key, value in alert.detail.items()),
    ]
    text = "\n".join([f"{state}: {title}", "", paragraph, "", *_text_rows(rows)])
    html = _section(f"{state}: {title}", _paragraph(paragraph) + _kv_table(rows))
    return _email(f"[Lead agent] {state}: {title}", text, html)


def _lead_rows(lead: LeadSummary, tz: tzinfo) -> list[tuple[str, str]]:
    rows = [
        ("Name", lead.full_name or _NONE),
        ("Email", lead.email or _NONE),
        ("Phone", lead.phone_number or _NONE),
        ("Time", _time(lead.created_time, tz)),
        ("Form", _form_label(lead) + (f" (id {lead.form_id})" if lead.form_name and lead.form_id else "")),
    ]
    ad = [
        ("Ad", lead.ad_name or (f"id {lead.ad_id}" if lead.ad_id else None)),
        ("Ad set", lead.adset_name),
        ("Campaign", lead.campaign_name or (f"id {lead.campaign_id}" if lead.campaign_id else None)),
    ]
    known = [(label, value) for label, value in ad if value]
    if known:
        rows += known
    else:
        rows.append(("Ad", "organic (not from an ad)" if lead.is_organic else "unknown"))
    rows += [("Source", lead.source), ("Platform", lead.platform or _NONE), ("Lead id", lead.facebook_lead_id)]
    return rows


def _with_links(rows: list[tuple[str, str]], lead: LeadSummary) -> list[tuple[str, str]]:
    """The lead's rows for HTML: email and phone become mailto/tel links (escaped and URL-quoted)."""
    links = {
        "Email": _link("mailto:", lead.email, "@") if lead.email else None,
        "Phone": _link("tel:", lead.phone_number, "+") if lead.phone_number else None,
    }
    return [(label, links.get(label) or value) for label, value in rows]


def _form_label(lead: LeadSummary) -> str:
    return lead.form_name or (f"form {lead.form_id}" if lead.form_id else "unknown form")


def _token_rows(token: dict[str, Any]) -> list[tuple[str, str]]:
    valid = token.get("valid")
    rows = [("Access token", "unknown" if valid is None else ("valid" if valid else "INVALID"))]
    if token.get("expires_at"):
        rows.append(("Token expires", _plain(token["expires_at"])))
    if token.get("error"):
        rows.append(("Token error", _plain(token["error"])))
    return rows


def _incident_summary(entry: dict[str, Any], tz: tzinfo) -> str:
    detail = _inner(entry)
    parts = [f"since {_iso_time(entry['opened_at'], tz)}"] if entry.get("opened_at") else []
    parts += [f"{key}: {_plain(value)}" for key, value in detail.items() if key not in ("open", "opened_at")]
    return "; ".join(parts) or "open"


def _dead_letters(count: int) -> str:
    return f"{count} (see /api/ops/failed-events)" if count else "0"


def _title(kind: str, detail: dict[str, Any]) -> str:
    return _fill(_KINDS.get(kind, _UNKNOWN_KIND)[0], kind, detail)


def _fill(template: str, kind: str, detail: dict[str, Any]) -> str:
    """Put the numbers an alert names (dead letters, silent hours) into its text; '?' when absent."""
    inner = _inner(detail)
    count = next((inner[k] for k in ("count", "dead_letters_open", "open_count") if k in inner), "?")
    hours = next((inner[k] for k in ("hours", "silent_hours", "quiet_hours") if k in inner), "?")
    return template.format(kind=kind, count=count, hours=hours)


def _inner(entry: dict[str, Any]) -> dict[str, Any]:
    """An incident's own detail, whether given bare or as the store's `{"open", "opened_at", "detail"}`."""
    detail = entry.get("detail")
    return detail if isinstance(detail, dict) else entry


def _hour_rows(data: DigestData, tz: tzinfo) -> list[tuple[str, int]]:
    counts: dict[datetime, int] = {}
    for at, count in data.leads_per_hour:
        hour = _utc(at).replace(minute=0, second=0, microsecond=0)
        counts[hour] = counts.get(hour, 0) + count
    hour, end = _utc(data.period_start).replace(minute=0, second=0, microsecond=0), _utc(data.period_end)
    for _ in range(_MAX_GRID_HOURS):
        if hour >= end:
            break
        counts.setdefault(hour, 0)
        hour += timedelta(hours=1)
    local = [(h.astimezone(tz), counts[h]) for h in sorted(counts)]
    return [(f"{at:%H:%M} {at.tzname() or ''}".strip(), count) for at, count in local]


def _bar(count: int, peak: int, scale: int) -> int:
    """Bar length proportional to `count` (at least 1 for any lead); 0 for an empty hour."""
    return 0 if count <= 0 or peak <= 0 else max(1, round(count * scale / peak))


def _bar_chart(hours: list[tuple[str, int]], peak: int) -> _Html:
    rows = []
    for label, count in hours:
        width = _bar(count, peak, _BAR_MAX_PX)
        bar = (
            '<table role="presentation" cellpadding="0" cellspacing="0" border="0"><tr>'
            f'<td width="{width}" height="12" bgcolor="{_BAR_COLOUR}" style="width:{width}px;height:12px;'
            f'background-color:{_BAR_COLOUR};font-size:1px;line-height:1px;">&nbsp;</td></tr></table>'
            if width
            else ""
        )
        rows.append(
            f'<tr><td style="{_LABEL}">{_h(label)}</td>'
            f'<td width="{_BAR_MAX_PX}" style="width:{_BAR_MAX_PX}px;padding:2px 0;vertical-align:middle;">{bar}</td>'
            f'<td style="padding:2px 0 2px 8px;text-align:right;">{count}</td></tr>'
        )
    return _Html(
        '<table role="presentation" id="leads-per-hour" cellpadding="0" cellspacing="0" border="0">'
        + "".join(rows)
        + "</table>"
    )


def _email(subject: str, text: str, body: _Html) -> RenderedEmail:
    subject = " ".join(subject.split())  # no CR/LF can reach a header
    document = (
        '<!DOCTYPE html><html><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_h(subject)}</title></head>"
        '<body style="margin:0;padding:0;background-color:#f4f5f7;">'
        '<table role="presentation" width="100%" cellpadding="0" cellspacing="0" border="0" bgcolor="#f4f5f7">'
        '<tr><td align="center" style="padding:16px;">'
        '<table role="presentation" width="640" cellpadding="0" cellspacing="0" border="0" bgcolor="#ffffff" '
        f'style="width:640px;max-width:640px;background-color:#ffffff;border:1px solid #dde1e6;{_FONT}">'
        f"{body}</table></td></tr></table></body></html>"
    )
    return RenderedEmail(subject=subject, text=text.rstrip() + "\n", html=document)


def _section(title: str, content: str, small: bool = False) -> _Html:
    size = "15px" if small else "18px"
    return _Html(
        f'<tr><td style="padding:16px 20px 0 20px;{_FONT}">'
        f'<div style="font-size:{size};line-height:24px;font-weight:bold;margin:0 0 6px 0;">{_h(title)}</div>'
        f"{content}</td></tr>"
    )


def _kv_table(rows: Iterable[tuple[str, str]]) -> _Html:
    cells = "".join(
        f'<tr><td style="{_LABEL}">{_h(label)}</td><td style="{_VALUE}">{_h(value)}</td></tr>' for label, value in rows
    )
    return _Html(
        f'<table role="presentation" cellpadding="0" cellspacing="0" border="0" style="{_FONT}">{cells}</table>'
    )


def _paragraph(text: str) -> _Html:
    return _Html(f'<p style="margin:0 0 8px 0;">{_h(text)}</p>')


def _link(scheme: str, value: str, safe: str) -> _Html:
    href = escape(scheme + quote(value, safe=safe), quote=True)
    return _Html(f'<a href="{href}" style="color:{_BAR_COLOUR};">{escape(value, quote=True)}</a>')


def _text_rows(rows: Iterable[tuple[str, str]]) -> list[str]:
    return [f"{label}: {value}" for label, value in rows]


def _h(value: str) -> str:
    """Escape plain text for HTML (quotes too); markup built here passes through."""
    return value if isinstance(value, _Html) else escape(value, quote=True)


def _plain(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list | tuple) and all(isinstance(item, str | int | float) for item in value):
        return ", ".join(str(item) for item in value)
    return json.dumps(value, ensure_ascii=False, default=str)


def _utc(at: datetime) -> datetime:
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def _day(at: datetime, tz: tzinfo) -> str:
    local = _utc(at).astimezone(tz)
    return f"{local.day} {_MONTHS[local.month - 1]} {local.year}"


def _iso_time(value: Any, tz: tzinfo) -> str:
    """A stored ISO-8601 time shown like `_time`; anything unparseable is shown as given."""
    try:
        return _time(datetime.fromisoformat(str(value)), tz)
    except ValueError:
        return _plain(value)


def _time(at: datetime, tz: tzinfo) -> str:
    """`27 Nov 2026, 13:05 CET`: naive times are taken as UTC; month names never depend on locale."""
    local = _utc(at).astimezone(tz)
    return f"{_day(local, tz)}, {local:%H:%M} {local.tzname() or ''}".strip()
