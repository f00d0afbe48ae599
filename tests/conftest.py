"""Session-wide real services for the suite; each test gets its own queues and database file."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.support.azurite import Azurite, start_azurite


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    """One real Azurite for the whole session, stopped at the end."""
    instance = start_azurite()
    yield instance
    instance.stop()


@pytest.fixture
def unique_suffix() -> str:
    """A short random suffix so tests sharing Azurite never share a queue."""
    return uuid.uuid4().hex[:8]
