"""OpenTelemetry: off, nothing of it is imported; on, one lead's webhook, ingestion and email are one trace.

Each case runs tests/support/telemetry_probe.py in a fresh interpreter (OpenTelemetry's providers
and instrumentations are process-wide). With telemetry on, the probe records spans and log
records with in-memory exporters next to the distro's own exporter, which points at a closed
loopback port; statsbeat, the control plane, live metrics and the cloud resource detectors are
off, so nothing leaves the machine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support.waiting import free_port

REPO = Path(__file__).resolve().parents[2]
PROBE = REPO / "tests" / "support" / "telemetry_probe.py"
BASE_ENVIRONMENT = {
    "FUNCTIONS_WORKER_RUNTIME": "python",
    "FACEBOOK_APP_SECRET": "telemetry-probe-secret",
    "FACEBOOK_VERIFY_TOKEN": "telemetry-probe-verify",
    "FACEBOOK_ACCESS_TOKEN": "telemetry-probe-token",
    "FACEBOOK_PAGE_IDS": "1000000000001",
    "STORE_BACKEND": "sqlite",
    "EMAIL_SENDER": "smtp",
    "SMTP_HOST": "127.0.0.1",
    "SMTP_STARTTLS": "false",
    "EMAIL_FROM": "leads@localhost",
    "EMAIL_TO": "sales@localhost",
    "EMAIL_MAX_PER_MINUTE": "30",
    "EMAIL_MAX_PER_HOUR": "600",
}
QUIET_DISTRO = {  # nothing but loopback: no statsbeat, control plane, SDK stats or cloud metadata lookups
    "APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL": "true",
    "APPLICATIONINSIGHTS_CONTROLPLANE_DISABLED": "true",
    "APPLICATIONINSIGHTS_SDKSTATS_DISABLED": "true",
    "OTEL_EXPERIMENTAL_RESOURCE_DETECTORS": "otel",
    "OTEL_TRACES_SAMPLER": "always_on",
}


def closed_loopback_connection_string() -> str:
    endpoint = f"http://127.0.0.1:{free_port()}/"
    return (
        f"InstrumentationKey=00000000-0000-0000-0000-000000000000;IngestionEndpoint={endpoint};LiveEndpoint={endpoint}"
    )


def run_probe(scenario: str, environment: dict[str, str], tmp: Path) -> dict[str, Any]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", str(tmp)),
        "PYTHONPATH": str(REPO),
        "SQLITE_PATH": str(tmp / "leads.db"),
        **BASE_ENVIRONMENT,
        **QUIET_DISTRO,
        **environment,
    }
    run = subprocess.run(
        [sys.executable, str(PROBE), scenario],
        cwd=tmp,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-4000:]
    return json.loads(run.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


# --- off -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "switch",
    [
        pytest.param({}, id="no settings"),
        pytest.param({"APPLICATIONINSIGHTS_CONNECTION_STRING": "InstrumentationKey=x"}, id="connection string only"),
        pytest.param({"PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY": "true"}, id="switch without connection string"),
        pytest.param(
            {"PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY": "false", "APPLICATIONINSIGHTS_CONNECTION_STRING": "x"},
            id="switched off",
        ),
    ],
)
def test_with_telemetry_off_importing_the_app_imports_no_opentelemetry(switch, tmp_path):
    report = run_probe("off", {"AzureWebJobsStorage": "UseDevelopmentStorage=true", **switch}, tmp_path)
    assert report["on"] is False
    assert report["loaded"] == []
    assert "traceparent" not in report["message"]


# --- on: one lead from webhook to email --------------------------------------------------------------------


@pytest.fixture(scope="module")
def traced(azurite, tmp_path_factory) -> dict[str, Any]:
    environment = {
        "AzureWebJobsStorage": azurite.connection_string,
        "PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY": "true",
        "APPLICATIONINSIGHTS_CONNECTION_STRING": closed_loopback_connection_string(),
    }
    report = run_probe("on", environment, tmp_path_factory.mktemp("telemetry"))
    assert report["on"] is True
    assert report["webhook_status"] == 200 and report["emails"] == 1, report
    return report


def span_named(report: dict[str, Any], name: str) -> dict[str, Any]:
    found = [span for span in report["spans"] if span["name"] == name]
    assert found, f"no span {name!r} among {sorted({s['name'] for s in report['spans']})}"
    return found[0]


def webhook_trace(report: dict[str, Any]) -> str:
    return str(report["host"]["webhook"][0])


def test_the_webhooks_queue_message_carries_the_invocations_trace_context(traced):
    trace, span = traced["host"]["webhook"]
    assert traced["messages"]["lead"]["traceparent"] == f"00-{trace}-{span}-01"


def test_ingestion_continues_the_webhooks_trace_and_links_its_own_host_invocation(traced):
    ingest = span_named(traced, "ingest_lead")
    assert ingest["kind"] == "CONSUMER"
    assert (ingest["trace"], ingest["parent"]) == tuple(traced["host"]["webhook"])
    assert ingest["links"] == [traced["host"]["ingest"]]
    assert ingest["attributes"]["messaging.destination.name"] == "leads-inbound"


def test_the_email_continues_the_same_trace_under_the_ingestion(traced):
    ingest, notify = span_named(traced, "ingest_lead"), span_named(traced, "send_notification")
    assert traced["messages"]["notification"]["traceparent"] == f"00-{ingest['trace']}-{ingest['span']}-01"
    assert (notify["trace"], notify["parent"]) == (webhook_trace(traced), ingest["span"])
    assert notify["links"] == [traced["host"]["notify"]]


def test_the_graph_fetch_is_an_http_dependency_inside_the_ingestion(traced):
    ingest = span_named(traced, "ingest_lead")
    fetches = [
        span
        for span in traced["spans"]
        if span["kind"] == "CLIENT" and traced["lead_id"] in span["attributes"].get("http.url", "")
    ]
    assert fetches, "no HTTP client span for the Graph fetch of the lead"
    assert all((s["trace"], s["parent"]) == (webhook_trace(traced), ingest["span"]) for s in fetches)
    assert fetches[0]["attributes"]["http.url"].startswith(traced["graph_url"])
    assert fetches[0]["attributes"]["http.status_code"] == "200"


def storage_send(report: dict[str, Any], queue: str, parent: str) -> dict[str, Any]:
    """The HTTP span of a `QueueClient.send_message` (azure-core's span) under `parent`, posting to `queue`."""
    sends = [s for s in report["spans"] if s["name"] == "QueueClient.send_message" and s["parent"] == parent]
    assert sends, f"no QueueClient.send_message span under {parent}"
    posts = [
        span
        for span in report["spans"]
        if span["kind"] == "CLIENT"
        and span["parent"] in {send["span"] for send in sends}
        and f"/{queue}/messages" in span["attributes"].get("url.full", "")
    ]
    assert len(posts) == 1, posts
    return posts[0]


def test_the_webhooks_enqueue_is_a_storage_dependency_of_its_invocation(traced):
    post = storage_send(traced, "leads-inbound", traced["host"]["webhook"][1])
    assert post["trace"] == webhook_trace(traced)
    assert post["attributes"]["http.response.status_code"] == "201"
    assert post["attributes"]["az.client_request_id"]


def test_the_notification_enqueue_is_a_storage_dependency_inside_the_ingestion(traced):
    post = storage_send(traced, "notifications", span_named(traced, "ingest_lead")["span"])
    assert post["trace"] == webhook_trace(traced)


def test_sql_statements_are_database_dependencies_inside_the_ingestion(traced):
    ingest = span_named(traced, "ingest_lead")
    statements = [
        span
        for span in traced["spans"]
        if span["attributes"].get("db.system") == "sqlite" and span["parent"] == ingest["span"]
    ]
    assert statements, "no SQL span under the ingestion"
    assert all(span["kind"] == "CLIENT" for span in statements)
    assert not any("Ada" in value for span in statements for value in span["attributes"].values())


def test_log_dimensions_are_attributes_of_the_log_record_in_the_leads_trace(traced):
    stored = next(log for log in traced["logs"] if log["body"].startswith("ingest: stored"))
    assert stored["trace"] == webhook_trace(traced)
    attributes = stored["attributes"]
    assert (attributes["stage"], attributes["outcome"]) == ("ingest", "stored")
    assert attributes["facebook_lead_id"] == traced["lead_id"]
    assert "custom_dimensions" not in attributes


def test_no_log_record_carries_lead_answers(traced):
    assert not any("Ada Lovelace" in json.dumps(log) for log in traced["logs"])


def test_the_sdks_request_and_response_lines_are_not_exported(traced):
    assert not any(log["body"].startswith(("Request URL:", "Response status:")) for log in traced["logs"])
