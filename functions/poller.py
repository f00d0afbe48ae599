"""Timers: the 5-minute poller (backfill, gap detection, Meta health) and the dead-letter sweep."""

from __future__ import annotations

import azure.functions as func

from shared.logs import get_logger, log_context
from shared.monitoring.dead_letter_watch import sweep_and_watch
from shared.poller.idle_probe import poll_on_timer
from wiring import get_services

bp = func.Blueprint()
log = get_logger(__name__)


@bp.function_name("poll_leads")
@bp.timer_trigger(arg_name="timer", schedule="%POLL_SCHEDULE%", run_on_startup=False, use_monitor=True)
def poll_leads(timer: func.TimerRequest, context: func.Context) -> None:
    """Queue every lead Meta has that the store lacks; check the token and page subscriptions."""
    with log_context(invocation_id=context.invocation_id, function="poll_leads"):
        _poll()


def _poll() -> None:
    services = get_services()
    report = poll_on_timer(services.poller_deps(), services.idle, services.state)
    log.info(
        "poll: done", extra={"stage": "poll", "outcome": report.skipped or report.error or "ok", **_figures(report)}
    )


@bp.function_name("sweep_dead_letters")
@bp.timer_trigger(arg_name="timer", schedule="30 */5 * * * *", run_on_startup=False, use_monitor=True)
def sweep_dead_letters(timer: func.TimerRequest) -> None:
    """Move poison-queue messages into failed_events; purge old rows; watch for piling failures and silence."""
    services = get_services()
    run = sweep_and_watch(services.sweep, services.watch, services.idle)
    services.rate_limiter.purge_expired()  # ended rate-limit windows (Table Storage); never raises
    open_count = None if run.watched is None else run.watched.dead_letters_open
    log.info("sweep: done", extra={"stage": "sweep", **run.swept.as_dict(), "dead_letters_open": open_count})


def _figures(report: object) -> dict[str, object]:
    names = ("forms_checked", "leads_seen", "missing_found", "enqueued", "already_queued", "graph_calls")
    return {name: getattr(report, name) for name in names}
