"""`SandboxGraph`: the sandbox's in-memory state: pages, forms, leads, subscriptions and the Conversions
API events received, plus its token book, fault book and call meter.

Every method is thread-safe (a re-entrant lock here, one lock in each part), so the WSGI threads
and a test driving the same object directly never see a half-made change. Ids are stable: pages as configured, forms
`<page id>01`, `<page id>02`, …, and lead ids 16-digit numeric strings that only ever increase,
even across `reset()` and restarts (they start from the wall clock in milliseconds), so a lead
store that outlives the sandbox never sees an id twice.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from fakes.sandbox.errors import invalid_parameter
from fakes.sandbox.errors import object_not_found as not_found
from fakes.sandbox.faults import Fault, FaultBook
from fakes.sandbox.metering import CallMeter
from fakes.sandbox.paging import SortKey, TimeFilter, slice_newest_first
from fakes.sandbox.questions import dummy_answers, form_questions
from fakes.sandbox.records import LeadForm, StoredLead, normalise_disclaimers, normalise_field_data
from fakes.sandbox.tokens import APP_NAME, TokenBook

DEFAULT_PAGE_ID = "1000000000001"
DEFAULT_APP_ID = "1234567890"
FORM_CREATED_TIME = 1767225600  # 2026-01-01T00:00:00+0000


def _forms_of(page_id: str, count: int) -> list[LeadForm]:
    return [
        LeadForm(
            id=f"{page_id}{number:02d}",
            page_id=page_id,
            name=f"Sandbox Lead Form {number}",
            created_time=FORM_CREATED_TIME,
            questions=form_questions(f"{page_id}{number:02d}", number),
        )
        for number in range(1, count + 1)
    ]


class SandboxGraph:
    """In-memory Graph API state for a few pages, each with `forms_per_page` ACTIVE lead forms.

    `access_tokens` serve every page; `page_tokens` (page id → token) are Page tokens that serve
    only their page (`ValueError` for a page that is not configured).
    """

    def __init__(
        self,
        access_tokens: Iterable[str],
        app_id: str = DEFAULT_APP_ID,
        page_ids: Sequence[str] = (DEFAULT_PAGE_ID,),
        forms_per_page: int = 2,
        *,
        app_secret: str | None = None,
        subscribed: bool = False,
        clock: Callable[[], float] = time.time,
        page_tokens: Mapping[str, str] | None = None,
    ) -> None:
        self._lock = threading.RLock()
        self._clock = clock
        self.app_id = app_id
        self.app_secret = app_secret
        self.page_ids: tuple[str, ...] = tuple(page_ids) or (DEFAULT_PAGE_ID,)
        self._forms = {form.id: form for page in self.page_ids for form in _forms_of(page, forms_per_page)}
        self._initial_tokens = tuple([access_tokens] if isinstance(access_tokens, str) else access_tokens)
        self._initial_page_tokens = dict(page_tokens or {})
        unknown = sorted(set(self._initial_page_tokens) - set(self.page_ids))
        if unknown:
            raise ValueError(f"page tokens for pages that are not configured: {', '.join(unknown)}")
        self._initially_subscribed = subscribed
        self._last_lead_id = 0
        self._restore()

    def _restore(self) -> None:
        self._leads: dict[str, StoredLead] = {}
        self._subscriptions: dict[str, tuple[str, ...]] = (
            {page: ("leadgen",) for page in self.page_ids} if self._initially_subscribed else {}
        )
        self.tokens = TokenBook(
            self._initial_tokens, self.app_id, self.app_secret, self._clock, page_tokens=self._initial_page_tokens
        )
        self.meter = CallMeter()
        self.faults = FaultBook()
        self.short_pages: int | None = None
        self._capi_events: list[dict[str, Any]] = []

    # --- clock and ids -------------------------------------------------------------------------

    def now(self) -> float:
        """The sandbox's wall clock (epoch seconds); injectable for tests."""
        return self._clock()

    def _new_lead_id(self) -> str:
        self._last_lead_id = max(self._last_lead_id + 1, int(time.time() * 1000) * 1000)
        return str(self._last_lead_id)

    # --- auth, faults, counters (delegated to the token book, fault book and call meter) -------

    def authorize(self, token: str | None, *, app_token_ok: bool = False) -> None:
        """Return when `token` may call the Graph API; raise 190 (or 190/463 if expired) otherwise."""
        self.tokens.authorize(token, app_token_ok=app_token_ok)

    def authorize_page(self, token: str | None, page_id: str) -> None:
        """Return when `token` reaches the page's objects; 200 "Permissions error" for another page's Page token."""
        self.tokens.authorize_page(token, page_id)

    def set_tokens(self, valid: Iterable[str] | None = None, expired: Iterable[str] | None = None) -> None:
        """Replace the global tokens (when `valid` is given), then expire each of `expired` (global or Page) now.

        A Page token listed in `valid` is renewed and still serves only its page.
        """
        self.tokens.replace(valid, expired)

    def add_page_token(self, page_id: str, token: str) -> None:
        """Make `token` a valid Page token of `page_id` (renewing it if it had expired); 100/33 for an unknown page."""
        self.require_page(page_id, "post")
        self.tokens.add_page_token(page_id, token)

    def page_tokens(self) -> dict[str, str]:
        """Page id → its Page token, valid or expired."""
        return self.tokens.page_tokens()

    def debug_token(self, input_token: str) -> dict[str, Any]:
        """`GET /debug_token`'s `data`: a Page token (`PAGE`, `profile_id`), a global one (`SYSTEM_USER`), the app's."""
        return self.tokens.describe(input_token)

    def record_call(self, route: str) -> None:
        """Count one Graph call of this route kind (failed calls count too)."""
        self.meter.record(route)

    def calls(self) -> dict[str, int]:
        """Graph calls so far per route kind, plus `total` (which also counts unknown routes)."""
        return self.meter.counts()

    def usage(self) -> dict[str, int]:
        """The `X-App-Usage` percentages every answer carries."""
        return self.meter.usage()

    def add_fault_spec(self, spec: Mapping[str, Any]) -> Fault:
        """Inject a fault described like the control API's JSON; `ValueError` names a bad key."""
        return self.faults.add(spec)

    def add_fault(
        self,
        kind: str,
        *,
        count: int | None = None,
        seconds: float | None = None,
        route: str | None = None,
        code: int | None = None,
        subcode: int | None = None,
        delay: float | None = None,
        regain_minutes: int | None = None,
        page: str | None = None,
        token: str | None = None,
    ) -> Fault:
        """Inject a fault for the next `count` matching calls, for `seconds`, or until cleared.

        `page` limits it to calls on that page's objects, `token` to calls made with that token.
        """
        options = {
            "page": page,
            "token": token,
            "count": count,
            "seconds": seconds,
            "route": route,
            "code": code,
            "subcode": subcode,
            "delay": delay,
            "regain_minutes": regain_minutes,
        }
        return self.faults.add({"kind": kind, **{k: v for k, v in options.items() if v is not None}})

    def take_fault(self, route: str, page_id: str | None = None, token: str | None = None) -> Fault | None:
        """The first active fault matching this call, used up by one; None when the call runs normally."""
        return self.faults.take(route, page_id, token)

    def active_faults(self) -> list[dict[str, Any]]:
        """The faults still in force, oldest first."""
        return self.faults.active()

    def clear_faults(self) -> None:
        """Remove every fault; calls answer normally again."""
        self.faults.clear()

    def set_quirks(self, short_pages: int | None = None, usage: Mapping[str, int] | None = None) -> None:
        """Set (replacing both) the page-size cap on `/leads` pages and a fixed `X-App-Usage`."""
        if short_pages is not None and short_pages < 1:
            raise ValueError("short_pages must be at least 1")
        self.short_pages = short_pages
        self.meter.fix_usage(usage)

    def reset(self) -> None:
        """Back to the starting state: no leads, CAPI events, faults, quirks or counts; the configured tokens only."""
        with self._lock:
            self._restore()

    # --- pages and forms -----------------------------------------------------------------------

    def page_of(self, object_id: str | None) -> str:
        """The page an object belongs to (the first page when unknown), for usage headers."""
        if object_id is None:
            return self.page_ids[0]
        with self._lock:
            if object_id in self.page_ids:
                return object_id
            if object_id in self._forms:
                return self._forms[object_id].page_id
            if object_id in self._leads:
                return self._leads[object_id].page_id
        return self.page_ids[0]

    def owner_of(self, object_id: str) -> str | None:
        """The page a page, form or lead id belongs to; None when no such object exists."""
        with self._lock:
            if object_id in self.page_ids:
                return object_id
            if object_id in self._forms:
                return self._forms[object_id].page_id
            if object_id in self._leads:
                return self._leads[object_id].page_id
        return None

    def is_form(self, object_id: str) -> bool:
        """Whether the id is one of the forms."""
        return object_id in self._forms

    def form(self, form_id: str, method: str = "get") -> LeadForm:
        """The form with this id; 100/33 when there is none."""
        form = self._forms.get(form_id)
        if form is None:
            raise not_found(form_id, method)
        return form

    def require_page(self, page_id: str, method: str = "get") -> None:
        """Return when the page exists; 100/33 otherwise."""
        if page_id not in self.page_ids:
            raise not_found(page_id, method)

    def forms_of(self, page_id: str) -> list[tuple[LeadForm, int, int]]:
        """Each form of the page with its lead count and organic lead count."""
        self.require_page(page_id)
        with self._lock:
            rows = []
            for form in self._forms.values():
                if form.page_id == page_id:
                    leads = [lead for lead in self._leads.values() if lead.form_id == form.id]
                    rows.append((form, len(leads), sum(lead.is_organic for lead in leads)))
            return rows

    def form_with_counts(self, form_id: str) -> tuple[LeadForm, int, int]:
        """The form with its lead count and organic lead count; 100/33 when there is none."""
        form = self.form(form_id)
        with self._lock:
            leads = [lead for lead in self._leads.values() if lead.form_id == form.id]
        return form, len(leads), sum(lead.is_organic for lead in leads)

    # --- leads ---------------------------------------------------------------------------------

    def lead(self, lead_id: str) -> StoredLead:
        """The lead with this id; 100/33 when there is none."""
        with self._lock:
            lead = self._leads.get(lead_id)
        if lead is None:
            raise not_found(lead_id)
        return lead

    def form_leads(
        self,
        form_id: str,
        filters: Sequence[TimeFilter] = (),
        after: SortKey | None = None,
        size: int = 25,
        *,
        test_only: bool = False,
    ) -> tuple[list[StoredLead], bool]:
        """One newest-first page of the form's leads passing every filter, and whether more follow."""
        self.form(form_id)
        with self._lock:
            matching = [
                lead
                for lead in self._leads.values()
                if lead.form_id == form_id
                and (lead.is_test or not test_only)
                and all(f.accepts(lead.created_time) for f in filters)
            ]
        by_key = {lead.sort_key: lead for lead in matching}
        page = slice_newest_first(sorted(by_key, reverse=True), after, size)
        return [by_key[key] for key in page.keys], page.has_more

    def create_lead(
        self,
        form_id: str,
        field_data: Any = None,
        *,
        created_time: float | None = None,
        ad_id: str | None = None,
        ad_name: str | None = None,
        adset_id: str | None = None,
        adset_name: str | None = None,
        campaign_id: str | None = None,
        campaign_name: str | None = None,
        platform: str = "fb",
        custom_disclaimer_responses: Any = None,
        is_test: bool = False,
    ) -> str:
        """Store a lead on the form and return its new id; organic unless `ad_id` is given.

        Without `field_data` every question of the form gets a dummy answer, custom ones included.
        """
        form = self.form(form_id, "post")
        answers = normalise_field_data(dummy_answers(form.questions) if field_data is None else field_data)
        disclaimers = normalise_disclaimers(custom_disclaimer_responses)
        ad_fields = {
            "ad_id": ad_id,
            "ad_name": ad_name,
            "adset_id": adset_id,
            "adset_name": adset_name,
            "campaign_id": campaign_id,
            "campaign_name": campaign_name,
        }
        ad = {name: str(value) for name, value in ad_fields.items() if value is not None}
        if ad and "ad_id" not in ad:
            raise invalid_parameter("ad fields need an ad_id")
        with self._lock:
            lead = StoredLead(
                id=self._new_lead_id(),
                page_id=form.page_id,
                form_id=form.id,
                created_time=int(self.now() if created_time is None else created_time),
                field_data=answers,
                custom_disclaimer_responses=disclaimers,
                is_organic=not ad,
                platform=platform,
                is_test=is_test,
                ad=ad,
            )
            self._leads[lead.id] = lead
        return lead.id

    def create_test_lead(self, form_id: str, field_data: Any = None, custom_disclaimer_responses: Any = None) -> str:
        """A test lead created now, like `POST /{form-id}/test_leads`; every question dummy-answered when none given."""
        return self.create_lead(
            form_id, field_data, custom_disclaimer_responses=custom_disclaimer_responses, is_test=True
        )

    def all_leads(self) -> list[dict[str, Any]]:
        """Every lead with all its fields plus `page_id`, in creation order."""
        with self._lock:
            leads = sorted(self._leads.values(), key=lambda lead: int(lead.id))
        return [{**lead.graph_object(), "page_id": lead.page_id} for lead in leads]

    # --- subscriptions --------------------------------------------------------------------

    def subscribed_apps(self, page_id: str) -> list[dict[str, Any]]:
        """The apps installed on the page: this app with its fields, or nothing."""
        self.require_page(page_id)
        with self._lock:
            fields = self._subscriptions.get(page_id)
        if fields is None:
            return []
        return [{"id": self.app_id, "name": APP_NAME, "subscribed_fields": list(fields)}]

    def subscribe(self, page_id: str, fields: Sequence[str]) -> None:
        """Install the app on the page for these webhook fields."""
        self.require_page(page_id, "post")
        with self._lock:
            self._subscriptions[page_id] = tuple(fields)

    def unsubscribe(self, page_id: str) -> None:
        """Remove the app from the page; no webhooks would be sent."""
        self.require_page(page_id, "delete")
        with self._lock:
            self._subscriptions.pop(page_id, None)

    # --- Conversions API ------------------------------------------------------------------

    def record_capi_events(
        self, dataset_id: str, events: Sequence[Mapping[str, Any]], test_event_code: str | None = None
    ) -> int:
        """Keep a checked batch of CRM events sent to the dataset; how many there were."""
        stamped = [{**event, "dataset_id": dataset_id, "test_event_code": test_event_code} for event in events]
        with self._lock:
            self._capi_events.extend(stamped)
        return len(stamped)

    def capi_events(self, dataset_id: str | None = None) -> list[dict[str, Any]]:
        """Events received by `POST /{dataset-id}/events`, of one dataset or all, in arrival order.

        Each is the event as sent plus `dataset_id` and `test_event_code` (None when its batch had none).
        """
        with self._lock:
            return [dict(e) for e in self._capi_events if dataset_id is None or e["dataset_id"] == dataset_id]
