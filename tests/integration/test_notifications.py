"""Instant lead emails, digest and alerts: exactly once, within the caps, through a real SMTP server."""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from devhost.defaults import LOCAL_DEFAULTS
from fakes.smtp_sink import SmtpSink
from shared.monitoring.incidents import close_incident, open_incident
from shared.notify.base import OutgoingEmail
from shared.notify.consumer import handle_notification
from shared.notify.digest import digest_key
from shared.notify.outbox import enqueue_notification, flush_outbox
from shared.notify.recipients import Recipients
from shared.notify.types import NotifyPolicy
from shared.ops.reprocess import reprocess
from shared.settings import load_settings
from shared.storage.names import NOTIFICATIONS_QUEUE, poison_queue
from shared.store import Store
from shared.store.sqlite import SqliteBackend
from tests.support.acs import FakeAcsEmail
from tests.support.leads import graph_lead_payload, normalised
from tests.support.notifications import (
    FakeClock,
    acs_sender,
    drain_notifications,
    notify_deps,
    parts,
    read_mail,
    sink,
)
from tests.support.queues import message_count, reset_queue
from tests.support.stores import CountingSqlite, claim, count_rows
from tests.support.waiting import free_port
from wiring import Services

LEAD_ID = re.compile(r"\b(9\d{5})\b")


@pytest.fixture
def storage(azurite) -> str:
    for queue in (NOTIFICATIONS_QUEUE, poison_queue(NOTIFICATIONS_QUEUE)):
        reset_queue(azurite.connection_string, queue)
    return azurite.connection_string


@pytest.fixture
def store(tmp_path: Path) -> Store:
    created = Store(SqliteBackend(str(tmp_path / "leads.db")))
    created.migrate()
    return created


@pytest.fixture
def smtp(tmp_path: Path) -> Iterator[SmtpSink]:
    running = sink(tmp_path / "mail")
    yield running
    running.stop()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def store_lead(
    store: Store, lead_id: str, name: str = "Zoë Åström", notify: bool = True, created: int = 1_790_000_000
) -> None:
    payload = graph_lead_payload(lead_id, name=name, created=created)
    lead = normalised(lead_id, created=created)
    lead = lead.model_copy(update={"full_name": name, "fields": {**lead.fields, "full_name": [name]}})
    store.leads.store_lead(lead, {"leadgen_id": lead_id}, payload, notify=notify)


def take_slot(store: Store, now: datetime, per_minute: int, per_hour: int, kind: str = "lead") -> bool:
    """Use up one sending slot as another email would."""
    return store.outbox.claim_email("other", kind, "test", "other", "taken", now, per_minute, per_hour) == "claimed"


def announce(store: Store, deps, lead_id: str) -> None:
    enqueue_notification(deps.queues, store, "lead", lead_id)


def lead_ids_in(mails) -> list[str]:
    ids: list[str] = []
    for mail in mails:
        text, _ = parts(read_mail(mail))
        ids += sorted(set(LEAD_ID.findall(text)))
    return ids


def test_one_lead_gives_one_email_with_every_field(store, storage, smtp, clock):
    deps = notify_deps(store, storage, smtp.port, clock)
    store_lead(store, "900001")
    announce(store, deps, "900001")
    assert drain_notifications(deps, storage, clock) == ["sent"]
    [mail] = smtp.messages()
    message = read_mail(mail)
    text, html = parts(message)
    assert "Zoë Åström" in message["Subject"]
    assert message["To"] == "sales@agent.test"
    assert "lead900001@example.com" in text and "solar, batteries" in text
    assert "900001" in text and "solar" in html


def test_the_sent_record_carries_each_leads_speed_to_lead_and_no_lead_data(store, storage, smtp, clock, caplog):
    deps = notify_deps(store, storage, smtp.port, clock)
    created = int(datetime.now(UTC).timestamp()) - 90
    for lead_id in ("900101", "900102"):
        store_lead(store, lead_id, created=created)
        announce(store, deps, lead_id)
    with caplog.at_level("INFO", logger="shared.notify.notifier"):
        drain_notifications(deps, storage, clock)
    [sent] = [r for r in caplog.records if r.getMessage().startswith("notify: sent")]
    speeds = sent.speed_to_lead_ms  # type: ignore[attr-defined]
    assert len(speeds) == 2 and all(90_000 <= ms < 90_000 + 120_000 for ms in speeds)  # one per lead in the email
    assert "Zoë" not in sent.getMessage() and "example.com" not in sent.getMessage()


def test_same_lead_delivered_three_times_and_reprocessed_still_sends_one_email(store, storage, smtp, clock):
    deps = notify_deps(store, storage, smtp.port, clock)
    store_lead(store, "900002")
    for _ in range(3):
        announce(store, deps, "900002")
    store_lead(store, "900002")  # a reprocessed lead is a duplicate: no second outbox row
    enqueue_notification(deps.queues, store, "lead", "900002")
    outcomes = drain_notifications(deps, storage, clock)
    assert outcomes.count("sent") == 1 and set(outcomes) == {"sent", "duplicate"}
    assert len(smtp.messages()) == 1


def test_script_in_a_name_arrives_escaped(store, storage, smtp, clock):
    deps = notify_deps(store, storage, smtp.port, clock)
    store_lead(store, "900003", name="<script>alert(1)</script>")
    announce(store, deps, "900003")
    drain_notifications(deps, storage, clock)
    text, html = parts(read_mail(smtp.messages()[0]))
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<script>alert(1)</script>" in text


def test_smtp_down_retries_then_dead_letters_and_reprocess_sends_once(store, storage, tmp_path, clock):
    down = notify_deps(store, storage, free_port(), clock)
    store_lead(store, "900004")
    announce(store, down, "900004")
    outcomes = drain_notifications(down, storage, clock)
    assert outcomes == ["retrying", "retrying", "retrying", "dead_lettered"]
    assert store.stats.count_leads(clock.now.replace(year=2000), clock.now.replace(year=2100)) == 1
    [event] = store.failed_events.list_failed_events()
    assert event.stage == "notify" and "attempts exhausted after 4" in event.error
    running = sink(tmp_path / "mail-after")
    try:
        up = notify_deps(store, storage, running.port, clock)
        assert reprocess(str(event.id), store, up.queues).queue == NOTIFICATIONS_QUEUE
        assert drain_notifications(up, storage, clock) == ["sent"]
        assert reprocess(str(event.id), store, up.queues).queue == NOTIFICATIONS_QUEUE  # a second reprocess
        assert drain_notifications(up, storage, clock) == ["duplicate"]
        assert len(running.messages()) == 1
    finally:
        running.stop()


def test_burst_of_100_leads_with_a_cap_of_5_per_minute_puts_each_lead_in_exactly_one_email(store, storage, smtp, clock):
    deps = notify_deps(store, storage, smtp.port, clock, policy=NotifyPolicy(per_minute=5, per_hour=1000))
    ids = [str(900100 + n) for n in range(100)]
    for lead_id in ids:
        store_lead(store, lead_id)
        announce(store, deps, lead_id)
    sent_at: list = []
    original = deps.sender.send

    def recording_send(email):
        sent_at.append(clock.now)
        return original(email)

    deps.sender.send = recording_send  # type: ignore[method-assign]
    drain_notifications(deps, storage, clock)
    mails = smtp.messages()
    assert 2 <= len(mails) <= 10  # a handful, not 100
    assert sorted(lead_ids_in(mails)) == sorted(ids)  # every lead exactly once
    per_minute = Counter(t.replace(second=0, microsecond=0) for t in sent_at)
    assert max(per_minute.values()) <= 5


def test_hourly_cap_holds_across_minutes(store, storage, smtp, clock):
    deps = notify_deps(store, storage, smtp.port, clock, policy=NotifyPolicy(per_minute=5, per_hour=2, max_group=1))
    for lead_id in ("900201", "900202", "900203"):
        store_lead(store, lead_id)
        announce(store, deps, lead_id)
    handle = [handle_notification(m, deps).outcome for m in _bodies(storage)]
    assert handle.count("sent") == 2 and handle.count("waiting") == 1
    assert store.outbox.next_email_slot(clock.now, 5, 2) > clock.now


def test_messages_waiting_for_the_cap_wake_spread_over_the_backlog_not_all_at_once(store, storage, smtp, clock):
    policy = NotifyPolicy(per_minute=1, per_hour=600, max_group=10)  # one email a minute carries 10 leads
    deps = replace(notify_deps(store, storage, smtp.port, clock, policy=policy), rng=random.Random(3))
    assert (
        store.outbox.claim_email("key-taken", "lead", "test", "claim-taken", "taken", clock.now, 1, 600) == "claimed"
    )  # this minute's slot is gone
    ids = [str(900400 + n) for n in range(32)]
    for lead_id in ids:
        store_lead(store, lead_id)
        announce(store, deps, lead_id)
    results = [handle_notification(body, deps) for body in _bodies(storage)]
    assert [r.outcome for r in results] == ["waiting"] * 32
    first_free = (store.outbox.next_email_slot(clock.now, 1, 600) - clock.now).total_seconds() + 1
    delays = sorted(r.delay_seconds or 0 for r in results)
    # 32 leads need 4 emails: the next slot and three more a minute apart.
    assert first_free <= delays[0] and delays[-1] <= first_free + 3 * 60
    per_minute = Counter(int((d - first_free) // 60) for d in delays)
    assert len(per_minute) == 3 and max(per_minute.values()) < 20


def test_an_alert_waiting_for_the_cap_takes_the_next_slot(store, storage, smtp, clock):
    deps = notify_deps(store, storage, smtp.port, clock, policy=NotifyPolicy(per_minute=1, per_hour=600, max_group=10))
    for n in range(30):
        store_lead(store, str(900500 + n))  # a backlog of leads does not delay an alert
    assert take_slot(store, clock.now, 1, 600, kind="alert")
    assert open_incident(store, "token_invalid", {"code": 190})
    flush_outbox(deps.queues, store, clock.now + timedelta(minutes=5))
    results = [handle_notification(body, deps) for body in _bodies(storage)]
    alerts = [r for r in results if r.outcome == "waiting" and r.message and not r.message.key.isdigit()]
    first_free = (store.outbox.next_email_slot(clock.now, 1, 600) - clock.now).total_seconds() + 1
    assert alerts and all(r.delay_seconds == first_free for r in alerts)


def test_the_outbox_flush_does_not_copy_a_lead_email_waiting_out_the_hourly_cap(store, storage, smtp, clock):
    deps = notify_deps(store, storage, smtp.port, clock, policy=NotifyPolicy(per_minute=5, per_hour=1, max_group=10))
    assert (
        store.outbox.claim_email("key-taken", "lead", "test", "claim-taken", "taken", clock.now, 5, 1) == "claimed"
    )  # this hour's one email is gone
    store_lead(store, "900601")
    announce(store, deps, "900601")
    [waiting] = [handle_notification(body, deps) for body in _bodies(storage)]
    assert waiting.outcome == "waiting" and (waiting.delay_seconds or 0) > 45 * 60
    assert flush_outbox(deps.queues, store, clock.now + timedelta(minutes=40)) == 0  # its message still waits
    overdue = clock.now + timedelta(seconds=waiting.delay_seconds or 0) + timedelta(minutes=31)
    assert flush_outbox(deps.queues, store, overdue) == 1  # lost or stuck by then: queued again


def test_leads_for_another_form_go_to_that_forms_recipients(store, storage, smtp, clock):
    recipients = Recipients(default=("sales@agent.test",), routes={"form:100000000000101": ("solar-team@agent.test",)})
    deps = notify_deps(store, storage, smtp.port, clock, recipients=recipients)
    store_lead(store, "900301")
    announce(store, deps, "900301")
    drain_notifications(deps, storage, clock)
    assert read_mail(smtp.messages()[0])["To"] == "solar-team@agent.test"


def test_lead_whose_message_was_lost_is_sent_by_the_outbox_flush(store, storage, smtp, clock):
    deps = notify_deps(store, storage, smtp.port, clock)
    store_lead(store, "900401")  # committed with its outbox row; the process dies before enqueueing
    from datetime import timedelta

    assert flush_outbox(deps.queues, store, clock.now + timedelta(minutes=2)) == 1
    assert drain_notifications(deps, storage, clock) == ["sent"]
    assert flush_outbox(deps.queues, store, clock.now + timedelta(minutes=2)) == 0


def test_each_alert_fires_once_per_incident_and_once_on_recovery(store, storage, smtp, clock):
    from datetime import timedelta

    deps = notify_deps(store, storage, smtp.port, clock)
    assert open_incident(store, "token_invalid", {"code": 190, "subcode": 463})
    assert not open_incident(store, "token_invalid", {"code": 190})
    assert close_incident(store, "token_invalid")
    assert not close_incident(store, "token_invalid")
    assert flush_outbox(deps.queues, store, clock.now + timedelta(hours=1)) == 2
    drain_notifications(deps, storage, clock)
    subjects = sorted(read_mail(m)["Subject"] for m in smtp.messages())
    assert len(subjects) == 2
    assert subjects[0].startswith("[Lead agent] ALERT") and subjects[1].startswith("[Lead agent] RESOLVED")
    assert all(read_mail(m)["To"] == "ops@agent.test" for m in smtp.messages())


def test_digest_from_a_seeded_day_goes_out_once_in_bcc(store, storage, smtp, clock):
    from zoneinfo import ZoneInfo

    from shared.notify.digest import render_daily_digest

    now = datetime.now(UTC)
    for n in range(7):
        store_lead(store, str(900500 + n), notify=False, created=int(now.timestamp()) - 3600 * (n + 1))
    store.leads.record_duplicate("900500", "webhook")
    deps = notify_deps(
        store,
        storage,
        smtp.port,
        clock,
        recipients=Recipients(default=("sales@agent.test",), digest=("a@x.test", "b@x.test")),
    )
    deps.build_digest = lambda key: render_daily_digest(store, key, ZoneInfo("UTC"), lambda form: "Solar form")
    key = digest_key(now)
    assert store.outbox.add_outbox("digest", key) and not store.outbox.add_outbox("digest", key)
    enqueue_notification(deps.queues, store, "digest", key)
    enqueue_notification(deps.queues, store, "digest", key)
    assert sorted(drain_notifications(deps, storage, clock)) == ["duplicate", "sent"]
    [mail] = smtp.messages()
    message = read_mail(mail)
    assert message["To"] is None and message["Bcc"] is None
    assert message["X-Envelope-To"] == "a@x.test, b@x.test"
    text, html = parts(message)
    assert "<img" not in html and "Solar form" in html and "Solar form" in text
    assert "7 leads" in message["Subject"]


def test_send_stuck_after_a_crash_is_resent_once_and_labelled(store, storage, smtp, clock):
    deps = notify_deps(store, storage, smtp.port, clock)
    store_lead(store, "900601")
    assert claim(store, "900601", "crashed-claim") == "claimed"
    store.outbox.begin_send("crashed-claim")  # the process died while the provider had the email
    announce(store, deps, "900601")
    [body] = _bodies(storage)
    assert handle_notification(body, deps).outcome == "in_progress"  # a live sender may still finish
    clock.advance(11 * 60)
    assert drain_notifications(deps, storage, clock) == ["sent"]  # the re-queued message
    [mail] = smtp.messages()
    assert read_mail(mail)["Subject"].startswith("(resent) ")
    assert (
        store.stats.count_audit("notification_resent", clock.now.replace(year=2000), clock.now.replace(year=2100)) == 1
    )


def test_sent_email_is_recorded_by_a_receipt_when_the_database_is_away(store, storage, smtp, clock, monkeypatch):
    from shared.errors import StoreUnavailable

    deps = notify_deps(store, storage, smtp.port, clock)
    store_lead(store, "900603")
    announce(store, deps, "900603")
    original = store.outbox.mark_claim_sent
    monkeypatch.setattr(
        store.outbox, "mark_claim_sent", lambda *a, **k: (_ for _ in ()).throw(StoreUnavailable("locked"))
    )
    import shared.notify.outbox as outbox

    monkeypatch.setattr(outbox.time, "sleep", lambda s: None)
    [body] = _bodies(storage)
    assert handle_notification(body, deps).outcome == "sent"
    monkeypatch.setattr(store.outbox, "mark_claim_sent", original)  # the database is back
    assert drain_notifications(deps, storage, clock) == ["sent"]  # the receipt
    assert store.outbox.notification_state("900603", "lead", "smtp").status == "sent"
    assert len(smtp.messages()) == 1


def test_sender_429_retry_after_is_honoured(store, storage, clock):
    service = FakeAcsEmail(throttle_next=1)
    deps = replace(notify_deps(store, storage, free_port(), clock), sender=acs_sender(service))
    store_lead(store, "900701")
    [body] = [enqueue_notification(deps.queues, store, "lead", "900701")] and _bodies(storage)
    result = handle_notification(body, deps)
    assert result.outcome == "throttled" and result.delay_seconds is not None and result.delay_seconds >= 17
    assert store.outbox.notification_state("900701", "lead", deps.sender.name) is None  # nothing claimed while waiting
    assert drain_notifications(deps, storage, clock) == ["sent"]
    assert len(service.sent) == 1


def _bodies(storage: str) -> list[bytes]:
    from tests.support.queues import queue_client

    client = queue_client(storage, NOTIFICATIONS_QUEUE)
    bodies = []
    for message in client.receive_messages(messages_per_page=32, max_messages=32, visibility_timeout=30):
        bodies.append(message.content.encode())
        client.delete_message(message)
    return bodies


def test_no_notification_is_left_on_the_poison_queue_after_a_normal_run(store, storage, smtp, clock):
    deps = notify_deps(store, storage, smtp.port, clock)
    store_lead(store, "900801")
    announce(store, deps, "900801")
    drain_notifications(deps, storage, clock)
    assert message_count(storage, poison_queue(NOTIFICATIONS_QUEUE)) == 0


def test_claim_abandoned_before_sending_is_taken_over_and_sent_once(store, storage, smtp, clock):
    import sqlite3
    from datetime import timedelta

    deps = notify_deps(store, storage, smtp.port, clock)
    store_lead(store, "900602")
    assert claim(store, "900602", "stopped-before-send") == "claimed"  # never reached `sending`
    announce(store, deps, "900602")
    [body] = _bodies(storage)
    assert handle_notification(body, deps).outcome == "in_progress"  # a fresh claim may still be working
    three_minutes_ago = (datetime.now(UTC) - timedelta(minutes=3)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    with sqlite3.connect(store.backend.path) as conn:  # type: ignore[attr-defined]
        conn.execute("UPDATE notification_log SET claimed_at = ?", (three_minutes_ago,))
    clock.now = datetime.now(UTC)
    assert drain_notifications(deps, storage, clock) == ["sent"]
    assert len(smtp.messages()) == 1


def audits(store: Store, action: str) -> int:
    return store.stats.count_audit(action, datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC))


def backdate_claims(store: Store, minutes: float) -> None:
    """Make every claim look `minutes` old, as if its process had paused that long."""
    import sqlite3

    then = (datetime.now(UTC) - timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    with sqlite3.connect(store.backend.path) as conn:  # type: ignore[attr-defined]
        conn.execute("UPDATE notification_log SET claimed_at = ?", (then,))


def crashed_acs_send(store: Store, acs: FakeAcsEmail, lead_id: str, claim_id: str, reached_acs: bool) -> None:
    """A process claimed the lead's email and began the send, then died (after ACS took it, or before)."""
    assert claim(store, lead_id, claim_id, channel="acs") == "claimed"
    assert store.outbox.begin_send(claim_id)
    if reached_acs:
        email = OutgoingEmail("Lead", "text", "<p>html</p>", to=("sales@agent.test",), idempotency_key=claim_id)
        acs_sender(acs).send(email)


def test_acs_poll_timeout_keeps_the_claim_and_a_later_look_records_the_one_email(store, storage, clock):
    acs = FakeAcsEmail(hold_status_polls=True)
    deps = replace(notify_deps(store, storage, free_port(), clock), sender=acs_sender(acs, poll_timeout=0.2))
    store_lead(store, "900901")
    announce(store, deps, "900901")
    [body] = _bodies(storage)
    try:
        result = handle_notification(body, deps)
    finally:
        acs.release()
    assert result.outcome == "in_progress"  # accepted, outcome unknown: not a failure to retry
    assert store.outbox.notification_state("900901", "lead", "acs").status == "sending"  # the claim is kept
    assert drain_notifications(deps, storage, clock)[-1] == "recorded"
    assert len(acs.sent) == 1
    assert store.outbox.notification_state("900901", "lead", "acs").status == "sent"
    assert count_rows(store, "notification_outbox", "notification_key = ? AND status = 'sent'", ("900901",)) == 1
    assert audits(store, "notification_confirmed") == 1


def test_acs_send_whose_answer_was_lost_sends_one_email(store, storage, clock):
    acs = FakeAcsEmail(lose_next_responses=1)
    deps = replace(notify_deps(store, storage, free_port(), clock), sender=acs_sender(acs))
    store_lead(store, "900902")
    announce(store, deps, "900902")
    assert drain_notifications(deps, storage, clock) == ["sent"]
    assert len(acs.sent) == 1 and len(acs.send_attempts) == 2  # the SDK repeated the send; ACS sent once


def test_acs_send_stuck_by_a_crash_whose_operation_succeeded_is_recorded_not_resent(store, storage, clock):
    acs = FakeAcsEmail()
    deps = replace(notify_deps(store, storage, free_port(), clock), sender=acs_sender(acs))
    store_lead(store, "900903")
    crashed_acs_send(store, acs, "900903", "crashed-claim", reached_acs=True)
    announce(store, deps, "900903")
    clock.advance(11 * 60)
    assert drain_notifications(deps, storage, clock) == ["recorded"]
    assert len(acs.sent) == 1
    assert store.outbox.notification_state("900903", "lead", "acs").status == "sent"
    assert count_rows(store, "notification_log", "provider_id = ?", (acs.requests[0].headers["operation-id"],)) == 1
    assert audits(store, "notification_confirmed") == 1 and audits(store, "notification_resent") == 0


def test_acs_send_stuck_by_a_crash_before_acs_had_it_is_sent_again_unlabelled(store, storage, clock):
    acs = FakeAcsEmail()
    deps = replace(notify_deps(store, storage, free_port(), clock), sender=acs_sender(acs))
    store_lead(store, "900904")
    crashed_acs_send(store, acs, "900904", "crashed-claim", reached_acs=False)
    announce(store, deps, "900904")
    clock.advance(11 * 60)
    assert drain_notifications(deps, storage, clock) == ["sent"]
    [message] = acs.sent
    assert not message["content"]["subject"].startswith("(resent)")  # ACS said it never had it: not a repeat
    assert audits(store, "notification_taken_over") == 1 and audits(store, "notification_resent") == 0


def test_acs_send_stuck_while_its_operation_still_runs_waits_then_is_recorded(store, storage, clock):
    acs = FakeAcsEmail()
    deps = replace(notify_deps(store, storage, free_port(), clock), sender=acs_sender(acs))
    store_lead(store, "900905")
    crashed_acs_send(store, acs, "900905", "crashed-claim", reached_acs=True)
    acs.keep_running = True
    announce(store, deps, "900905")
    clock.advance(11 * 60)
    [body] = _bodies(storage)
    assert handle_notification(body, deps).outcome == "in_progress"
    assert store.outbox.notification_state("900905", "lead", "acs").status == "sending"
    acs.keep_running = False
    assert drain_notifications(deps, storage, clock) == ["recorded"]
    assert len(acs.sent) == 1


def test_a_claim_taken_over_before_its_send_sends_nothing(store, storage, smtp, clock):
    deps = notify_deps(store, storage, smtp.port, clock)
    store_lead(store, "901001")
    announce(store, deps, "901001")

    def paused_while_another_instance_took_over(form_id: str) -> None:
        backdate_claims(store, minutes=3)
        assert claim(store, "901001", "other-claim") == "claimed"

    deps.form_name = paused_while_another_instance_took_over
    [body] = _bodies(storage)
    assert handle_notification(body, deps).outcome == "superseded"
    assert smtp.messages() == []
    assert store.outbox.notification_state("901001", "lead", "smtp").claim_id == "other-claim"
    assert audits(store, "notification_superseded") == 1
    assert len(_bodies(storage)) == 1  # looked at again later: sent by then, or taken back


def test_a_group_that_lost_a_lead_to_another_claim_before_its_send_sends_nothing(store, storage, smtp, clock):
    deps = notify_deps(store, storage, smtp.port, clock)
    store_lead(store, "901011")
    store_lead(store, "901012")
    announce(store, deps, "901011")
    taken: list[str] = []

    def paused_while_another_instance_took_one_lead(form_id: str) -> None:
        if not taken:
            backdate_claims(store, minutes=3)
            assert claim(store, "901012", "other-claim") == "claimed"
            taken.append("901012")

    deps.form_name = paused_while_another_instance_took_one_lead
    [body] = _bodies(storage)
    assert handle_notification(body, deps).outcome == "superseded"
    assert smtp.messages() == []  # 901012 would have gone out twice
    assert store.outbox.notification_state("901011", "lead", "smtp") is None  # given back
    assert store.outbox.notification_state("901012", "lead", "smtp").claim_id == "other-claim"


def test_an_email_that_went_out_after_its_claim_was_taken_over_is_recorded_and_audited(store, storage, smtp, clock):
    deps = notify_deps(store, storage, smtp.port, clock)
    send = deps.sender.send

    def outlived_the_stuck_time(email: OutgoingEmail) -> str:
        assert store.outbox.take_over_stuck(email.idempotency_key)  # another instance took the claim over
        return send(email)

    deps.sender.send = outlived_the_stuck_time  # type: ignore[method-assign]
    store_lead(store, "901021")
    announce(store, deps, "901021")
    [body] = _bodies(storage)
    assert handle_notification(body, deps).outcome == "sent"
    assert len(smtp.messages()) == 1
    assert audits(store, "notification_sent_late") == 1
    assert count_rows(store, "notification_outbox", "notification_key = ? AND status = 'sent'", ("901021",)) == 1


def test_one_lead_email_takes_six_database_transactions(tmp_path, storage, smtp, clock):
    backend = CountingSqlite(str(tmp_path / "counted.db"))
    counted = Store(backend)
    counted.migrate()
    deps = notify_deps(counted, storage, smtp.port, clock)
    store_lead(counted, "900090")
    announce(counted, deps, "900090")
    before = backend.transactions
    assert drain_notifications(deps, storage, clock) == ["sent"]
    # claim state, the lead, slot + claim, group claim, begin the send (with the keys held), record the send
    assert backend.transactions - before == 6
    assert lead_ids_in(smtp.messages()) == ["900090"]


def test_form_names_are_read_from_the_store_at_most_once_a_minute_per_process(tmp_path):
    now = [1000.0]
    settings = load_settings({**LOCAL_DEFAULTS, "SQLITE_PATH": str(tmp_path / "forms.db")})
    services = Services(settings, clock=lambda: now[0])
    services.store.coordination.put_state("forms", {"77": "Solar quote"})
    assert services.form_name("77") == "Solar quote"
    services.store.coordination.put_state("forms", {"77": "Heat pump"})
    now[0] += 59
    assert services.form_name("77") == "Solar quote"  # the names read a moment ago
    now[0] += 1
    assert services.form_name("77") == "Heat pump" and services.form_name("78") is None
