"""The poller's timer run, and what it does while the app is idle: ask Meta only.

While the app is idle (`shared/storage/idle.py`) the 5-minute run does not query the database.
It asks Meta what the full run would find: whether the token is valid, whether every page still
has our `leadgen` subscription, and whether any form has a lead created since the last full run
judged (`poll_probe` in the shared state table). Only when Meta shows something new, or once every
`IDLE_SQL_EVERY_MINUTES`, does the full run (`poll_once`, with its SQL lease, checkpoints, store
comparison and incidents) follow, in the same invocation. So a lead the webhook missed is still
queued within one poll, an expired token or a lost subscription still alerts within one poll,
and a quiet integration leaves a serverless database paused.
"""

from __future__ import annotations

from datetime import UTC, datetime

from shared.errors import LeadAgentError
from shared.logs import get_logger
from shared.monitoring.meta_health import check_token, is_subscribed
from shared.poller.reconcile import PollerDeps, RunReport, list_forms, poll_once
from shared.storage.idle import IdleGate
from shared.storage.state import SharedState

log = get_logger(__name__)

JOB = "poll_leads"
PROBE_KEY = "poll_probe"


def poll_on_timer(deps: PollerDeps, idle: IdleGate | None = None, state: SharedState | None = None) -> RunReport:
    """The timer's run: the full poll, unless the app is idle and Meta shows nothing new."""
    quiet = idle is not None and state is not None and idle.idle()
    if quiet and idle is not None and state is not None and not idle.sql_due(JOB):
        news = news_at_meta(deps, state)
        if news is None:
            return RunReport(trigger="timer", skipped="idle: nothing new at Meta")
        log.info("poller: idle, but Meta shows news; reconciling", extra={"stage": "poll", "outcome": news})
        idle.touch()
    started = deps.clock()
    report = poll_once(deps, trigger="timer")
    if quiet and idle is not None:
        idle.ran(JOB)  # after the run: an alert row it wrote is then flushed (shared/ops/outbox.py)
    if state is not None and report.complete and report.error is None and report.skipped is None:
        _remember_judged(state, report, int(started - deps.config.grace_seconds))
    return report


def news_at_meta(deps: PollerDeps, state: SharedState) -> str | None:
    """Graph only: None when the token is valid, every page subscribed and no lead is newer than the last run.

    Otherwise a short reason (`token`, `subscription`, `leads`, `no_baseline`, or the error's type), and
    the full run decides what it means. A quiet probe moves `poll_probe` forward.
    """
    try:
        probe = state.get_state(PROBE_KEY) or {}
        if "since" not in probe:
            return "no_baseline"
        since, until = int(probe["since"]), int(deps.clock() - deps.config.grace_seconds)
        if not check_token(deps.graph, deps.access_token(), deps.app_token()).valid:
            return "token"
        if not all(is_subscribed(deps.graph, page_id, deps.config.app_id) for page_id in deps.config.page_ids):
            return "subscription"
        for page_id, form_id in list_forms(deps.graph, deps.config.page_ids, deps.config.form_chosen).found:
            # `since` is a checkpoint: leads created before it were judged (the reads are exclusive at both ends)
            if until > since and any(True for _ in deps.graph.form_leads(form_id, since - 1, until, page_id=page_id)):
                return "leads"
        state.put_state(PROBE_KEY, {"since": max(since, until)})
    except LeadAgentError as exc:
        return type(exc).__name__
    return None


def _remember_judged(state: SharedState, report: RunReport, fallback: int) -> None:
    """After a complete run, the next idle probe looks for leads created after what this run judged."""
    judged = fallback
    if report.window_end is not None:
        judged = int(datetime.strptime(report.window_end, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp())
    try:
        state.put_state(PROBE_KEY, {"since": judged})
    except LeadAgentError:
        log.warning("poller: idle probe baseline not recorded (state table unavailable)")
