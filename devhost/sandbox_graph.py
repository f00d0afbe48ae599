"""The sandbox Graph API's public face: `SandboxGraph`, `serve`, `RunningSandbox`, and `python -m` entry.

The implementation lives in the `devhost.sandbox` package (state, routes, faults, WSGI, server);
this module keeps the documented import path and command working. A form takes any number of
test leads here, unlike Meta's one per form.
"""

from __future__ import annotations

from devhost.sandbox import (
    APP_NAME,
    DEFAULT_APP_ID,
    DEFAULT_PAGE_ID,
    FAULT_KINDS,
    ROUTE_KINDS,
    TOKEN_SCOPES,
    Fault,
    RunningSandbox,
    SandboxGraph,
    serve,
)
from devhost.sandbox.cli import main

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
    "main",
    "serve",
]

if __name__ == "__main__":
    raise SystemExit(main())
