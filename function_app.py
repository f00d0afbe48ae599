"""The function app: wiring only. Every trigger lives in a blueprint under `functions/`."""

from __future__ import annotations

import azure.functions as func

from functions import deliver, health, ingest, notify, openapi, ops, poller, stats, webhook
from shared.telemetry import setup_telemetry

# OpenTelemetry to Application Insights when its two settings ask for it; otherwise it imports nothing.
setup_telemetry()

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
app.register_functions(webhook.bp)
app.register_functions(ingest.bp)
app.register_functions(health.bp)
app.register_functions(ops.bp)
app.register_functions(stats.bp)
app.register_functions(openapi.bp)
app.register_functions(poller.bp)
app.register_functions(notify.bp)
app.register_functions(deliver.bp)
