"""The daily digest: totals, speed to lead, sources, forms, reconciliation, health, open incidents, leads per hour.

Works over `DigestData` only. Days and hours are shown in the zone the caller passes; the
leads-per-hour chart is table cells only (no images, no SVG), each bar proportional to its count,
with a `#` bar of the same proportions in the text part.
"""

from __future__ import annotations

from datetime import datetime, timedelta, tzinfo
from typing import Any

from shared.notify.models import DigestData
from shared.notify.templates.alert_email import alert_title, incident_detail
from shared.notify.templates.html import (
    ACCENT_COLOUR,
    LABEL,
    Html,
    RenderedEmail,
    day,
    email,
    h,
    iso_time,
    kv_table,
    paragraph,
    plain,
    section,
    text_rows,
    time,
    utc,
)
from shared.timing import Timing, readable

_BAR_MAX_PX = 300
_TEXT_BAR_MAX = 40
_MAX_GRID_HOURS = 48
_SOURCES = ("webhook", "polling", "reprocess")


def render_digest(data: DigestData, tz: tzinfo) -> RenderedEmail:
    """The daily summary: totals, sources, forms, reconciliation, health and leads per hour in `tz`.

    The subject names the last day of the period (its exclusive end minus an instant, in `tz`). The
    hourly chart has one row per hour of the period (capped at 48) plus any hour the data names,
    each bar's width proportional to its count; an hour without leads has no bar.
    """
    last_day = day(utc(data.period_end) - timedelta(microseconds=1), tz)
    subject = f"Lead digest for {last_day}: {data.leads_total} lead{'' if data.leads_total == 1 else 's'}"
    totals = [
        ("Period", f"{time(data.period_start, tz)} to {time(data.period_end, tz)}"),
        ("New leads", str(data.leads_total)),
        ("Emails sent", str(data.notifications_sent)),
        ("Speed to lead (form submitted to email sent)", _speed_to_lead(data.speed_to_lead)),
        ("Webhook to lead stored", _webhook_to_stored(data.webhook_to_stored, data.not_from_webhook)),
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
    incidents = [
        (alert_title(kind, detail), _incident_summary(detail, tz)) for kind, detail in data.open_incidents.items()
    ]
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
    text = [f"Lead digest for {last_day}"]
    blocks = []
    for title, rows, empty in sections:
        text += ["", title, *(text_rows(rows) if rows else [empty])]
        blocks.append(section(title, kv_table(rows) if rows else paragraph(empty)))
    zones = ", ".join(dict.fromkeys(label.split(" ")[-1] for label, _ in hours)) if hours else ""
    chart_title = f"Leads per hour ({zones})" if zones else "Leads per hour"
    text += ["", chart_title]
    text += [f"{label} | {'#' * _bar(count, peak, _TEXT_BAR_MAX)} {count}" for label, count in hours] or ["No data."]
    blocks.append(section(chart_title, _bar_chart(hours, peak) if hours else paragraph("No data.")))
    return email(subject, "\n".join(text), Html("".join(blocks)))


def _token_rows(token: dict[str, Any]) -> list[tuple[str, str]]:
    valid = token.get("valid")
    rows = [("Access token", "unknown" if valid is None else ("valid" if valid else "INVALID"))]
    if token.get("expires_at"):
        rows.append(("Token expires", plain(token["expires_at"])))
    if token.get("error"):
        rows.append(("Token error", plain(token["error"])))
    return rows


def _incident_summary(entry: dict[str, Any], tz: tzinfo) -> str:
    detail = incident_detail(entry)
    parts = [f"since {iso_time(entry['opened_at'], tz)}"] if entry.get("opened_at") else []
    parts += [f"{key}: {plain(value)}" for key, value in detail.items() if key not in ("open", "opened_at")]
    return "; ".join(parts) or "open"


def _percentiles(timing: Timing) -> str:
    return f"p50 {readable(timing.p50_ms or 0.0)}, p99 {readable(timing.p99_ms or 0.0)}"


def _speed_to_lead(timing: Timing) -> str:
    if not timing.count:
        return "no lead emailed"
    return f"{_percentiles(timing)} ({timing.count} lead{'' if timing.count == 1 else 's'})"


def _webhook_to_stored(timing: Timing, not_from_webhook: int) -> str:
    others = f"{not_from_webhook} by polling or reprocess"
    if not timing.count:
        return f"no webhook lead ({others})"
    return f"{_percentiles(timing)} ({timing.count} webhook lead{'' if timing.count == 1 else 's'}; {others})"


def _dead_letters(count: int) -> str:
    return f"{count} (see /api/ops/failed-events)" if count else "0"


def _hour_rows(data: DigestData, tz: tzinfo) -> list[tuple[str, int]]:
    counts: dict[datetime, int] = {}
    for at, count in data.leads_per_hour:
        hour = utc(at).replace(minute=0, second=0, microsecond=0)
        counts[hour] = counts.get(hour, 0) + count
    hour, end = utc(data.period_start).replace(minute=0, second=0, microsecond=0), utc(data.period_end)
    for _ in range(_MAX_GRID_HOURS):
        if hour >= end:
            break
        counts.setdefault(hour, 0)
        hour += timedelta(hours=1)
    local = [(utc_hour.astimezone(tz), counts[utc_hour]) for utc_hour in sorted(counts)]
    return [(f"{at:%H:%M} {at.tzname() or ''}".strip(), count) for at, count in local]


def _bar(count: int, peak: int, scale: int) -> int:
    """Bar length proportional to `count` (at least 1 for any lead); 0 for an empty hour."""
    return 0 if count <= 0 or peak <= 0 else max(1, round(count * scale / peak))


def _bar_chart(hours: list[tuple[str, int]], peak: int) -> Html:
    rows = []
    for label, count in hours:
        width = _bar(count, peak, _BAR_MAX_PX)
        bar = (
            '<table role="presentation" cellpadding="0" cellspacing="0" border="0"><tr>'
            f'<td width="{width}" height="12" bgcolor="{ACCENT_COLOUR}" style="width:{width}px;height:12px;'
            f'background-color:{ACCENT_COLOUR};font-size:1px;line-height:1px;">&nbsp;</td></tr></table>'
            if width
            else ""
        )
        rows.append(
            f'<tr><td style="{LABEL}">{h(label)}</td>'
            f'<td width="{_BAR_MAX_PX}" style="width:{_BAR_MAX_PX}px;padding:2px 0;vertical-align:middle;">{bar}</td>'
            f'<td style="padding:2px 0 2px 8px;text-align:right;">{count}</td></tr>'
        )
    return Html(
        '<table role="presentation" id="leads-per-hour" cellpadding="0" cellspacing="0" border="0">'
        + "".join(rows)
        + "</table>"
    )
