"""The `/api/stats*` reports: running counters plus indexed window queries, nothing per lead.

`leads_total` and `by_source` come from counters updated in the same transaction as each lead,
so they cost one tiny read at a million leads; window figures scan only that window's index range,
and the per-lead timings (latency, speed to lead) read at most the newest `SAMPLE_LIMIT` rows of it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.logs import get_logger
from shared.store import Store
from shared.store.backend import iso_utc
from shared.timing import Timing, percentile

log = get_logger(__name__)

SOURCES = ("webhook", "polling", "reprocess")
IGNORED_FORM = "webhook_ignored:form:"  # the day counter the webhook keeps per form not chosen


@dataclass(frozen=True)
class LeadTimings:
    """How fast leads moved in a window, each figure over at most the newest `SAMPLE_LIMIT` leads.

    `stored_to_sent` and `speed_to_lead` (Meta's `created_time` to the email accepted by the
    provider) are over the leads emailed in the window, whatever their source;
    `webhook_to_stored` (the webhook's receipt to the row committed) over the leads stored in the
    window that came by the webhook. `not_from_webhook` counts those stored by polling or reprocess,
    which have no webhook time and are left out of it.
    """

    stored_to_sent: list[float]
    speed_to_lead: Timing
    webhook_to_stored: Timing
    not_from_webhook: int


def lead_timings(store: Store, start: datetime, end: datetime) -> LeadTimings:
    """The speed-to-lead figures of [start, end): three indexed reads, each of at most `SAMPLE_LIMIT` rows."""
    notified = store.stats.notified_leads(start, end)
    return LeadTimings(
        stored_to_sent=[(lead.sent_at - lead.stored_at).total_seconds() for lead in notified],
        speed_to_lead=Timing.of([(lead.sent_at - lead.created_time).total_seconds() for lead in notified]),
        webhook_to_stored=Timing.of(store.stats.webhook_to_stored(start, end)),
        not_from_webhook=store.stats.count_stored_not_from_webhook(start, end),
    )


def overview(store: Store, now: datetime | None = None) -> dict[str, Any]:
    """`GET /api/stats`."""
    now = now or datetime.now(UTC)
    day_ago = now - timedelta(hours=24)
    counters = store.stats.counters()
    by_source = {source: counters.get(f"source:{source}", 0) for source in SOURCES}
    stored = store.stats.count_audit("stored", day_ago, now)
    dead = store.stats.count_audit("dead_lettered", day_ago, now)
    last_created, last_stored = store.stats.last_lead_times()
    return {
        "leads_total": sum(v for k, v in counters.items() if k.startswith("source:")),
        "by_source": by_source,
        "duplicates_ignored": counters.get("duplicates", 0),
        "failed_events_open": store.stats.count_failed_events("open"),
        "success_rate": None if stored + dead == 0 else round(stored / (stored + dead), 4),
        "last_lead_at": None if last_created is None else iso_utc(last_created),
        "last_stored_at": None if last_stored is None else iso_utc(last_stored),
        "leads_last_24h": store.stats.count_leads(day_ago, now),
        "notifications_sent_last_24h": store.stats.count_notifications_sent(day_ago, now),
        "generated_at": iso_utc(now),
    }


def ingestion(
    store: Store,
    hours: float,
    form_name: Callable[[str], str | None],
    now: datetime | None = None,
    day_counters: Callable[[], Mapping[str, int]] | None = None,
) -> dict[str, Any]:
    """`GET /api/stats/ingestion?hours=N`: webhook vs polling per hour and per form, and accuracy.

    `ignored_forms` is today's (UTC) count, per form, of webhook changes left alone because their form
    is not chosen (`FACEBOOK_FORMS_INCLUDE` / `_EXCLUDE`), read from `day_counters` (Table Storage).
    """
    now = now or datetime.now(UTC)
    start = now - timedelta(hours=hours)
    per_hour: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(SOURCES, 0))
    for hour, source, count in store.stats.leads_by_hour_and_source(start, now):
        per_hour[hour][source] = per_hour[hour].get(source, 0) + count
    per_form: dict[str | None, dict[str, int]] = defaultdict(lambda: dict.fromkeys(SOURCES, 0))
    for form, source, count in store.stats.leads_by_form_and_source(start, now):
        per_form[form][source] = per_form[form].get(source, 0) + count
    poll = store.stats.poll_figures(start, now)
    total = store.stats.count_leads(start, now)
    return {
        "window_hours": hours,
        "per_hour": [{"hour": f"{hour}:00:00Z", **counts} for hour, counts in sorted(per_hour.items())],
        "per_form": [
            {"form_id": form, "form_name": form_name(form) if form else None, **counts, "total": sum(counts.values())}
            for form, counts in sorted(per_form.items(), key=lambda item: -sum(item[1].values()))
        ],
        "duplicates": store.stats.count_audit("duplicate", start, now),
        "retries": store.stats.count_audit("ingest_retry", start, now),
        "dead_letters": {
            "open": store.stats.count_failed_events("open"),
            "new_in_window": store.stats.count_failed_since(start, now),
        },
        "reconciliation": {
            "poll_runs": poll.runs,
            "poll_errors": poll.errors,
            "missing_found": poll.missing_found,
            "enqueued": poll.enqueued,
            "webhook_miss_rate": None if total == 0 else round(poll.missing_found / total, 4),
        },
        "ignored_forms": ignored_forms(day_counters),
    }


def ignored_forms(day_counters: Callable[[], Mapping[str, int]] | None) -> dict[str, int]:
    """Form id → today's webhook changes ignored for it (`webhook_ignored:form:<id>`); empty when unreadable."""
    if day_counters is None:
        return {}
    try:
        counters = day_counters()
    except Exception:  # Table Storage away: the rest of the report still answers
        log.warning("stats: the webhook's day counters could not be read", exc_info=True)
        return {}
    return {
        name.removeprefix(IGNORED_FORM): count
        for name, count in sorted(counters.items())
        if name.startswith(IGNORED_FORM)
    }


def notifications(store: Store, hours: float, now: datetime | None = None) -> dict[str, Any]:
    """`GET /api/stats/notifications?hours=N`: sent, grouped, retried, failed, latency and speed-to-lead percentiles."""
    now = now or datetime.now(UTC)
    start = now - timedelta(hours=hours)
    figures = store.stats.notification_figures(start, now)
    emails, leads, grouped = figures.emails, figures.leads, figures.grouped
    timings = lead_timings(store, start, now)
    latencies = timings.stored_to_sent
    return {
        "window_hours": hours,
        "emails_sent": emails,
        "leads_notified": leads,
        "grouped_emails": grouped,
        "retries": store.stats.count_audit("notify_retry", start, now),
        "failed": store.stats.count_notifications_failed(),
        "pending": store.stats.count_outbox_pending(),
        "latency_ms": {
            "p50": percentile(latencies, 50),
            "p95": percentile(latencies, 95),
            "p99": percentile(latencies, 99),
            "max": percentile(latencies, 100),
        },
        "speed_to_lead_ms": timings.speed_to_lead.as_json(),
        "webhook_to_stored_ms": {**timings.webhook_to_stored.as_json(), "not_from_webhook": timings.not_from_webhook},
    }
