"""Where deliveries go, from the settings: each destination's name, channel and URL, and the routing.

A destination is named in `deliveries` rows, never by its URL (chat webhook URLs are secrets, and a
CRM's URL may carry a token): `webhook:<12 hex of the URL's SHA-256>`, `slack`, `teams`, `capi`. The
URL is read when sending, through the secret provider, so a rotated one takes effect without a
restart. A destination removed from the settings leaves its pending rows to fail with that reason.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Literal

from shared.settings import Settings
from shared.store.deliveries import DeliveryRouting

Channel = Literal["webhook", "slack", "teams", "capi"]


@dataclass(frozen=True)
class Destination:
    """One place deliveries go; `target()` is its URL (the dataset id for `capi`), read at send time."""

    name: str
    channel: Channel
    target: Callable[[], str]


@dataclass(frozen=True)
class Destinations:
    """Every configured destination by name, and which of them each kind of event goes to."""

    by_name: dict[str, Destination]
    routing: DeliveryRouting

    def get(self, name: str) -> Destination | None:
        return self.by_name.get(name)


def _fixed(value: str) -> Callable[[], str]:
    return lambda: value


def webhook_name(url: str) -> str:
    """A webhook destination's name: stable for its URL, and says nothing of it."""
    return "webhook:" + hashlib.sha256(url.encode("utf-8")).hexdigest()[:12]


def destinations_from(settings: Settings, secret: Callable[[str], str]) -> Destinations:
    """The destinations the settings configure; `secret(name)` reads a chat URL (app setting or Key Vault)."""
    by_name: dict[str, Destination] = {}
    lead: list[str] = []
    alert: list[str] = []
    for url in settings.lead_webhook_urls:
        name = webhook_name(url)
        by_name[name] = Destination(name, "webhook", _fixed(url))
        lead.append(name)
    chats: tuple[tuple[Channel, str, str, str], ...] = (
        ("slack", "SLACK_WEBHOOK_URL", settings.slack_webhook_url, settings.slack_events),
        ("teams", "TEAMS_WEBHOOK_URL", settings.teams_webhook_url, settings.teams_events),
    )
    for channel, setting, configured, events in chats:
        if not configured:
            continue
        by_name[channel] = Destination(channel, channel, partial(secret, setting))
        if events in ("leads", "both"):
            lead.append(channel)
        if events in ("alerts", "both"):
            alert.append(channel)
    stage: tuple[str, ...] = ()
    if settings.meta_dataset_id:
        dataset = settings.meta_dataset_id
        by_name["capi"] = Destination("capi", "capi", _fixed(dataset))
        stage = ("capi",)
    return Destinations(by_name, DeliveryRouting(tuple(lead), tuple(alert), stage))
