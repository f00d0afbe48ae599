"""Azure's own Python worker accepts every function of the app, on the Python and worker production runs.

`make worker` (a prerequisite of `make test`) builds `.venv-worker/`: Python 3.13 found on the
machine, the app's runtime lock (`requirements.lock`, which pins `azure-functions-runtime`, the
worker Azure runs for Python 3.13+, and azure-functions 2.x). `tests/support/worker_index.py`
then indexes `function_app.py` in that venv with the worker's own code. A machine without
Python 3.13 fails here with what to install; it never skips.
"""

from __future__ import annotations

import json
import re
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
WORKER_VENV = REPO / ".venv-worker"
WORKER_PYTHON = WORKER_VENV / "bin" / "python"
INDEXER = REPO / "tests" / "support" / "worker_index.py"
REFUSED_APP = REPO / "tests" / "fixtures" / "worker_refused_app"
EXPECTED_FUNCTIONS = {
    "facebook_leads_webhook",
    "ingest_lead",
    "send_notification",
    "deliver",
    "ops_deliveries",
    "ops_replay_delivery",
    "ops_lead_stage",
    "poll_leads",
    "sweep_dead_letters",
    "flush_outbox",
    "daily_digest",
    "health",
    "health_db",
    "health_email",
    "health_facebook",
    "openapi_spec",
    "ops_erase_lead",
    "ops_failed_events",
    "ops_last_leads",
    "ops_leads",
    "ops_leads_csv",
    "ops_reconcile",
    "ops_reprocess",
    "stats",
    "stats_ingestion",
    "stats_notifications",
}


@cache
def index(app_dir: Path) -> dict[str, Any]:
    """The worker's report on `app_dir`, from a fresh interpreter in the worker's venv."""
    if not WORKER_PYTHON.is_file():
        pytest.fail(
            f"{WORKER_VENV.name}/ is missing: run `make worker` (part of `make test`), which needs Python 3.13 "
            "(pyenv or python3.13 on PATH; `python3 tests/support/worker_python.py` says what it finds)",
            pytrace=False,
        )
    run = subprocess.run(
        [str(WORKER_PYTHON), str(INDEXER), str(app_dir)],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "PYTHONDONTWRITEBYTECODE": "1"},
        check=False,
    )
    assert run.returncode == 0, f"the worker could not index {app_dir.name}:\n{run.stderr[-4000:]}"
    return json.loads(run.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def pinned_runtime() -> str:
    """The `azure-functions-runtime` version requirements.txt pins for Python 3.13+."""
    text = (REPO / "requirements.txt").read_text(encoding="utf-8")
    found = re.search(r"^azure-functions-runtime==([\w.]+)", text, re.MULTILINE)
    assert found, "requirements.txt pins no azure-functions-runtime"
    return found.group(1)


def test_the_worker_venv_is_python_313_with_the_pinned_worker_and_azure_functions_2():
    report = index(REPO)
    assert report["python"].startswith("3.13."), report["python"]
    assert report["azure_functions_runtime"] == pinned_runtime()
    assert report["azure_functions"].startswith("2."), report["azure_functions"]


def test_the_worker_refuses_no_function_of_the_app():
    assert index(REPO)["refused"] == {}


def test_the_worker_indexes_every_function_of_the_app():
    assert set(index(REPO)["indexed"]) == EXPECTED_FUNCTIONS


def test_the_worker_sees_the_queue_triggers_on_their_queues_through_the_host_storage_connection():
    indexed = index(REPO)["indexed"]
    for name, queue in (("ingest_lead", "leads-inbound"), ("send_notification", "notifications")):
        [trigger] = indexed[name]["bindings"]
        assert (trigger["type"], trigger["queueName"], trigger["connection"]) == (
            "queueTrigger",
            queue,
            "AzureWebJobsStorage",
        )


def test_a_function_the_worker_refuses_is_reported_with_the_workers_reason():
    report = index(REFUSED_APP)
    assert set(report["indexed"]) == {"fine"}
    assert set(report["refused"]) == {"unbound_parameter", "wrong_annotation"}
    assert "declared in Python but not in the function definition" in report["refused"]["unbound_parameter"]
