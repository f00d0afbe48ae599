"""Poll and reconcile: list each page's forms, read their leads by `time_created`, queue the missing.

Per form, the timer reads leads created after (checkpoint - overlap) and before (now - grace),
so leads still on their way through the webhook are left to it. Once an hour (and on demand) it
compares the whole reconciliation window instead. Every lead Meta has that the store does not is
queued on `leads-inbound` with `source=polling`, by its ids only (ingestion fetches the answers,
so none wait on a queue where an erasure cannot reach them). A form's
checkpoint moves only after its missing leads are on the queue; a lease stops overlapping runs.
A backlog on `leads-inbound` must not multiply itself: the grace is counted from the oldest
message still waiting there (for up to `MAX_BACKLOG_HOLD_SECONDS`), so leads whose webhook message
may be behind it are judged later; and a lead the poller queued less than `requeue_after` ago is
not queued again while its message waits. A lead whose dead letter is open is not queued again
either: it failed for good once, and reprocessing it is an operator's call.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from shared.errors import GraphThrottled, LeadAgentError, QueueUnavailable, TokenInvalid
from shared.graph.client import GraphClient
from shared.logs import get_logger
from shared.messaging.messages import LeadMessage
from shared.messaging.sender import QueueSender
from shared.models.forms import form_chosen
from shared.models.lead import parse_graph_time
from shared.monitoring.incidents import close_incident, open_incident
from shared.monitoring.meta_health import check_token, ensure_subscription, token_error
from shared.monitoring.token_state import IntegrationMonitor
from shared.poller.backfill import DAY_SECONDS, BackfillLimits, Gap, plan_poll
from shared.storage.names import LEADS_QUEUE
from shared.store import Store
from shared.store.coordination import PollRun

log = get_logger(__name__)

LEASE = "poller"
FORM_STATUSES = frozenset({"ACTIVE", "ARCHIVED"})
CHUNK_SECONDS = 24 * 3600
MAX_BACKLOG_HOLD_SECONDS = 3600
HELD_STATUSES = ("open", "resolved")  # a dead letter's status that keeps its lead off the queue
FORM_QUESTIONS_STATE = "form_questions"  # coordination state: chosen form id → its question keys


@dataclass(frozen=True)
class PollerConfig:
    """Timing of the safety net (all from settings)."""

    page_ids: tuple[str, ...]
    app_id: str = ""
    overlap_seconds: int = 300
    grace_seconds: int = 120
    window_hours: float = 24.0
    full_every_seconds: float = 3600.0
    lease_seconds: float = 240.0  # shorter than the 5-minute schedule; renewed per form and day read
    requeue_after_seconds: float = 1800.0
    first_run_hours: float = 24.0
    max_backfill_days: float = 90.0
    backfill_budget_seconds: float = 180.0  # a run starts no new day of reading after this; the next goes on
    forms_include: tuple[str, ...] = ()  # FACEBOOK_FORMS_INCLUDE: only these forms are polled (wins over exclude)
    forms_exclude: tuple[str, ...] = ()  # FACEBOOK_FORMS_EXCLUDE: these forms are never polled

    def form_chosen(self, form_id: str | None) -> bool:
        """Whether the poller reads `form_id` (`shared/models/forms.py`)."""
        return form_chosen(form_id, self.forms_include, self.forms_exclude)


@dataclass
class PollerDeps:
    """What a run needs; tests pass real parts (sandbox Graph, SQLite, Azurite)."""

    graph: GraphClient
    store: Store
    sender: QueueSender
    config: PollerConfig
    access_token: Callable[[], str]
    app_token: Callable[[], str]
    monitor: IntegrationMonitor | None = None
    clock: Callable[[], float] = time.time
    page_token: Callable[[str], str] | None = None  # a page's own token (the access token when it has none)


@dataclass
class RunReport:
    """A run's figures (returned by `POST /api/ops/reconcile` and kept in `poll_runs`)."""

    trigger: str
    forms_checked: int = 0
    leads_seen: int = 0
    missing_found: int = 0
    enqueued: int = 0
    already_queued: int = 0
    dead_lettered_held: int = 0
    graph_calls: int = 0
    complete: bool = True
    skipped: str | None = None
    error: str | None = None
    window_start: str | None = None
    window_end: str | None = None
    gap: dict[str, Any] | None = None
    token: dict[str, Any] | None = None
    page_tokens: dict[str, dict[str, Any]] = field(default_factory=dict)  # pages with their own token
    subscriptions: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _checkpoint_key(form_id: str) -> str:
    return f"checkpoint:{form_id}"


def poll_once(deps: PollerDeps, trigger: str = "timer") -> RunReport:
    """The timer's run: Meta health, then every form from its checkpoint, however old (capped), a day at a time.

    Hourly the run also covers the whole reconciliation window. After downtime longer than that
    window, the gap is in the report (`gap`), in the run record (`window_start`) and in a
    `backfill_gap` incident, which resolves on the first run after the backfill caught up.
    """
    report = RunReport(trigger=trigger)
    owner = uuid.uuid4().hex
    if not deps.store.coordination.try_acquire_lease(LEASE, owner, deps.config.lease_seconds):
        report.skipped = "another poll is running"
        return report
    with _leased_run(deps, report, owner) as started:
        pages = _meta_health(deps, report)
        if not pages:
            return report
        now = deps.clock()
        until = _until(deps, now)
        full = _full_reconcile_due(deps, now)
        forms = list(_forms(deps, report, pages))
        checkpoints = {form_id: _checkpoint(deps, form_id) for _, form_id in forms}
        log.info(
            "poller: checkpoints loaded",
            extra={
                "stage": "poll",
                "checkpoints": sum(c is not None for c in checkpoints.values()),
                "count": len(forms),
            },
        )
        plan = plan_poll(checkpoints, now, _limits(deps.config), full)
        if plan.gap is not None:
            _report_gap(deps, report, plan.gap)
        deadline = started + deps.config.backfill_budget_seconds
        for page_id, form_id in forms:
            reached = _poll_form(deps, report, owner, (page_id, form_id), plan.starts[form_id], until, deadline)
            checkpoints[form_id] = max(reached, checkpoints[form_id] or reached)
            if reached < until:
                report.complete = False  # out of budget: the next run goes on from the checkpoints
                break
        if plan.starts:
            report.window_start = _iso(min(plan.starts.values()))
            report.window_end = _iso(min(int(c) for c in checkpoints.values() if c is not None))
        if report.complete and full:
            deps.store.coordination.put_state("last_full_reconcile", {"at": now})
        if report.complete and plan.gap is None:
            close_incident(deps.store, "backfill_gap")
        close_incident(deps.store, "polling_failing")
    return report


def reconcile_window(deps: PollerDeps, hours: float, budget_seconds: float, trigger: str = "ops") -> RunReport:
    """On-demand reconciliation of the last `hours`, oldest day first, within `budget_seconds`.

    Checkpoints are left alone. When the budget runs out the report says `complete: false` and
    how far it got (`window_start`..`window_end`); call again for the rest.
    """
    report = RunReport(trigger=trigger)
    owner = uuid.uuid4().hex
    if not deps.store.coordination.try_acquire_lease(LEASE, owner, deps.config.lease_seconds):
        report.skipped = "another poll is running"
        report.complete = False
        return report
    with _leased_run(deps, report, owner, incomplete_on_error=True) as started:
        deadline = started + budget_seconds
        end = int(started - deps.config.grace_seconds)
        start = int(started - hours * 3600)
        report.window_start = _iso(start)
        pages = _meta_health(deps, report)
        if not pages:
            report.complete = False
            return report
        forms = list(_forms(deps, report, pages))
        chunk_start = start
        while chunk_start < end:
            chunk_end = min(end, chunk_start + CHUNK_SECONDS)
            deps.store.coordination.try_acquire_lease(LEASE, owner, deps.config.lease_seconds)  # renew
            for page_id, form_id in forms:
                _reconcile_form(deps, report, page_id, form_id, chunk_start - 1, chunk_end)
            report.window_end = _iso(chunk_end)
            chunk_start = chunk_end
            if chunk_start < end and deps.clock() > deadline:
                report.complete = False
                break
    return report


@contextmanager
def _leased_run(deps: PollerDeps, report: RunReport, owner: str, incomplete_on_error: bool = False) -> Iterator[float]:
    """Run the body under the lease `owner` holds; yields the run's start time.

    A token that dies during the run goes to the token incident, any other agent error to the
    `polling_failing` one, both into `report.error` (and mark the run incomplete when
    `incomplete_on_error`). Whatever happens, the run's figures are recorded and the lease released.
    """
    started = deps.clock()
    calls_before = deps.graph.calls_made
    try:
        yield started
    except TokenInvalid as exc:  # the token died during the run: the token incident, not a polling failure
        report.complete = False if incomplete_on_error else report.complete
        _token_invalid(deps, report, exc)
    except LeadAgentError as exc:
        report.complete = False if incomplete_on_error else report.complete
        _failed(deps, report, exc)
    finally:
        report.graph_calls = deps.graph.calls_made - calls_before
        _record(deps, report, started)
        deps.store.coordination.release_lease(LEASE, owner)


def _checkpoint(deps: PollerDeps, form_id: str) -> int | None:
    value = (deps.store.coordination.get_state(_checkpoint_key(form_id)) or {}).get("until")
    return None if value is None else int(value)


def _limits(config: PollerConfig) -> BackfillLimits:
    return BackfillLimits(
        overlap_seconds=config.overlap_seconds,
        window_seconds=config.window_hours * 3600,
        first_run_seconds=config.first_run_hours * 3600,
        max_backfill_seconds=config.max_backfill_days * DAY_SECONDS,
    )


def _poll_form(
    deps: PollerDeps, report: RunReport, owner: str, form: tuple[str, str], since: int, until: int, deadline: float
) -> int:
    """Read one form from `since` to `until` a day at a time, moving its checkpoint after each day.

    Returns how far it got: `until`, or less when the run's budget ran out first (the first day is
    always read, so every run makes progress). A checkpoint never moves back.
    """
    page_id, form_id = form
    after, reached = since, since
    while reached < until:
        if reached > since and deps.clock() > deadline:
            return reached
        chunk_end = min(until, reached + CHUNK_SECONDS)
        deps.store.coordination.try_acquire_lease(LEASE, owner, deps.config.lease_seconds)  # renew
        _reconcile_form(deps, report, page_id, form_id, after, chunk_end)
        checkpoint = _checkpoint(deps, form_id)
        if checkpoint is None or checkpoint < chunk_end:
            deps.store.coordination.put_state(_checkpoint_key(form_id), {"until": chunk_end})
        after, reached = chunk_end - 1, chunk_end
    return until


def _report_gap(deps: PollerDeps, report: RunReport, gap: Gap) -> None:
    """Put the outage's gap in the run report and raise the `backfill_gap` incident (its alert) once."""
    report.gap = gap.as_dict()
    log.warning("poller: backfilling a gap after downtime", extra={"stage": "poll", **report.gap})
    try:
        open_incident(deps.store, "backfill_gap", report.gap)
    except LeadAgentError:
        log.warning("poller: could not record the backfill incident")


def _meta_health(deps: PollerDeps, report: RunReport) -> tuple[str, ...]:
    """Each token's health, then each working page's subscription; the pages to poll (none: polling pauses).

    A page with its own token is checked on its own: a dead page token pauses and alerts that page only.
    """
    working: list[str] = []
    checked: dict[str | None, bool] = {}
    for page_id in deps.config.page_ids:
        scope = deps.monitor.scope_of(page_id) if deps.monitor is not None else None
        if scope not in checked:
            checked[scope] = _token_works(deps, report, scope, page_id)
        if checked[scope]:
            working.append(page_id)
    if not working:
        report.skipped = "token invalid: polling paused"
        return ()
    lost = []
    for page_id in working:
        subscription = ensure_subscription(deps.graph, page_id, deps.config.app_id)
        state = "restored" if subscription.restored else "subscribed" if subscription.subscribed else "not_subscribed"
        log.info(
            "poller: page subscription checked", extra={"stage": "meta_health", "page_id": page_id, "outcome": state}
        )
        report.subscriptions.append(subscription.as_dict())
        if subscription.restored:
            lost.append(page_id)
            deps.store.audit("subscription_restored", None, {"page_id": page_id})
            log.warning("poller: page subscription was missing and is restored", extra={"page_id": page_id})
    if lost:
        open_incident(deps.store, "subscription_lost", {"pages": lost, "restored": True})
    elif all(s["subscribed"] for s in report.subscriptions):
        close_incident(deps.store, "subscription_lost")
    return tuple(working)


def _token_works(deps: PollerDeps, report: RunReport, scope: str | None, page_id: str) -> bool:
    """`debug_token` for the shared token (scope None) or a page's own; records it; False when it is dead."""
    token = deps.access_token() if scope is None or deps.page_token is None else deps.page_token(page_id)
    try:
        status = check_token(deps.graph, token, deps.app_token())
    except TokenInvalid as exc:
        _token_invalid(deps, report, exc, scope)
        return False
    outcome = "valid" if status.valid else "invalid"
    log.info(
        "poller: token checked",
        extra={"stage": "meta_health", "outcome": outcome, "page_id": scope, "token_expires_at": status.expires_at},
    )
    key = "meta_token" if scope is None else f"meta_token:{scope}"
    deps.store.coordination.put_state(key, {**status.as_dict(), "checked_at": _iso(deps.clock())})
    if scope is None:
        report.token = status.as_dict()
    else:
        report.page_tokens[scope] = status.as_dict()
    if not status.valid:
        _token_invalid(deps, report, token_error(status), scope)
        return False
    if deps.monitor is not None:
        deps.monitor.token_ok(scope)
    return True


def _token_invalid(deps: PollerDeps, report: RunReport, exc: TokenInvalid, scope: str | None = None) -> None:
    dims = {"stage": "meta_health", "outcome": "invalid", "page_id": scope, "error_type": type(exc).__name__}
    log.warning("poller: token checked", extra=dims)
    whose = "" if scope is None else f" (page {scope}'s own token)"
    report.error = f"token invalid{whose}: {exc}"[:500]
    if scope is None:
        report.skipped = "token invalid: polling paused"
        report.token = {"valid": False, "error": str(exc)[:300]}
    else:
        report.page_tokens[scope] = {"valid": False, "error": str(exc)[:300]}
    if deps.monitor is not None:
        deps.monitor.token_invalid(exc, scope)


def _failed(deps: PollerDeps, report: RunReport, exc: LeadAgentError) -> None:
    report.error = f"{type(exc).__name__}: {exc}"[:500]
    log.warning("poller: run failed", extra={"stage": "poll", "outcome": "failed", "error_type": type(exc).__name__})
    if not isinstance(exc, GraphThrottled):
        try:
            open_incident(deps.store, "polling_failing", {"error_type": type(exc).__name__})
        except LeadAgentError:
            log.warning("poller: could not record the polling incident")


def _until(deps: PollerDeps, now: float) -> int:
    """The newest creation time this run judges: `grace` before now, or before the queue's oldest waiting message."""
    grace = deps.config.grace_seconds
    until = int(now - grace)
    try:
        front = deps.sender.oldest_waiting(LEADS_QUEUE)
    except QueueUnavailable:
        log.warning("poller: could not read the queue's front; judging with the plain grace")
        return until
    if front is None or front - grace >= until:
        return until
    held = max(int(front - grace), int(now - grace - MAX_BACKLOG_HOLD_SECONDS))
    if until - held > grace:  # a message older than the grace is waiting: ingestion is behind
        dims = {"stage": "poll", "held_back_seconds": until - held}
        log.info("poller: ingestion is behind; holding back", extra=dims)
    return held


def _full_reconcile_due(deps: PollerDeps, now: float) -> bool:
    last = (deps.store.coordination.get_state("last_full_reconcile") or {}).get("at")
    return last is None or now - float(last) >= deps.config.full_every_seconds


class FormListing(NamedTuple):
    """What `list_forms` found: the forms to poll, every form's name, the polled forms' question keys."""

    found: list[tuple[str, str]]  # (page id, form id) of every chosen form that can still hold new leads
    names: dict[str, str]  # every form's name, chosen or not (emails of older leads still show it)
    questions: dict[str, list[str]]  # chosen form id → its question keys, in the form's order


def list_forms(graph: GraphClient, page_ids: Iterable[str], chosen: Callable[[str], bool] | None = None) -> FormListing:
    """Graph only: every page's forms, with their names and question keys; forms not `chosen` are not polled.

    A page held back by its own rate limit is left out of this listing (the others are read); the next
    run reads it once its block has ended. A limit of the whole app still stops the run.
    """
    listing = FormListing([], {}, {})
    params = {"fields": "id,name,status,questions{key}", "limit": "100"}
    for page_id in page_ids:
        if graph.page_throttled(page_id):
            log.warning("poller: page rate limited, left for a later run", extra={"stage": "poll", "page_id": page_id})
            continue
        for form in graph.paged(f"{page_id}/leadgen_forms", params, page=page_id):
            if not form.get("id"):
                continue
            form_id = str(form["id"])
            listing.names[form_id] = str(form.get("name") or "")
            if chosen is not None and not chosen(form_id):
                continue
            listing.questions[form_id] = _question_keys(form.get("questions"))
            if str(form.get("status", "ACTIVE")).upper() in FORM_STATUSES:
                listing.found.append((page_id, form_id))
    return listing


def _question_keys(questions: object) -> list[str]:
    if not isinstance(questions, list):
        return []
    return [str(q["key"]) for q in questions if isinstance(q, dict) and q.get("key")]


def _forms(deps: PollerDeps, report: RunReport, pages: Sequence[str]) -> Iterable[tuple[str, str]]:
    """(page id, form id) of every chosen form of `pages` that can still hold new leads; names and questions kept.

    The names are for emails and the digest; the question keys (`form_questions`) let the health
    route say when `FIELD_MAP` names a question no form has.
    """
    listing = list_forms(deps.graph, pages, deps.config.form_chosen)
    report.forms_checked = len(listing.found)
    coordination = deps.store.coordination
    if listing.names and listing.names != coordination.get_state("forms"):
        coordination.put_state("forms", listing.names)
    if listing.questions and listing.questions != coordination.get_state(FORM_QUESTIONS_STATE):
        coordination.put_state(FORM_QUESTIONS_STATE, listing.questions)
    return listing.found


def _reconcile_form(
    deps: PollerDeps,
    report: RunReport,
    page_id: str,
    form_id: str,
    since: int,
    until: int,
) -> None:
    """Queue every lead of the form in (since, until) that the store lacks; raise before moving on if not."""
    leads = list(deps.graph.form_leads(form_id, since, until, page_id=page_id))
    report.leads_seen += len(leads)
    ids = [str(lead.get("id")) for lead in leads if lead.get("id")]
    stored = deps.store.leads.existing_lead_ids(ids)
    unstored = [lead for lead in leads if lead.get("id") and str(lead["id"]) not in stored]
    if not unstored:
        return
    now = datetime.fromtimestamp(deps.clock(), tz=UTC)
    keep_after = now - timedelta(seconds=deps.config.requeue_after_seconds)
    queued = deps.store.coordination.recently_polled([str(lead["id"]) for lead in unstored], keep_after)
    waiting = [lead for lead in unstored if str(lead["id"]) not in queued]
    report.already_queued += len(unstored) - len(waiting)
    held = _held_by_dead_letters(deps, [str(lead["id"]) for lead in waiting])
    missing = [lead for lead in waiting if str(lead["id"]) not in held]
    report.dead_lettered_held += len(held)
    report.missing_found += len(missing)
    if not missing:
        return
    texts = [_message_text(page_id, form_id, lead) for lead in missing]
    deps.sender.send_many(LEADS_QUEUE, texts)
    report.enqueued += len(texts)
    # Recorded after the messages are durable: a failure here costs one extra copy next run, never a lead.
    deps.store.coordination.record_polled([str(lead["id"]) for lead in missing], now, keep_after)
    log.info(
        "poller: queued leads the webhook missed",
        extra={"stage": "poll", "outcome": "enqueued", "form_id": form_id, "count": len(texts)},
    )


def _held_by_dead_letters(deps: PollerDeps, ids: list[str]) -> set[str]:
    """Which of `ids` already ended as a dead letter that is still open (or resolved by an operator).

    Queueing such a lead again would only fail again and add a dead letter every hour; it waits for
    `POST /api/ops/reprocess/{id}` instead, which marks its dead letter `reprocessed`.
    """
    return deps.store.failed_events.held_lead_ids(ids, HELD_STATUSES)


def _message_text(page_id: str, form_id: str, lead: dict[str, Any]) -> str:
    """The `leads-inbound` message for a lead Meta has and the store lacks: ids only, never answers."""
    created = parse_graph_time(lead.get("created_time"))
    message = LeadMessage(
        facebook_lead_id=str(lead["id"]),
        page_id=page_id,
        form_id=str(lead.get("form_id") or form_id),
        ad_id=str(lead["ad_id"]) if lead.get("ad_id") else None,
        created_time=int(created.timestamp()) if isinstance(created, datetime) else None,
        source="polling",
    )
    return message.to_text()


def _record(deps: PollerDeps, report: RunReport, started: float) -> None:
    if report.skipped and report.skipped.startswith("another"):
        return
    finished = deps.clock()
    try:
        deps.store.coordination.record_poll_run(
            PollRun(
                trigger=report.trigger,
                started_at=datetime.fromtimestamp(started, tz=UTC),
                finished_at=datetime.fromtimestamp(finished, tz=UTC),
                window_start=_parse(report.window_start),
                window_end=_parse(report.window_end),
                forms_checked=report.forms_checked,
                leads_seen=report.leads_seen,
                missing_found=report.missing_found,
                enqueued=report.enqueued,
                graph_calls=report.graph_calls,
                error=report.error,
            )
        )
    except LeadAgentError:
        log.warning("poller: run figures not recorded (store unavailable)")


def _parse(value: str | None) -> datetime | None:
    return None if value is None else datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
