"""Health checks: each check has `status`, `latency_ms` and a one-line reason; no internals or secrets."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from shared.errors import LeadAgentError
from shared.queues.names import LEADS_QUEUE
from shared.services import Services

Check = Callable[[], object]


def run_check(probe: Check) -> dict[str, Any]:
    """Run one probe; `ok` when it returns, `down` with the error class when it raises."""
    started = time.perf_counter()
    try:
        probe()
    except LeadAgentError as exc:
        return _result("down", started, f"{type(exc).__name__}")
    except Exception as exc:
        return _result("down", started, f"unexpected {type(exc).__name__}")
    return _result("ok", started, "reachable")


def _result(status: str, started: float, reason: str) -> dict[str, Any]:
    return {"status": status, "latency_ms": round((time.perf_counter() - started) * 1000, 1), "reason": reason}


def summarise(checks: Mapping[str, dict[str, Any]]) -> tuple[int, dict[str, Any]]:
    """HTTP status and body: 200 `ok` when every check is ok; 503 `degraded` or `down` otherwise."""
    failing = [name for name, check in checks.items() if check["status"] != "ok"]
    if not failing:
        status = "ok"
    elif len(failing) == len(checks):
        status = "down"
    else:
        status = "degraded"
    return (200 if status == "ok" else 503), {"status": status, "checks": dict(checks)}


def overall_health(services: Services) -> tuple[int, dict[str, Any]]:
    """The anonymous `/api/health`: can the webhook queue leads, can ingestion store them."""
    checks = {
        "queue": run_check(lambda: services.sender.ping(LEADS_QUEUE)),
        "database": run_check(lambda: services.store.ping()),
    }
    return summarise(checks)
