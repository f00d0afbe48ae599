"""A local stand-in for graph.facebook.com: leads in memory, Meta's shapes and errors, faults on demand.

It speaks `GET /{lead-id}`, `GET /{form-id}` (with its `questions`), `GET /{form-id}/leads`
(filtering on `time_created`, cursor paging), `GET /{page-id}/leadgen_forms`, `GET /debug_token`,
`GET|POST|DELETE /{page-id}/subscribed_apps`, `GET|POST /{form-id}/test_leads` and the Conversions
API's `POST /{dataset-id}/events` (CRM events checked against the Conversion Leads spec), with or
without a `/vNN.N` prefix, plus a control API under `/_sandbox/` (see `fakes.sandbox.control`).
Global tokens serve every page; a Page token serves only its page (`fakes.sandbox.tokens`). One
deliberate difference from Meta: a form takes any number of test leads (Meta allows one per form
until it is deleted).
"""

from __future__ import annotations

from fakes.sandbox.faults import FAULT_KINDS, ROUTE_KINDS, Fault
from fakes.sandbox.server import RunningSandbox, serve
from fakes.sandbox.state import DEFAULT_APP_ID, DEFAULT_PAGE_ID, SandboxGraph
from fakes.sandbox.tokens import APP_NAME, TOKEN_SCOPES

__all__ = [
    "APP_NAME",
    "DEFAULT_APP_ID",
    "DEFAULT_PAGE_ID",
    "FAULT_KINDS",
    "ROUTE_KINDS",
    "TOKEN_SCOPES",
    "Fault",
    "RunningSandbox",
    "SandboxGraph",
    "serve",
]
