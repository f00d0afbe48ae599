"""The daily digest: the last 24 hours of capture, reconciliation and health, as one email."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta, tzinfo

from shared.notify.models import DigestData
from shared.notify.templates import RenderedEmail, render_digest
from shared.stats import lead_timings
from shared.store import Store


def digest_key(now: datetime) -> str:
    """One digest per UTC day: the key is the date the period ends on."""
    return now.strftime("%Y-%m-%d")


def build_digest_data(store: Store, period_end: datetime, form_name: Callable[[str], str | None]) -> DigestData:
    """Every figure of the 24 hours before `period_end` (indexed counts; the timings read a bounded sample)."""
    start = period_end - timedelta(hours=24)
    by_form = store.stats.leads_by_form(start, period_end)
    labels = [
        (f"{form_name(form) or 'form'} ({form})" if form != "None" else "unknown form", n)
        for form, n in by_form.items()
    ]
    poll = store.stats.poll_figures(start, period_end)
    incidents = {kind: value.as_json() for kind, value in store.coordination.incidents().items() if value.open}
    token = store.coordination.get_state("meta_token") or {}
    timings = lead_timings(store, start, period_end)
    return DigestData(
        period_start=start,
        period_end=period_end,
        leads_total=store.stats.count_leads(start, period_end),
        by_source=store.stats.leads_by_source(start, period_end),
        by_form=sorted(labels, key=lambda item: -item[1]),
        duplicates_ignored=store.stats.count_audit("duplicate", start, period_end),
        dead_letters_open=store.stats.count_failed_events("open"),
        poll_runs=poll.runs,
        poll_errors=poll.errors,
        missing_found=poll.missing_found,
        enqueued_by_poller=poll.enqueued,
        token=token,
        open_incidents=incidents,
        leads_per_hour=store.stats.leads_by_hour(start, period_end),
        notifications_sent=store.stats.count_notifications_sent(start, period_end),
        speed_to_lead=timings.speed_to_lead,
        webhook_to_stored=timings.webhook_to_stored,
        not_from_webhook=timings.not_from_webhook,
    )


def render_daily_digest(store: Store, key: str, tz: tzinfo, form_name: Callable[[str], str | None]) -> RenderedEmail:
    """The digest for the day named by `key` (its period ends at 00:00 UTC the next day, or now if today)."""
    from datetime import UTC

    day = datetime.strptime(key, "%Y-%m-%d").replace(tzinfo=UTC)
    now = datetime.now(UTC)
    period_end = min(now, day + timedelta(days=1)) if day.date() == now.date() else day + timedelta(days=1)
    return render_digest(build_digest_data(store, period_end, form_name), tz)
