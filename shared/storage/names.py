"""Queue and table names shared by the code, host.json consumers and the Bicep."""

from __future__ import annotations

LEADS_QUEUE = "leads-inbound"
NOTIFICATIONS_QUEUE = "notifications"
DELIVERIES_QUEUE = "deliveries"  # leads and alerts to webhooks, Slack, Teams and the Conversions API
POISON_SUFFIX = "-poison"
COUNTERS_TABLE = "webhookcounters"
STATE_TABLE = "agentstate"  # small shared state that must not wake the database (idle gate, Graph throttle)


def poison_queue(queue: str) -> str:
    """The host's dead-letter twin of `queue`."""
    return queue + POISON_SUFFIX
