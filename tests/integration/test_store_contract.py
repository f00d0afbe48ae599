"""One contract for every store backend: SQLite and Azure SQL over the pyodbc double always; SQL Server when set.

The double runs the Azure SQL backend unchanged over real T-SQL with SQL Server's types, limits and
errors (`tests/support/pyodbc_double.py`); `TEST_MSSQL_CONNECTION_STRING` adds a real SQL Server.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.errors import StoreRefused
from shared.store import Store
from shared.store.coordination import PollRun
from shared.store.failed_events import FailedEvent
from shared.store.leads import AlreadyStored, LeadRouting, Stored
from shared.store.stats import PollFigures
from tests.support.leads import graph_lead_payload, normalised
from tests.support.stores import claim, count_rows, mssql_available, mssql_double_store, mssql_store, sqlite_store

BACKENDS = [
    "sqlite",
    "mssql-double",
    pytest.param(
        "mssql",
        marks=pytest.mark.skipif(not mssql_available(), reason="TEST_MSSQL_CONNECTION_STRING not set"),
    ),
]


@pytest.fixture(params=BACKENDS)
def store(request, tmp_path) -> Iterator[Store]:
    if request.param == "sqlite":
        with sqlite_store(tmp_path) as created:
            yield created
    elif request.param == "mssql-double":
        with mssql_double_store(tmp_path) as created:
            yield created
    else:
        with mssql_store() as created:
            yield created


def add(store: Store, lead_id: str, source: str = "webhook", created: int = 1_790_000_000, notify: bool = False):
    return store.leads.store_lead(
        normalised(lead_id, source=source, created=created),
        {"leadgen_id": lead_id},
        graph_lead_payload(lead_id),
        notify=notify,
    )


def test_migrations_are_idempotent(store):
    version = store.schema_version()
    assert store.migrate() == version >= 6


def test_new_lead_is_stored_once_with_raw_and_audit_rows(store):
    assert add(store, "101") == Stored("101")
    assert add(store, "101", source="polling") == AlreadyStored("101")
    assert count_rows(store, "leads") == 1 and count_rows(store, "raw_leads") == 1
    assert count_rows(store, "audit_log", "action = ?", ("duplicate",)) == 1
    assert store.stats.counters() == {"source:webhook": 1, "duplicates": 1}


def test_concurrent_stores_of_one_lead_leave_one_row(store):
    outcomes: list = []

    def worker() -> None:
        outcomes.append(type(add(store, "202")).__name__)

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["AlreadyStored"] * 5 + ["Stored"]
    assert count_rows(store, "leads") == 1


def test_last_leads_are_newest_first(store):
    for lead_id, created in (("1", 1_790_000_000), ("2", 1_790_000_500), ("3", 1_790_000_100)):
        add(store, lead_id, created=created)
    leads = [lead.ops_view() for lead in store.leads.last_leads(2)]
    assert [lead["facebook_lead_id"] for lead in leads] == ["2", "3"]
    assert leads[0]["fields"]["full_name"] == ["Zoë Åström"] and leads[0]["created_time"].endswith("Z")


def test_existing_ids_and_has_lead(store):
    add(store, "301")
    assert store.leads.has_lead("301") and not store.leads.has_lead("302")
    assert store.leads.existing_lead_ids(["301", "302", "303"]) == {"301"}


def test_state_is_upserted(store):
    store.coordination.put_state("checkpoint:1", {"until": 1})
    store.coordination.put_state("checkpoint:1", {"until": 2})
    assert store.coordination.get_state("checkpoint:1") == {"until": 2} and store.coordination.get_state("nope") is None


def test_lease_is_exclusive_until_it_expires(store):
    assert store.coordination.try_acquire_lease("poller", "a", 60)
    assert not store.coordination.try_acquire_lease("poller", "b", 60)
    assert store.coordination.try_acquire_lease("poller", "a", 60)  # renewal
    store.coordination.release_lease("poller", "a")
    assert store.coordination.try_acquire_lease("poller", "b", 60)


def test_failed_events_are_recorded_once_listed_and_purged(store):
    event = FailedEvent("leads-inbound-poison", "ingest", "LeadNotFetchable", 1, "{}", "401", dead_letter_id="d1")
    assert store.failed_events.record_failed_event(event) and not store.failed_events.record_failed_event(event)
    [listed] = store.failed_events.list_failed_events()
    assert listed.facebook_lead_id == "401" and listed.status == "open"
    assert store.failed_events.latest_failed_event_for_lead("401").id == listed.id
    store.failed_events.set_failed_event_status(listed.id, "reprocessed")
    assert store.failed_events.list_failed_events("reprocessed")[0].id == listed.id
    assert store.failed_events.purge_failed_events(datetime.now(UTC) + timedelta(seconds=1)) == 1


def test_incidents_open_and_resolve_once_with_alert_rows(store):
    assert store.coordination.open_incident("token_invalid", {"code": 190}) and not store.coordination.open_incident(
        "token_invalid", {}
    )
    assert store.coordination.resolve_incident("token_invalid") and not store.coordination.resolve_incident(
        "token_invalid"
    )
    assert store.coordination.incidents()["token_invalid"].open is False
    far = datetime.now(UTC) + timedelta(days=1)
    assert [kind for kind, _ in store.outbox.outbox_due(far, far)] == ["alert", "alert"]


def test_notification_claims_are_exactly_once(store):
    add(store, "501", notify=True)
    assert [p.facebook_lead_id for p in store.outbox.pending_lead_notifications(10)] == ["501"]
    assert claim(store, "501", "c1") == "claimed"
    assert claim(store, "501", "c2") == "taken"
    store.outbox.release_claim("c1")
    assert claim(store, "501", "c3") == "claimed"
    store.outbox.begin_send("c3")
    assert claim(store, "501", "c4") == "taken"  # sending: never claimed again
    store.outbox.mark_claim_sent("c3", "lead", ["501"], "provider-1")
    assert store.outbox.notification_state("501", "lead", "smtp").status == "sent"
    assert store.outbox.pending_lead_notifications(10) == []


def test_email_slots_respect_both_caps(store):
    now = datetime.now(UTC)
    taken = [store.outbox.claim_email(f"k{n}", "lead", "test", f"c{n}", f"s{n}", now, 2, 3) for n in range(3)]
    assert taken == ["claimed", "claimed", "cap_reached"]
    later = now + timedelta(minutes=2)
    assert store.outbox.claim_email("key-s3", "lead", "test", "claim-s3", "s3", later, 2, 3) == "claimed"
    assert store.outbox.claim_email("key-s4", "lead", "test", "claim-s4", "s4", later, 2, 3) == "cap_reached"
    assert store.outbox.next_email_slot(later, 2, 3) > later


def test_window_counts_and_hours(store):
    base = int(datetime(2026, 11, 26, 10, 0, tzinfo=UTC).timestamp())
    add(store, "601", created=base + 60)
    add(store, "602", created=base + 3700, source="polling")
    start, end = datetime(2026, 11, 26, tzinfo=UTC), datetime(2026, 11, 27, tzinfo=UTC)
    assert store.stats.leads_by_source(start, end) == {"webhook": 1, "polling": 1}
    hours = dict(store.stats.leads_by_hour(start, end))
    assert hours[datetime(2026, 11, 26, 10, tzinfo=UTC)] == 1 and hours[datetime(2026, 11, 26, 11, tzinfo=UTC)] == 1
    assert sorted(store.stats.leads_by_hour_and_source(start, end)) == [
        ("2026-11-26T10", "webhook", 1),
        ("2026-11-26T11", "polling", 1),
    ]
    assert store.stats.count_leads(start, end) == 2


def add_from_webhook(store: Store, lead_id: str, received: datetime | None, source: str = "webhook", **extra: Any):
    lead = normalised(lead_id, source=source, **extra).model_copy(update={"webhook_received_at": received})
    return store.leads.store_lead(lead, {"leadgen_id": lead_id}, graph_lead_payload(lead_id), notify=True)


def send(store: Store, lead_id: str) -> None:
    assert claim(store, lead_id, f"claim-{lead_id}") == "claimed"
    store.outbox.begin_send(f"claim-{lead_id}")
    store.outbox.mark_claim_sent(f"claim-{lead_id}", "lead", [lead_id], f"provider-{lead_id}")


def test_each_lead_emailed_in_the_window_gives_its_created_stored_and_sent_times(store):
    created = int(datetime(2026, 11, 26, 10, 0, tzinfo=UTC).timestamp())
    for lead_id, at in (("701", created), ("702", created + 30), ("703", created + 60)):
        add_from_webhook(store, lead_id, None, created=at)
    send(store, "701")
    send(store, "702")  # 703 is never sent: not measured
    window = (datetime.now(UTC) - timedelta(hours=1), datetime.now(UTC) + timedelta(minutes=1))
    leads = {lead.created_time: lead for lead in store.leads.leads(["701", "702"])}
    timings = store.stats.notified_leads(*window)
    assert sorted(t.created_time for t in timings) == sorted(leads)
    for timing in timings:
        assert_time(timing.sent_at)
        assert timing.stored_at == leads[timing.created_time].stored_at
        assert timing.sent_at >= timing.stored_at >= timing.created_time
    assert store.stats.notified_leads(window[0] - timedelta(hours=2), window[0]) == []


def test_the_emailed_leads_read_are_at_most_the_sample_limit(store):
    for n in range(3):
        add_from_webhook(store, f"71{n}", None)
        send(store, f"71{n}")
    window = (datetime.now(UTC) - timedelta(hours=1), datetime.now(UTC) + timedelta(minutes=1))
    assert len(store.stats.notified_leads(*window)) == 3
    assert len(store.stats.notified_leads(*window, limit=2)) == 2
    assert len(store.stats.webhook_to_stored(*window, limit=2)) == 0  # none of them has a receive time


def test_webhook_to_stored_is_measured_only_for_leads_with_a_webhook_receive_time(store):
    received = datetime(2026, 11, 26, 10, 0, 0, tzinfo=UTC)
    add_from_webhook(store, "801", received)
    add_from_webhook(store, "802", None, source="polling")
    add_from_webhook(store, "803", None)  # a webhook lead stored before the receive time was kept
    add_from_webhook(store, "804", None, source="reprocess")
    window = (datetime.now(UTC) - timedelta(hours=1), datetime.now(UTC) + timedelta(minutes=1))
    [lead] = store.leads.leads(["801"])
    assert lead.webhook_received_at == received
    assert_time(lead.webhook_received_at)
    assert store.stats.webhook_to_stored(*window) == [(lead.stored_at - received).total_seconds()]
    assert store.stats.count_stored_not_from_webhook(*window) == 2
    assert store.stats.webhook_to_stored(window[0] - timedelta(hours=2), window[0]) == []
    assert store.stats.count_stored_not_from_webhook(window[0] - timedelta(hours=2), window[0]) == 0


def test_poll_runs_are_recorded_and_summed(store):
    now = datetime.now(UTC)
    store.coordination.record_poll_run(PollRun("timer", now, now + timedelta(seconds=1), None, None, 2, 10, 3, 3, 5))
    figures = store.stats.poll_figures(now - timedelta(minutes=1), now + timedelta(minutes=1))
    assert (figures.runs, figures.missing_found, figures.enqueued, figures.errors) == (1, 3, 3, 0)


def test_erasure_removes_the_lead_and_keeps_a_tombstone(store):
    add(store, "701")
    store.failed_events.record_failed_event(
        FailedEvent("leads-inbound-poison", "ingest", "x", 1, '{"lead": "pii"}', "701")
    )
    erasure = store.leads.erase_lead("701")
    assert erasure.erased and erasure.rows == {"leads": 1, "raw_leads": 1, "failed_events": 1, "notification_outbox": 0}
    assert count_rows(store, "leads") == 0 and store.leads.has_lead("701")
    assert store.leads.existing_lead_ids(["701"]) == {"701"}
    again = store.leads.erase_lead("701")
    assert not again.erased and again.tombstoned


def test_erasure_before_the_lead_arrives_keeps_it_from_ever_being_stored(store):
    erasure = store.leads.erase_lead("702")
    assert (erasure.erased, erasure.tombstoned) == (False, True)
    assert add(store, "702", notify=True) == AlreadyStored("702")  # the insert checks the tombstone itself
    assert count_rows(store, "leads") == 0 and count_rows(store, "raw_leads") == 0
    assert count_rows(store, "notification_outbox") == 0


def test_erasure_closes_the_leads_email_in_the_outbox(store):
    add(store, "703", notify=True)
    assert store.leads.erase_lead("703").rows["notification_outbox"] == 1
    far = datetime.now(UTC) + timedelta(days=1)
    assert store.outbox.outbox_due(far, far) == []  # the flush never re-queues an erased person's email


def test_a_dead_letter_of_an_erased_lead_keeps_no_payload(store):
    store.leads.erase_lead("704")
    event = FailedEvent("leads-inbound-poison", "ingest", "late", 1, '{"facebook_lead_id": "704"}', "704")
    assert store.failed_events.record_failed_event(event)
    [row] = store.failed_events.list_failed_events()
    assert store.failed_events.get_failed_event(row.id).payload is None  # type: ignore[union-attr]


def test_leads_the_poller_queued_are_remembered_until_they_age_out(store):
    now = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
    store.coordination.record_polled(["501", "502"], now - timedelta(minutes=40), keep_after=now - timedelta(hours=1))
    store.coordination.record_polled(
        ["502", "503"], now, keep_after=now - timedelta(minutes=30)
    )  # 502 again; 501 ages out
    assert store.coordination.recently_polled(["501", "502", "503", "504"], now - timedelta(minutes=30)) == {
        "502",
        "503",
    }
    assert store.coordination.recently_polled(["502", "503"], now + timedelta(seconds=1)) == set()
    assert count_rows(store, "poll_queued") == 2


def test_id_lookups_answer_for_more_ids_than_one_statement_takes(store):
    asked = [str(700_000 + n) for n in range(1_200)]  # three chunks of at most 500
    for lead_id in (asked[0], asked[600], asked[-1]):
        add(store, lead_id)
    assert store.leads.existing_lead_ids(asked) == {asked[0], asked[600], asked[-1]}
    now = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
    store.coordination.record_polled(asked, now, keep_after=now - timedelta(minutes=30))
    assert store.coordination.recently_polled([*asked, "799999"], now) == set(asked)


# --- what Azure SQL enforces, enforced everywhere ---------------------------------------------


def long_lead(lead_id: str) -> Any:
    """A lead whose free-text answers are longer than any normalised column."""
    lead = normalised(lead_id)
    fields = {**lead.fields, "message": ["x" * 5_000], "phone_number": ["+1 " + "5" * 297]}
    return lead.model_copy(update={"fields": fields, "phone_number": "+1" + "5" * 298, "full_name": "😀" * 300})


def test_a_5000_character_answer_and_a_300_character_phone_number_store_the_lead(store):
    assert store.leads.store_lead(long_lead("801"), None, graph_lead_payload("801")) == Stored("801")
    [lead] = store.leads.leads(["801"])
    assert lead.fields["message"] == ["x" * 5_000]  # every answer kept whole
    assert lead.fields["phone_number"] == ["+1 " + "5" * 297]
    assert lead.phone_number == ("+1" + "5" * 298)[:64]  # the normalised column takes what fits
    assert lead.full_name == "😀" * 200  # 400 UTF-16 code units, no half surrogate pair


def test_a_value_no_column_can_take_is_refused_without_quoting_it(store):
    too_long_id = "9" * 65
    with pytest.raises(StoreRefused) as refused:
        store.leads.store_lead(normalised(too_long_id), None, graph_lead_payload(too_long_id))
    assert too_long_id not in str(refused.value) and "leads" in str(refused.value)
    assert count_rows(store, "leads") == 0


def test_the_alert_written_with_an_incident_is_plain_json(store):
    assert store.coordination.open_incident("token_invalid", {"code": 190})
    far = datetime.now(UTC) + timedelta(days=1)
    [(kind, key)] = store.outbox.outbox_due(far, far)
    payload = store.outbox.outbox_payload(kind, key)
    assert payload is not None and payload["kind"] == "token_invalid" and payload["opened"] is True
    assert datetime.fromisoformat(payload["at"].replace("Z", "+00:00")).tzinfo is not None
    assert json.loads(json.dumps(payload)) == payload


def assert_time(value: object) -> None:
    assert isinstance(value, datetime) and value.tzinfo is not None and value.utcoffset() == timedelta(0)


def assert_int(value: object) -> None:
    assert isinstance(value, int) and not isinstance(value, bool)


def test_every_read_returns_the_same_python_types_on_every_engine(store):
    add(store, "901", notify=True)
    now = datetime.now(UTC)
    [lead] = store.leads.last_leads(1)
    for name in ("created_time", "stored_at"):
        assert_time(getattr(lead, name))
    assert isinstance(lead.is_organic, bool) and isinstance(lead.fields, dict) and isinstance(lead.disclaimers, list)
    assert all(isinstance(getattr(lead, n), str) for n in ("facebook_lead_id", "source", "email", "full_name"))
    assert store.leads.lead_routing("901") == LeadRouting("1000000000001", "100000000000101", None)

    assert store.coordination.open_incident("silence", {"hours": 6})
    incident = store.coordination.incidents()["silence"]
    assert_time(incident.opened_at)
    assert incident.open is True and incident.resolved_at is None and incident.detail == {"hours": 6}
    store.coordination.resolve_incident("silence")
    assert_time(store.coordination.incidents()["silence"].resolved_at)

    store.failed_events.record_failed_event(FailedEvent("leads-inbound-poison", "ingest", "why", 3, "{}", "901"))
    [event] = store.failed_events.list_failed_events()
    assert_int(event.id)
    assert_int(event.attempts)
    assert_time(event.first_failed_at)
    assert_time(event.last_failed_at)

    assert claim(store, "901", "c9") == "claimed"
    state = store.outbox.notification_state("901", "lead", "smtp")
    assert state is not None and state.status == "claimed" and state.claim_id == "c9"
    assert_time(state.claimed_at)
    store.outbox.begin_send("c9")
    store.outbox.mark_claim_sent("c9", "lead", ["901"], "p" * 500)  # a provider id longer than its column
    assert store.outbox.claim_email("key-t1", "lead", "test", "claim-t1", "t1", now, 5, 10) == "claimed"
    assert_time(store.outbox.next_email_slot(now, 5, 10))

    window = (now - timedelta(days=400), now + timedelta(minutes=1))
    created, stored = store.stats.last_lead_times()
    assert_time(created)
    assert_time(stored)
    [latency] = store.stats.notification_latencies(*window)
    assert isinstance(latency, float)
    figures = store.stats.notification_figures(*window)
    for value in (figures.emails, figures.leads, figures.grouped, store.stats.count_leads(*window)):
        assert_int(value)
    assert all(isinstance(k, str) and isinstance(v, int) for k, v in store.stats.counters().items())
    assert store.stats.poll_figures(*window) == PollFigures(0, 0, 0, 0)
    [(hour, source, n)] = store.stats.leads_by_hour_and_source(*window)
    assert len(hour) == 13 and hour[10] == "T" and source == "webhook" and n == 1


def test_a_dead_letter_without_a_lead_id_keeps_no_answers(store):
    carried = {"facebook_lead_id": "x y", "lead": {"field_data": [{"name": "email", "values": ["a@b.c"]}]}}
    event = FailedEvent("leads-inbound-poison", "ingest", "malformed", 1, json.dumps({"message": carried}))
    store.failed_events.record_failed_event(event)
    [row] = store.failed_events.list_failed_events()
    payload = store.failed_events.get_failed_event(row.id).payload  # type: ignore[union-attr]
    assert (
        payload is not None
        and "a@b.c" not in payload
        and json.loads(payload) == {"message": {"facebook_lead_id": "x y"}}
    )


def test_a_claim_taken_over_cannot_begin_sending_and_its_late_send_is_reported(store):
    add(store, "950", notify=True)
    assert claim(store, "950", "first") == "claimed"
    assert store.outbox.begin_send("first")
    assert store.outbox.claimed_keys("first") == ["950"]
    assert store.outbox.take_over_stuck("first")  # a stuck send, freed by another instance
    assert claim(store, "950", "second") == "claimed"
    assert not store.outbox.begin_send("first")  # the first holder must not send now
    assert store.outbox.begin_send("second")
    assert not store.outbox.mark_claim_sent("first", "lead", ["950"], "late")  # it had sent: reported, not lost
    assert store.outbox.mark_claim_sent("second", "lead", ["950"], "p2")


def test_held_lead_ids_are_those_whose_newest_dead_letter_is_open_or_resolved(store):
    def dead_letter(lead_id: str, status: str) -> None:
        store.failed_events.record_failed_event(FailedEvent("leads-inbound-poison", "ingest", "x", 1, "{}", lead_id))
        newest = store.failed_events.latest_failed_event_for_lead(lead_id)
        assert newest is not None
        if status != "open":
            store.failed_events.set_failed_event_status(newest.id, status)

    dead_letter("1001", "open")
    dead_letter("1002", "resolved")
    dead_letter("1003", "reprocessed")
    dead_letter("1004", "reprocessed")
    dead_letter("1004", "open")  # failed again after a reprocess
    asked = ["1001", "1002", "1003", "1004", "1005", *(str(2000 + n) for n in range(600))]
    assert store.failed_events.held_lead_ids(asked) == {"1001", "1002", "1004"}


def test_begin_send_answers_the_keys_the_claim_still_holds_in_claim_order(store):
    for lead_id in ("960", "961", "962"):
        add(store, lead_id, notify=True)
    assert claim(store, "960", "grouped") == "claimed"
    assert store.outbox.claim_group("960", "smtp", "grouped", 10, lambda pending: True) == ["961", "962"]
    assert store.outbox.begin_send("grouped") == ["960", "961", "962"]
    assert store.outbox.begin_send("grouped") == []  # already sending: a second caller must not send
