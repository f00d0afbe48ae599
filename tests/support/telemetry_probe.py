"""One lead through the app's own functions with OpenTelemetry on, recorded by in-memory exporters.

Runs in a fresh interpreter (OpenTelemetry's providers and instrumentations are process-wide),
started by tests/integration/test_telemetry.py with the app settings in its environment and
Azurite's connection string; it starts its own sandbox Graph API and SMTP sink. It plays the
Python worker's part: for each invocation it makes the host's span current the way
`azure_functions_runtime.otel.configure_opentelemetry` does (the host's `traceparent` extracted
and attached), then calls the function the app registered: the webhook, then `ingest_lead` with
the message the webhook queued, then `send_notification` with the message ingestion queued.
Each host invocation gets a trace of its own, as the Functions host gives a queue-triggered
invocation. Prints one JSON report: spans, log records, the queue messages, the host's span
context of each invocation, and the emails the sink received.

`python tests/support/telemetry_probe.py off` only imports the app and reports what got loaded.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import sys
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

PAGE = "1000000000001"
FORM = PAGE + "01"
TOKEN = "telemetry-probe-token"
SECRET = "telemetry-probe-secret"


def loaded_telemetry_modules() -> list[str]:
    return sorted(m for m in sys.modules if m == "opentelemetry" or m.startswith(("opentelemetry.", "azure.monitor")))


def report_off() -> dict[str, Any]:
    import function_app  # noqa: F401 - importing it is what is measured
    from shared.messaging.messages import LeadMessage
    from shared.telemetry import telemetry_on

    return {
        "on": telemetry_on(),
        "loaded": loaded_telemetry_modules(),
        "message": json.loads(LeadMessage(facebook_lead_id="1").to_text()),
    }


def host_invocation() -> tuple[str, str, str]:
    """A span context of the host's, as the invocation's `traceparent` carries it: (traceparent, trace, span)."""
    trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
    return f"00-{trace_id}-{span_id}-01", trace_id, span_id


def invoke_as_worker(traceparent: str, call: Callable[[], Any]) -> Any:
    """What the worker does around an invocation: the host's trace context extracted and attached."""
    from opentelemetry import context
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    token = context.attach(TraceContextTextMapPropagator().extract({"traceparent": traceparent}))
    try:
        return call()
    finally:
        context.detach(token)


def take_one(connection_string: str, queue: str) -> Any:
    """The one message on `queue`, removed from it (the host would delete it after the invocation)."""
    from tests.support.queues import queue_client

    client = queue_client(connection_string, queue)
    [message] = list(client.receive_messages(max_messages=32, visibility_timeout=60))
    client.delete_message(message)
    return message


def as_queue_message(message: Any) -> Any:
    from azure.functions.queue import QueueMessage

    return QueueMessage(id=message.id, body=message.content.encode(), dequeue_count=1, pop_receipt="x")


def report_on(workdir: Path) -> dict[str, Any]:
    from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from fakes.sandbox import SandboxGraph, serve
    from fakes.simulate import WebhookChange, build_webhook_body, sign
    from fakes.smtp_sink import SmtpSink
    from shared.storage.names import LEADS_QUEUE, NOTIFICATIONS_QUEUE
    from shared.telemetry import setup_telemetry
    from tests.support.queues import reset_queue

    spans, logs = InMemorySpanExporter(), InMemoryLogRecordExporter()
    switched_on = setup_telemetry(
        span_processors=[SimpleSpanProcessor(spans)],
        log_record_processors=[SimpleLogRecordProcessor(logs)],
        enable_live_metrics=False,
        disable_offline_storage=True,
        disable_metrics=True,
    )
    logging.getLogger().setLevel(logging.INFO)  # as the worker does: the root logger at the host's level
    storage = os.environ["AzureWebJobsStorage"]  # noqa: SIM112 - the host's own setting name
    for queue in (LEADS_QUEUE, NOTIFICATIONS_QUEUE):
        reset_queue(storage, queue)
    sandbox = SandboxGraph([TOKEN], page_ids=[PAGE], app_secret=SECRET, subscribed=True)
    with serve(sandbox) as graph, SmtpSink(workdir / "mail", port=0) as sink:
        os.environ.update({"FACEBOOK_GRAPH_URL": graph.url, "SMTP_PORT": str(sink.port)})
        import function_app

        functions = {f.get_function_name(): f.get_user_function() for f in function_app.app.get_functions()}
        lead_id = sandbox.create_lead(FORM, [{"name": "full_name", "values": ["Ada Lovelace"]}])
        change = WebhookChange(leadgen_id=lead_id, page_id=PAGE, form_id=FORM, created_time=1_790_000_000)
        body = build_webhook_body([change])

        import azure.functions as func

        request = func.HttpRequest(
            method="POST",
            url="/api/webhook/facebook/leads",
            headers={"X-Hub-Signature-256": sign(body, SECRET)},
            body=body,
        )
        webhook, ingest, notify = host_invocation(), host_invocation(), host_invocation()
        context = SimpleNamespace(invocation_id=str(uuid.uuid4()))
        answer = invoke_as_worker(webhook[0], lambda: functions["facebook_leads_webhook"](request, context))
        lead_message = take_one(storage, LEADS_QUEUE)
        invoke_as_worker(ingest[0], lambda: functions["ingest_lead"](as_queue_message(lead_message), context))
        notification = take_one(storage, NOTIFICATIONS_QUEUE)
        invoke_as_worker(notify[0], lambda: functions["send_notification"](as_queue_message(notification), context))
        emails = len(sink.messages())
    return {
        "on": switched_on,
        "webhook_status": answer.status_code,
        "lead_id": lead_id,
        "graph_url": graph.url,
        "host": {"webhook": webhook[1:], "ingest": ingest[1:], "notify": notify[1:]},
        "messages": {"lead": json.loads(lead_message.content), "notification": json.loads(notification.content)},
        "emails": emails,
        "spans": [span_record(span) for span in spans.get_finished_spans()],
        "logs": [log_record(data) for data in logs.get_finished_logs()],
    }


def span_record(span: Any) -> dict[str, Any]:
    return {
        "name": span.name,
        "kind": span.kind.name,
        "trace": f"{span.context.trace_id:032x}",
        "span": f"{span.context.span_id:016x}",
        "parent": f"{span.parent.span_id:016x}" if span.parent else None,
        "links": [[f"{link.context.trace_id:032x}", f"{link.context.span_id:016x}"] for link in span.links],
        "attributes": {key: str(value) for key, value in (span.attributes or {}).items()},
    }


def log_record(data: Any) -> dict[str, Any]:
    record = data.log_record
    return {
        "body": str(record.body),
        "trace": f"{record.trace_id:032x}" if record.trace_id else None,
        "attributes": {key: str(value) for key, value in (record.attributes or {}).items()},
    }


if __name__ == "__main__":
    if sys.argv[1] == "off":
        print(json.dumps(report_off()))
    else:
        with tempfile.TemporaryDirectory(prefix="telemetry-probe-") as folder:
            print(json.dumps(report_on(Path(folder))))
