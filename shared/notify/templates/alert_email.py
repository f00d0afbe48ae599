"""Incident alerts: per-kind titles and guidance, and the email sent when an incident opens or resolves.

Owns the text for each incident kind (what happened, what to do, what resolution means) and
fills in the numbers an incident names; kinds it has no text for get a generic one. The digest
reuses `alert_title` and `incident_detail` to list open incidents the same way.
"""

from __future__ import annotations

from datetime import tzinfo
from typing import Any

from shared.notify.models import AlertData
from shared.notify.templates.html import RenderedEmail, email, kv_table, paragraph, plain, section, text_rows, time

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
    "dead_letters_unattended": (
        "Dead letters waiting {days} days",
        "{count} dead letters have been open for more than {days} days. Open dead letters are never purged, "
        "but nobody has looked at them: inspect them at /api/ops/failed-events, fix the cause, and reprocess "
        "or resolve each one.",
        "No dead letter is waiting that long any more.",
    ),
    "backfill_gap": (
        "Poller was down {hours} hours; backfilling",
        "Polling had stopped at {since}, longer ago than the reconciliation window. Every form is being read "
        "again from {backfill_from}, so leads missed meanwhile are queued and stored. When capped is True, "
        "the {unreadable_hours} hours before {backfill_from} were not read (Meta keeps leads about 90 days): "
        "export those from Ads Manager.",
        "The backfill has caught up.",
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


def render_alert(alert: AlertData, tz: tzinfo) -> RenderedEmail:
    """An incident opened (what happened and what to do) or resolved; unknown kinds get a generic text."""
    title = alert_title(alert.kind, alert.detail)
    state = "ALERT" if alert.opened else "RESOLVED"
    text_paragraph = alert_guidance(alert.kind, alert.opened, alert.detail)
    rows = [
        ("Incident", alert.kind),
        ("Opened at" if alert.opened else "Resolved at", time(alert.at, tz)),
        *((str(key), plain(value)) for key, value in alert.detail.items()),
    ]
    text = "\n".join([f"{state}: {title}", "", text_paragraph, "", *text_rows(rows)])
    html = section(f"{state}: {title}", paragraph(text_paragraph) + kv_table(rows))
    return email(f"[Lead agent] {state}: {title}", text, html)


def alert_title(kind: str, detail: dict[str, Any]) -> str:
    """The incident's one-line title with its numbers filled in; a generic title for an unknown kind."""
    title = _fill(_KINDS.get(_base(kind), _UNKNOWN_KIND)[0], kind, detail)
    return title if _base(kind) == kind else f"{title} (page {kind.partition(':')[2]})"


def alert_guidance(kind: str, opened: bool, detail: dict[str, Any]) -> str:
    """What happened and what to do (opened), or what the recovery means (resolved); emails and chats share it."""
    _, guidance, resolved = _KINDS.get(_base(kind), _UNKNOWN_KIND)
    return _fill(guidance if opened else resolved, kind, detail)


def _base(kind: str) -> str:
    """An incident's kind without its scope: `token_invalid:123` (page 123's own token) is a `token_invalid`."""
    return kind.partition(":")[0]


def incident_detail(entry: dict[str, Any]) -> dict[str, Any]:
    """An incident's own detail, whether given bare or as the store's `{"open", "opened_at", "detail"}`."""
    detail = entry.get("detail")
    return detail if isinstance(detail, dict) else entry


def _fill(template: str, kind: str, detail: dict[str, Any]) -> str:
    """Put the values an alert names (dead letters, hours, days, dates) into its text; '?' when absent."""
    inner = incident_detail(detail)
    count = next((inner[k] for k in ("count", "dead_letters_open", "open_count") if k in inner), "?")
    hours = next((inner[k] for k in ("hours", "silent_hours", "quiet_hours") if k in inner), "?")
    values = _Values({**{str(k): plain(v) for k, v in inner.items()}, "kind": kind, "count": count, "hours": hours})
    return template.format_map(values)


class _Values(dict[str, Any]):
    """Template values; a name the detail lacks reads '?' instead of failing the alert."""

    def __missing__(self, key: str) -> str:
        return "?"
