"""openapi.yaml: a valid OpenAPI 3 document that describes exactly the app's HTTP routes."""

from __future__ import annotations

import importlib
import re
import sys
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest
import schemathesis
import yaml
from schemathesis.core.result import Ok

from functions import openapi as openapi_function

REPO = Path(__file__).resolve().parents[2]
DOCUMENT = REPO / "openapi.yaml"
HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
PREFIX = "/api/"
KEY_SCHEMES = {"functionKey", "functionKeyQuery"}


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    loaded = yaml.safe_load(DOCUMENT.read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


@pytest.fixture(scope="module")
def routes() -> dict[tuple[str, str], func.AuthLevel]:
    """(path, method) → auth level for every HTTP function the app registers (a fresh app each time)."""
    sys.modules.pop("function_app", None)
    app = importlib.import_module("function_app").app
    found: dict[tuple[str, str], func.AuthLevel] = {}
    for function in app.get_functions():
        if not function.is_http_function():
            continue
        trigger = function.get_trigger()
        path = PREFIX + _plain_template(trigger.route)
        methods = [str(getattr(m, "value", m)).lower() for m in (trigger.methods or HTTP_METHODS)]
        level = trigger.auth_level or app.auth_level
        for method in methods:
            assert (path, method) not in found, f"{method.upper()} {path} registered twice"
            found[(path, method)] = level
    return found


def _plain_template(route: str) -> str:
    """`ops/reprocess/{id:int?}` → `ops/reprocess/{id}`: constraints and optional marks dropped."""
    return re.sub(r"\{\*?([A-Za-z_][A-Za-z0-9_]*)[^}]*\}", r"{\1}", route.strip("/"))


def _operations(document: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (path, method): operation
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in HTTP_METHODS
    }


def test_the_document_is_valid_openapi_3(document):
    assert str(document["openapi"]).startswith("3.")
    schema = schemathesis.openapi.from_dict(document)
    schema.validate()  # raises against the OpenAPI meta-schema
    loaded = list(schema.get_all_operations())
    assert all(isinstance(result, Ok) for result in loaded), [r for r in loaded if not isinstance(r, Ok)]
    assert len(loaded) == len(_operations(document))


def test_every_reference_resolves(document):
    refs: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("$ref"), str):
                refs.append(node["$ref"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(document)
    assert refs
    for ref in refs:
        assert ref.startswith("#/"), ref
        target: Any = document
        for part in ref[2:].split("/"):
            assert isinstance(target, dict) and part in target, f"unresolved {ref}"
            target = target[part]


def test_every_registered_route_is_documented_and_nothing_else(document, routes):
    documented = set(_operations(document))
    undocumented = sorted(set(routes) - documented)
    unregistered = sorted(documented - set(routes))
    assert not undocumented, f"routes the app registers but openapi.yaml lacks: {undocumented}"
    assert not unregistered, f"operations in openapi.yaml the app does not register: {unregistered}"


def test_path_parameters_match_the_route_templates(document):
    for (path, method), operation in _operations(document).items():
        in_template = set(re.findall(r"\{([^}]+)\}", path))
        declared = [*document["paths"][path].get("parameters", []), *operation.get("parameters", [])]
        in_path = {p["name"] for p in declared if p.get("in") == "path"}
        assert in_path == in_template, f"{method.upper()} {path}"
        for parameter in declared:
            if parameter.get("in") == "path":
                assert parameter.get("required") is True


def test_security_follows_the_auth_level(document, routes):
    schemes = document["components"]["securitySchemes"]
    header, query = schemes["functionKey"], schemes["functionKeyQuery"]
    assert (header["type"], header["in"], header["name"]) == ("apiKey", "header", "x-functions-key")
    assert (query["type"], query["in"], query["name"]) == ("apiKey", "query", "code")
    for (path, method), operation in _operations(document).items():
        security = operation.get("security", document.get("security", []))
        level = routes.get((path, method))
        named = {name for requirement in security for name in requirement}
        if level == func.AuthLevel.ANONYMOUS:
            assert security == [], f"{method.upper()} {path} is anonymous"
        elif level is not None:
            assert named == KEY_SCHEMES, f"{method.upper()} {path} needs a function key"


def test_keyed_routes_document_rate_limits_and_unavailability(document):
    for (path, method), operation in _operations(document).items():
        if not operation.get("security", document.get("security", [])):
            continue
        responses = operation["responses"]
        assert {"429", "503"} <= set(responses), f"{method.upper()} {path}"
    limited = document["components"]["responses"]["RateLimited"]
    assert "Retry-After" in limited["headers"]


def test_every_operation_has_a_unique_id_and_documented_bodies(document):
    ids = [operation["operationId"] for operation in _operations(document).values()]
    assert len(ids) == len(set(ids))
    for (path, method), operation in _operations(document).items():
        for status, response in operation["responses"].items():
            if "$ref" in response:
                continue
            assert response.get("content"), f"{method.upper()} {path} {status} has no body described"


def test_the_route_serves_this_file_as_yaml():
    openapi_function.openapi_document.cache_clear()
    request = func.HttpRequest(method="GET", url="/api/openapi.yaml", body=b"")
    response = openapi_function.openapi_spec(request)
    assert response.status_code == 200
    assert response.mimetype == "application/yaml"
    assert response.get_body() == DOCUMENT.read_bytes()
    assert openapi_function.openapi_document() is openapi_function.openapi_document()  # read once
