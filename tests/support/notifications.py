"""A notifier wired to real parts: a SQLite store, Azurite queues and a real SMTP server (aiosmtpd)."""

from __future__ import annotations

import email
import email.policy
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from fakes.smtp_sink import SmtpSink
from shared.messaging.sender import QueueSender
from shared.notify.acs import AcsSender
from shared.notify.consumer import handle_notification
from shared.notify.recipients import Recipients
from shared.notify.smtp import SmtpSender
from shared.notify.types import NotifyDeps, NotifyPolicy
from shared.storage.names import NOTIFICATIONS_QUEUE
from shared.store import Store
from tests.support.acs import FakeAcsEmail
from tests.support.queues import queue_client


class ImmediateQueueSender(QueueSender):
    """Real Azurite queues with visibility delays dropped: the test moves a fake clock instead of waiting."""

    def send(self, queue: str, text: str, delay_seconds: float = 0) -> str:
        return super().send(queue, text, 0)


@dataclass
class FakeClock:
    now: datetime = field(default_factory=lambda: datetime.now(UTC))

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def read_mail(path: Path) -> EmailMessage:
    message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def parts(message: EmailMessage) -> tuple[str, str]:
    """(plain text, html) of a multipart/alternative message."""
    text = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    assert text is not None and html is not None
    return str(text.get_content()), str(html.get_content())


def notify_deps(
    store: Store,
    storage: str,
    smtp_port: int,
    clock: FakeClock,
    policy: NotifyPolicy | None = None,
    recipients: Recipients | None = None,
) -> NotifyDeps:
    return NotifyDeps(
        store=store,
        sender=SmtpSender("127.0.0.1", smtp_port, starttls=False, timeout=2, sender="leads@agent.test"),
        queues=ImmediateQueueSender(storage),
        recipients=recipients or Recipients(default=("sales@agent.test",), alerts=("ops@agent.test",)),
        tz=ZoneInfo("Europe/Berlin"),
        policy=policy or NotifyPolicy(per_minute=30, per_hour=600, retry_base_seconds=0),
        clock=clock,
    )


def acs_sender(service: FakeAcsEmail, **options: Any) -> AcsSender:
    """An `AcsSender` whose HTTP hop goes to `service` (the SDK's signing, retries and polling run unchanged)."""
    connection_string = f"endpoint={service.endpoint}/;accesskey={service.access_key}"
    return AcsSender(
        "DoNotReply@agent.test", connection_string=connection_string, transport=service.transport(), **options
    )


def drain_notifications(deps: NotifyDeps, storage: str, clock: FakeClock, max_rounds: int = 200) -> list[str]:
    """Run the notifier over the queue until it is empty; a round where nothing could be sent moves the clock."""
    client = queue_client(storage, NOTIFICATIONS_QUEUE)
    outcomes: list[str] = []
    for _ in range(max_rounds):
        batch = list(client.receive_messages(messages_per_page=32, max_messages=32, visibility_timeout=30))
        if not batch:
            return outcomes
        round_outcomes = []
        for message in batch:
            round_outcomes.append(handle_notification(message.content.encode(), deps).outcome)
            client.delete_message(message)
        outcomes += round_outcomes
        if all(o in ("waiting", "in_progress", "retrying", "throttled") for o in round_outcomes):
            clock.advance(61)
    raise AssertionError(f"notifications did not drain: {outcomes[-20:]}")


def sink(directory: Path) -> SmtpSink:
    running = SmtpSink(directory, "127.0.0.1", 0)
    running.start()
    return running
