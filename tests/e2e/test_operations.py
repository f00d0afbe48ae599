"""Operating it through the devhost: health going down and up, stats, erasure, shared rate limits, clean logs."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from devhost.defaults import LOCAL_DEFAULTS
from fakes.sandbox import RunningSandbox, SandboxGraph, serve
from fakes.simulate import simulate
from fakes.smtp_sink import SmtpSink
from tests.support.azurite import Azurite, start_azurite
from tests.support.devhost_process import DevhostProcess, devhost_env, start_devhost
from tests.support.waiting import wait_until

SECRET = LOCAL_DEFAULTS["FACEBOOK_APP_SECRET"]
TOKEN = LOCAL_DEFAULTS["FACEBOOK_ACCESS_TOKEN"]
PAGE = LOCAL_DEFAULTS["FACEBOOK_PAGE_IDS"]
NO_TIMERS = {"AzureWebJobs.poll_leads.Disabled": "true", "AzureWebJobs.sweep_dead_letters.Disabled": "true"}


@pytest.fixture
def storage() -> Iterator[Azurite]:
    instance = start_azurite()
    yield instance
    instance.stop()


@pytest.fixture
def graph() -> Iterator[RunningSandbox]:
    sandbox = SandboxGraph([TOKEN], page_ids=[PAGE], app_secret=SECRET, subscribed=True)
    with serve(sandbox) as running:
        yield running


@pytest.fixture
def mail(tmp_path: Path) -> Iterator[SmtpSink]:
    running = SmtpSink(tmp_path / "mail", "127.0.0.1", 0)
    running.start()
    yield running
    running.stop()


def start(storage: Azurite, graph_url: str, tmp_path: Path, name: str = "devhost", **settings: str) -> DevhostProcess:
    env = devhost_env(
        storage.connection_string, graph_url, str(tmp_path / "db" / "leads.db"), HEALTH_CACHE_SECONDS="0", **NO_TIMERS
    )
    env.update(settings)
    return start_devhost(env, tmp_path / f"{name}.log")


def get(host: DevhostProcess, path: str, **params: object) -> requests.Response:
    return requests.get(f"{host.url}/api/{path}", params=params, timeout=20)


def test_health_goes_503_for_each_dependency_and_back_to_200(storage, graph, mail, tmp_path):
    host = start(
        storage,
        graph.url,
        tmp_path,
        EMAIL_SENDER="smtp",
        SMTP_HOST="127.0.0.1",
        SMTP_PORT=str(mail.port),
        SMTP_STARTTLS="false",
    )
    try:
        assert get(host, "health").status_code == 200, get(host, "health").text
        mail.stop()  # the SMTP server goes away
        assert get(host, "health/email").status_code == 503
        body = get(host, "health").json()
        assert body["status"] == "degraded" and body["checks"]["email"] == {**body["checks"]["email"], "status": "down"}
        mail.start()
        wait_until(lambda: get(host, "health/email").status_code == 200, what="SMTP back")
        graph.sandbox.set_tokens(expired=[TOKEN])  # Meta says the token is dead
        facebook = get(host, "health/facebook")
        assert facebook.status_code == 503 and facebook.json()["checks"]["facebook"]["token"]["valid"] is False
        graph.sandbox.set_tokens(valid=[TOKEN])
        assert get(host, "health/facebook").status_code == 200
        storage.stop()  # Azurite goes away: the queue check fails
        assert get(host, "health").json()["checks"]["queue"]["status"] == "down"
        assert get(host, "health").status_code == 503
    finally:
        host.stop()


def test_database_down_is_503_then_200_when_it_returns(storage, graph, tmp_path):
    (tmp_path / "db").write_text("a file where the database folder should be")
    host = start(storage, graph.url, tmp_path)
    try:
        db = get(host, "health/db")
        assert db.status_code == 503 and db.json()["checks"]["db"]["reason"] == "StoreUnavailable"
        (tmp_path / "db").unlink()
        (tmp_path / "db").mkdir()
        healthy = wait_until(lambda: (r := get(host, "health/db")).status_code == 200 and r, what="database back")
        assert healthy.json()["checks"]["db"]["schema_version"] >= 5
    finally:
        host.stop()


def test_stats_routes_count_what_happened(storage, graph, tmp_path):
    host = start(storage, graph.url, tmp_path)
    try:
        report = simulate(
            graph.url, f"{host.url}/api/webhook/facebook/leads", SECRET, TOKEN, [PAGE], "v26.0",
            leads=6, rate=50, duplicates=0.5, batch=2, seed=9,
        )  # fmt: skip
        wait_until(lambda: get(host, "stats").json()["leads_total"] == 6, what="6 leads counted")
        wait_until(
            lambda: get(host, "stats").json()["duplicates_ignored"] == report.duplicate_deliveries, what="duplicates"
        )
        overview = get(host, "stats").json()
        assert overview["by_source"] == {"webhook": 6, "polling": 0, "reprocess": 0}
        assert overview["success_rate"] == 1.0 and overview["failed_events_open"] == 0
        assert overview["last_lead_at"].endswith("Z")
        ingestion = get(host, "stats/ingestion", hours=24).json()
        assert sum(row["webhook"] for row in ingestion["per_hour"]) == 6
        assert sum(form["total"] for form in ingestion["per_form"]) == 6
        assert ingestion["duplicates"] == report.duplicate_deliveries
        notifications = get(host, "stats/notifications", hours=24).json()
        assert set(notifications["latency_ms"]) == {"p50", "p95", "p99", "max"}
        assert notifications["speed_to_lead_ms"]["count"] == 0  # no email is configured here
        assert notifications["webhook_to_stored_ms"]["count"] == 6
        assert notifications["webhook_to_stored_ms"]["not_from_webhook"] == 0
        assert notifications["webhook_to_stored_ms"]["p50"] <= notifications["webhook_to_stored_ms"]["p99"]
        assert get(host, "stats/ingestion", hours="nope").status_code == 400
        assert get(host, "stats/notifications", hours=0).status_code == 400
    finally:
        host.stop()


def test_erasure_leaves_no_pii_anywhere_and_the_lead_is_not_stored_again(storage, graph, tmp_path):
    host = start(storage, graph.url, tmp_path)
    try:
        report = simulate(
            graph.url,
            f"{host.url}/api/webhook/facebook/leads",
            SECRET,
            TOKEN,
            [PAGE],
            "v26.0",
            leads=2,
            rate=50,
            seed=4,
        )
        wait_until(lambda: len(get(host, "ops/last-leads", limit=10).json()["leads"]) == 2, what="2 leads")
        victim = report.lead_ids[0]
        lead = graph.sandbox.lead(victim)
        personal = ("full_name", "first_name", "last_name", "email", "phone_number")
        pii = [v for item in lead.field_data if item["name"] in personal for v in item["values"] if v]
        assert len(pii) >= 2
        answer = requests.delete(f"{host.url}/api/ops/leads/{victim}", timeout=10)
        assert answer.status_code == 200 and answer.json()["tables"]["leads"] == 1 and answer.json()["erased"]
        again = requests.delete(f"{host.url}/api/ops/leads/{victim}", timeout=10)
        assert again.status_code == 200 and again.json()["erased"] is False and again.json()["tombstoned"]
        dump = "\n".join(sqlite3.connect(tmp_path / "db" / "leads.db").iterdump())
        for value in pii:
            assert value not in dump
        assert f"INSERT INTO \"erased_leads\" VALUES('{victim}'" in dump
        # a late webhook retry or the poller must not bring the person back
        from fakes.simulate import build_webhook_body, sign

        body = build_webhook_body([{"leadgen_id": victim, "page_id": PAGE, "form_id": PAGE + "01"}])
        requests.post(
            f"{host.url}/api/webhook/facebook/leads",
            data=body,
            headers={"X-Hub-Signature-256": sign(body, SECRET)},
            timeout=10,
        )
        wait_until(
            lambda: "duplicate" in host.log() or "ingest: duplicate" in host.log(), timeout=20, what="redelivery"
        )
        assert [le["facebook_lead_id"] for le in get(host, "ops/last-leads", limit=10).json()["leads"]] == [
            report.lead_ids[1]
        ]
        # erased before it arrives: the person is never stored
        early = graph.sandbox.create_lead(PAGE + "01", [{"name": "full_name", "values": ["Not Yet Here"]}])
        answer = requests.delete(f"{host.url}/api/ops/leads/{early}", timeout=10)
        assert answer.status_code == 200 and answer.json()["erased"] is False and answer.json()["tombstoned"]
        body = build_webhook_body([{"leadgen_id": early, "page_id": PAGE, "form_id": PAGE + "01"}])
        before = host.log().count("duplicate")
        requests.post(
            f"{host.url}/api/webhook/facebook/leads",
            data=body,
            headers={"X-Hub-Signature-256": sign(body, SECRET)},
            timeout=10,
        )
        wait_until(lambda: host.log().count("duplicate") > before, timeout=20, what="the early erasure honoured")
        assert early not in {le["facebook_lead_id"] for le in get(host, "ops/last-leads", limit=10).json()["leads"]}
        assert "Not Yet Here" not in "\n".join(sqlite3.connect(tmp_path / "db" / "leads.db").iterdump())
    finally:
        host.stop()


def test_rate_limit_is_shared_by_two_devhost_processes(storage, graph, tmp_path):
    first = start(storage, graph.url, tmp_path, name="first", RATE_LIMIT_PER_MINUTE="30")
    second = start(storage, graph.url, tmp_path, name="second", RATE_LIMIT_PER_MINUTE="30")
    try:
        # the limit counts per clock minute: start early in one so the burst cannot straddle two
        wait_until(lambda: time.time() % 60 < 25, timeout=61, interval=0.2, what="the start of a minute window")
        statuses = [get(first, "ops/failed-events").status_code for _ in range(18)]
        statuses += [get(second, "ops/failed-events").status_code for _ in range(12)]
        assert set(statuses) == {200}
        refused = get(second, "ops/failed-events")
        assert refused.status_code == 429 and 1 <= int(refused.headers["Retry-After"]) <= 60
        assert get(first, "ops/last-leads").status_code == 429
    finally:
        first.stop()
        second.stop()


def test_signed_deliveries_are_never_rate_limited_but_bad_signatures_are(storage, graph, tmp_path):
    host = start(storage, graph.url, tmp_path, RATE_LIMIT_PER_MINUTE="5")
    try:
        url = f"{host.url}/api/webhook/facebook/leads"
        wait_until(lambda: time.time() % 60 < 40, timeout=61, interval=0.2, what="the start of a minute window")
        bad = [
            requests.post(url, data=b"{}", headers={"X-Hub-Signature-256": "sha256=00"}, timeout=10).status_code
            for _ in range(7)
        ]
        assert bad[:5] == [401] * 5 and bad[5:] == [429, 429]
        from fakes.simulate import sign

        body = b'{"object":"page","entry":[]}'
        assert (
            requests.post(url, data=body, headers={"X-Hub-Signature-256": sign(body, SECRET)}, timeout=10).status_code
            == 200
        )
    finally:
        host.stop()


def test_logs_carry_no_email_phone_or_name(storage, graph, tmp_path):
    host = start(storage, graph.url, tmp_path)
    try:
        report = simulate(
            graph.url,
            f"{host.url}/api/webhook/facebook/leads",
            SECRET,
            TOKEN,
            [PAGE],
            "v26.0",
            leads=5,
            rate=50,
            seed=8,
        )
        wait_until(lambda: get(host, "stats").json()["leads_total"] == 5, what="5 leads")
        log = host.log()
        assert '"stage": "ingest"' in log and '"outcome": "stored"' in log
        for lead_id in report.lead_ids:
            for item in graph.sandbox.lead(lead_id).field_data:
                for value in item["values"]:
                    if len(value) > 3:
                        assert value not in log, f"{item['name']} leaked into the log"
    finally:
        host.stop()
