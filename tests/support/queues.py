"""Read Azurite queues in tests the way the host would (base64 text)."""

from __future__ import annotations

import json
from typing import Any

from azure.storage.queue import QueueClient, TextBase64DecodePolicy, TextBase64EncodePolicy


def queue_client(connection_string: str, name: str) -> QueueClient:
    return QueueClient.from_connection_string(
        connection_string,
        name,
        message_encode_policy=TextBase64EncodePolicy(),
        message_decode_policy=TextBase64DecodePolicy(),
    )


def reset_queue(connection_string: str, name: str) -> None:
    """Make `name` exist and be empty."""
    client = queue_client(connection_string, name)
    try:
        client.create_queue()
    except Exception:
        client.clear_messages()


def message_count(connection_string: str, name: str) -> int:
    """Every message on the queue, visible or not (Azurite's count is exact)."""
    try:
        return int(queue_client(connection_string, name).get_queue_properties().approximate_message_count)
    except Exception:
        return 0


def drain_json(connection_string: str, name: str) -> list[dict[str, Any]]:
    """Receive and delete every visible message, returning each decoded JSON body."""
    client = queue_client(connection_string, name)
    bodies: list[dict[str, Any]] = []
    while True:
        batch = list(client.receive_messages(messages_per_page=32, max_messages=32, visibility_timeout=30))
        if not batch:
            return bodies
        for message in batch:
            bodies.append(json.loads(message.content))
            client.delete_message(message)
