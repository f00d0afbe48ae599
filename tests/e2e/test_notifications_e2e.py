"""Through the devhost: leads become emails in a real SMTP server, each lead in exactly one email."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from devhost.defaults import LOCAL_DEFAULTS
from fakes.sandbox import RunningSandbox, SandboxGraph, serve
from fakes.simulate import simulate
from fakes.smtp_sink import SmtpSink
from tests.support.devhost_process import devhost_env, start_devhost
from tests.support.notifications import parts, read_mail
from tests.support.waiting import wait_until

SECRET = LOCAL_DEFAULTS["FACEBOOK_APP_SECRET"]
TOKEN = LOCAL_DEFAULTS["FACEBOOK_ACCESS_TOKEN"]
PAGE = LOCAL_DEFAULTS["FACEBOOK_PAGE_IDS"]


@pytest.fixture
def graph() -> Iterator[RunningSandbox]:
    sandbox = SandboxGraph([TOKEN], page_ids=[PAGE], app_secret=SECRET, subscribed=True)
    with serve(sandbox) as running:
        yield running


def test_simulated_leads_land_as_emails_each_lead_once(storage, graph, tmp_path):
    mail = SmtpSink(tmp_path / "mail", "127.0.0.1", 0)
    mail.start()
    env = devhost_env(
        storage.connection_string,
        graph.url,
        str(tmp_path / "leads.db"),
        EMAIL_SENDER="smtp",
        SMTP_HOST="127.0.0.1",
        SMTP_PORT=str(mail.port),
        SMTP_STARTTLS="false",
        EMAIL_MAX_PER_MINUTE="3",
        **{"AzureWebJobs.poll_leads.Disabled": "true"},
    )
    host = start_devhost(env, tmp_path / "devhost.log")
    try:
        report = simulate(
            graph.url, f"{host.url}/api/webhook/facebook/leads", SECRET, TOKEN, [PAGE], "v26.0",
            leads=12, rate=100, duplicates=0.3, batch=3, seed=5,
        )  # fmt: skip

        def announced() -> list[str]:
            ids: list[str] = []
            for path in mail.messages():
                text, _ = parts(read_mail(path))
                ids += [i for i in report.lead_ids if re.search(rf"\b{i}\b", text)]
            return ids

        wait_until(lambda: sorted(announced()) == sorted(report.lead_ids), timeout=90, what="every lead announced")
        assert len(mail.messages()) <= 12
        assert sorted(announced()) == sorted(report.lead_ids)  # no lead twice
    finally:
        assert host.stop() == 0
        mail.stop()
