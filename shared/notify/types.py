"""The notifier's types: its policy (retry ladder and sending caps), what it needs, what it answers, its timings."""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo

from shared.messaging.processor import Handled, LookAgain
from shared.messaging.retry import RetryPolicy
from shared.messaging.sender import QueueSender
from shared.notify.base import EmailSender
from shared.notify.recipients import Recipients
from shared.notify.templates import RenderedEmail
from shared.store import Store

IN_PROGRESS_RECHECK_SECONDS = 30.0
STORE_RECHECK_SECONDS = 15.0
STUCK_AFTER = timedelta(minutes=10)


@dataclass(frozen=True)
class NotifyPolicy(RetryPolicy):
    """The retry ladder of sends plus the sending caps (from settings)."""

    max_attempts: int = 4
    retry_base_seconds: float = 30.0
    retry_max_seconds: float = 900.0
    per_minute: int = 5
    per_hour: int = 10
    max_group: int = 50


@dataclass
class NotifyDeps:
    """What the notifier needs; tests pass a real SQLite store, Azurite and an SMTP server."""

    store: Store
    sender: EmailSender
    queues: QueueSender
    recipients: Recipients
    tz: tzinfo
    policy: NotifyPolicy
    form_name: Callable[[str], str | None] = lambda form_id: None
    field_map: Mapping[str, str] = field(default_factory=dict)  # FIELD_MAP: the names the lead email shows
    build_digest: Callable[[str], RenderedEmail] | None = None
    stuck_after: timedelta = STUCK_AFTER
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    rng: random.Random | None = None


@dataclass(frozen=True)
class Sent(Handled):
    """A notification that is done, with what went out (emails) and how many leads it announced."""

    emails: int = 0
    leads: int = 0


@dataclass(frozen=True)
class StoreAway(LookAgain):
    """The database is away: look again shortly, without using an attempt."""
