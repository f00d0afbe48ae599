"""End-to-end fixtures: an Azurite and a sandbox Graph API per test module (a module may override them)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from devhost.defaults import LOCAL_DEFAULTS
from fakes.sandbox import RunningSandbox, SandboxGraph, serve
from tests.support.azurite import Azurite, start_azurite


@pytest.fixture(scope="module")
def storage() -> Iterator[Azurite]:
    """An Azurite of the module's own, so queues never carry messages from another module."""
    instance = start_azurite()
    yield instance
    instance.stop()


@pytest.fixture(scope="module")
def graph() -> Iterator[RunningSandbox]:
    """The sandbox Graph API with the local defaults' token, secret and page, already subscribed."""
    sandbox = SandboxGraph(
        [LOCAL_DEFAULTS["FACEBOOK_ACCESS_TOKEN"]],
        page_ids=[LOCAL_DEFAULTS["FACEBOOK_PAGE_IDS"]],
        app_secret=LOCAL_DEFAULTS["FACEBOOK_APP_SECRET"],
        subscribed=True,
    )
    with serve(sandbox) as running:
        yield running
