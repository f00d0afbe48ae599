"""A poller wired to real parts: the sandbox Graph API over HTTP, a SQLite file and Azurite."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from fakes.sandbox import RunningSandbox
from shared.graph.client import GraphClient
from shared.graph.throttle import ThrottleGate
from shared.ingest.consumer import ingest_lead_message
from shared.ingest.pipeline import IngestDeps
from shared.messaging.retry import RetryPolicy
from shared.messaging.sender import QueueSender
from shared.monitoring.token_state import IntegrationMonitor
from shared.poller.reconcile import PollerConfig, PollerDeps
from shared.storage.names import LEADS_QUEUE
from shared.storage.state import SharedState
from shared.store import Store
from shared.store.sqlite import SqliteBackend
from tests.support.queues import queue_client

APP_ID = "1234567890"
APP_SECRET = "safety-net-app-secret"
TOKEN = "safety-net-token"
PAGE = "1000000000001"


@dataclass
class SafetyNet:
    """Everything a poller test touches."""

    graph: RunningSandbox
    store: Store
    sender: QueueSender
    storage: str
    client: GraphClient
    monitor: IntegrationMonitor
    gate: ThrottleGate

    def poller(self, **config: object) -> PollerDeps:
        settings: dict[str, object] = {"page_ids": (PAGE,), "app_id": APP_ID, "grace_seconds": 0, **config}
        return PollerDeps(
            graph=self.client,
            store=self.store,
            sender=self.sender,
            config=PollerConfig(**settings),  # type: ignore[arg-type]
            access_token=lambda: TOKEN,
            app_token=lambda: f"{APP_ID}|{APP_SECRET}",
            monitor=self.monitor,
        )

    def ingest_deps(self) -> IngestDeps:
        return IngestDeps(
            self.store, self.client.fetch_lead, self.sender, RetryPolicy(5, 0, 60, 1), monitor=self.monitor
        )

    def drain_ingest(self) -> list[str]:
        """Run ingestion over every visible `leads-inbound` message, as the queue trigger would."""
        client = queue_client(self.storage, LEADS_QUEUE)
        outcomes = []
        while True:
            batch = list(client.receive_messages(messages_per_page=32, max_messages=32, visibility_timeout=30))
            if not batch:
                return outcomes
            for message in batch:
                outcomes.append(ingest_lead_message(message.content.encode(), self.ingest_deps()).outcome)
                client.delete_message(message)


def build_safety_net(
    graph: RunningSandbox,
    storage: str,
    tmp_path: Path,
    backend: SqliteBackend | None = None,
    throttle_state: SharedState | None = None,
) -> SafetyNet:
    """The parts over a SQLite file (or `backend`); the Graph throttle shared through the store or `throttle_state`."""
    store = Store(backend or SqliteBackend(str(tmp_path / "leads.db")))
    store.migrate()
    shared: SharedState = store.coordination if throttle_state is None else throttle_state
    gate = ThrottleGate(lambda: shared)
    monitor = IntegrationMonitor(lambda: store, recheck_seconds=60, refresh_seconds=0)
    client = GraphClient(graph.url, "v26.0", lambda: TOKEN, 3, gate=gate, on_token_invalid=monitor.token_invalid)
    return SafetyNet(graph, store, QueueSender(storage), storage, client, monitor, gate)


def hours_ago(hours: float) -> float:
    return time.time() - hours * 3600
