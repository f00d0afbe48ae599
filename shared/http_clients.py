"""Outbound HTTP sessions and SDK transports that do not re-read the environment on every call.

`requests` with `trust_env` (its default, and azure-core's) looks up the proxy variables, `no_proxy`
and `~/.netrc` on every request: about a fifth of ingestion CPU in the devhost's profile. The
environment is read once here instead. Without a proxy variable or `NETRC` (the usual case, in
Azure and locally) sessions skip those lookups, so a `~/.netrc` file is not consulted (no call
here needs it), and a CA bundle variable, if set, is applied as the verify path; with a proxy
variable or `NETRC` they keep `requests`' own per-call behaviour, so `no_proxy` still works.
"""

from __future__ import annotations

import functools
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import requests
    from azure.core.pipeline.transport import RequestsTransport

PER_CALL_SETTINGS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NETRC")
CA_BUNDLE_SETTINGS = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")
POOL_CONNECTIONS = 32


def _environment(name: str) -> str:
    return os.environ.get(name) or os.environ.get(name.lower()) or ""


@functools.cache
def environment_needs_per_call_lookup() -> bool:
    """True when a proxy or netrc variable is set (read once per process)."""
    return any(_environment(name) for name in PER_CALL_SETTINGS)


@functools.cache
def ca_bundle() -> str | bool:
    """The CA bundle the environment names (as `requests` would pick it), else True (the default store)."""
    return next((value for value in map(_environment, CA_BUNDLE_SETTINGS) if value), True)


def direct_session() -> requests.Session:
    """A `requests` session that looks up proxy settings per call only if the environment has any."""
    import requests

    session = requests.Session()
    if not environment_needs_per_call_lookup():
        session.trust_env = False
        session.verify = ca_bundle()
    return session


def storage_transport(connection_timeout: float, read_timeout: float) -> RequestsTransport:
    """An azure-core transport for the storage clients, with their timeouts and the same environment rule.

    Its connection pool holds `POOL_CONNECTIONS` per host (requests keeps 10): one client is shared
    by every concurrent invocation (16 + 8 with host.json's batch settings), and a smaller pool
    closes and reopens connections under load. urllib3 retries stay off: the SDK retries itself.
    """
    import requests
    from azure.core.pipeline.transport import RequestsTransport
    from urllib3.util.retry import Retry

    per_call_lookup = environment_needs_per_call_lookup()
    session = requests.Session()
    session.trust_env = per_call_lookup
    adapter = requests.adapters.HTTPAdapter(
        pool_maxsize=POOL_CONNECTIONS, max_retries=Retry(total=False, redirect=False, raise_on_status=False)
    )
    for scheme in ("http://", "https://"):
        session.mount(scheme, adapter)
    options = {} if per_call_lookup else {"connection_verify": ca_bundle()}
    return RequestsTransport(
        session=session,
        session_owner=True,
        use_env_settings=per_call_lookup,
        connection_timeout=connection_timeout,
        read_timeout=read_timeout,
        **options,
    )
