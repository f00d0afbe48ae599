"""The app's own registrations: routes, methods, auth levels and queue names as DESIGN.md fixes them."""

from __future__ import annotations

import importlib
import json
import sys

import azure.functions as func
import pytest

from devhost.defaults import LOCAL_DEFAULTS
from wiring import reset_services


@pytest.fixture(scope="module")
def functions():
    sys.modules.pop("function_app", None)
    module = importlib.import_module("function_app")
    return {f.get_function_name(): f for f in module.app.get_functions()}


def trigger(functions, name):
    return functions[name].get_trigger()


def test_webhook_is_anonymous_get_and_post_on_the_design_route(functions):
    http = trigger(functions, "facebook_leads_webhook")
    assert http.route == "webhook/facebook/leads"
    assert sorted(str(m.value) for m in http.methods) == ["GET", "POST"]
    assert http.auth_level == func.AuthLevel.ANONYMOUS


def test_health_is_anonymous(functions):
    assert trigger(functions, "health").auth_level == func.AuthLevel.ANONYMOUS


def test_only_the_webhook_health_and_openapi_are_anonymous_everything_else_needs_a_key(functions):
    anonymous = {"webhook/facebook/leads", "health", "openapi.yaml"}
    for function in functions.values():
        if function.is_http_function():
            trigger = function.get_trigger()
            expected = func.AuthLevel.ANONYMOUS if trigger.route in anonymous else func.AuthLevel.FUNCTION
            assert trigger.auth_level == expected, trigger.route


def test_ops_routes_need_a_function_key_and_avoid_the_reserved_admin_prefix(functions):
    ops = [f for f in functions.values() if f.is_http_function() and f.get_trigger().route.startswith("ops/")]
    assert ops, "no ops routes registered"
    for function in ops:
        assert function.get_trigger().auth_level == func.AuthLevel.FUNCTION
    for function in functions.values():
        if function.is_http_function():
            assert not function.get_trigger().route.lower().startswith(("admin", "runtime"))


def test_ingest_is_a_queue_trigger_on_leads_inbound(functions):
    queue = trigger(functions, "ingest_lead")
    assert (queue.queue_name, queue.connection) == ("leads-inbound", "AzureWebJobsStorage")


def test_function_app_imports_no_heavy_sdk_at_start_up():
    code = (
        "import sys, function_app; "
        "heavy = [m for m in ('azure.storage.queue', 'azure.data.tables', 'pyodbc', 'azure.identity',"
        " 'azure.keyvault.secrets', 'azure.communication.email') if m in sys.modules]; print(heavy)"
    )
    import subprocess

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.fixture
def local_env(monkeypatch, tmp_path):
    for name, value in LOCAL_DEFAULTS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("SQLITE_PATH", str(tmp_path / "leads.db"))
    reset_services()
    yield
    reset_services()


class Context:
    invocation_id = "test-invocation"
    function_name = "test"


def call(functions, name, **request):
    request.setdefault("body", b"")
    function = functions[name].get_user_function()
    import inspect

    kwargs = {"context": Context()} if "context" in inspect.signature(function).parameters else {}
    return function(func.HttpRequest(**request), **kwargs)


def test_handshake_echoes_the_challenge_as_plain_text(functions, local_env):
    params = {
        "hub.mode": "subscribe",
        "hub.verify_token": LOCAL_DEFAULTS["FACEBOOK_VERIFY_TOKEN"],
        "hub.challenge": "1158201444",
    }
    response = call(functions, "facebook_leads_webhook", method="GET", url="/api/webhook/facebook/leads", params=params)
    assert response.status_code == 200
    assert response.get_body() == b"1158201444"
    assert response.mimetype == "text/plain"


def test_handshake_with_wrong_token_is_403(functions, local_env):
    params = {"hub.mode": "subscribe", "hub.verify_token": "nope", "hub.challenge": "1"}
    response = call(functions, "facebook_leads_webhook", method="GET", url="/api/webhook/facebook/leads", params=params)
    assert response.status_code == 403


def test_last_leads_rejects_a_bad_limit(functions, local_env, azurite, monkeypatch):
    from functions import guard
    from shared.storage.ratelimit import RateLimiter

    monkeypatch.setattr(guard, "limiter", lambda: RateLimiter(azurite.connection_string, table="unittestlimits"))
    for limit in ("0", "101", "ten", "-1"):
        response = call(functions, "ops_last_leads", method="GET", url="/api/ops/last-leads", params={"limit": limit})
        assert response.status_code == 400
        assert "limit" in json.loads(response.get_body())["error"]
