"""Leads: the exactly-once insert, the erasure tombstone, and the lead as the ops routes and emails read it.

Exactly-once is decided by one write: the insert into `leads`, guarded by the unique constraint
on `facebook_lead_id`. "Already there" is a normal, typed outcome (`AlreadyStored`), never an
exception that escapes. The raw event, the raw Graph response, the lead row, its audit row, its
counter and its outbox row commit in one transaction or not at all.

A lead is never refused for its size: every answer is kept whole in `fields_json`
(`NVARCHAR(MAX)`), and the normalised columns (name, email, phone, ad names) take the value cut to
the column's width.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from shared.models.fields import mapped_fields
from shared.store.audit import write_audit
from shared.store.backend import ID_CHUNK, DuplicateKey, Sql, Tx, columns, fit_text, iso_utc
from shared.store.database import Database
from shared.store.deliveries import DeliveryRouting, add_deliveries
from shared.store.schema import width


@dataclass(frozen=True)
class Stored:
    """The lead was new and is now committed."""

    facebook_lead_id: str


@dataclass(frozen=True)
class AlreadyStored:
    """The lead was stored before (or erased); nothing was written but the duplicate's audit row."""

    facebook_lead_id: str


StoreOutcome = Stored | AlreadyStored


@dataclass(frozen=True)
class StoredLead:
    """One row of `leads`; its fields, in order, are the table's lead columns (written once, here)."""

    facebook_lead_id: str
    page_id: str | None
    form_id: str | None
    ad_id: str | None
    ad_name: str | None
    adset_id: str | None
    adset_name: str | None
    campaign_id: str | None
    campaign_name: str | None
    created_time: datetime
    is_organic: bool | None
    platform: str | None
    source: str
    email: str | None
    full_name: str | None
    phone_number: str | None
    fields: dict[str, list[str]] = field(metadata={"column": "fields_json"})
    disclaimers: list[dict[str, Any]] = field(metadata={"column": "disclaimers_json"})
    stored_at: datetime
    webhook_received_at: datetime | None

    def ops_view(self, field_map: Mapping[str, str] | None = None) -> dict[str, Any]:
        """The shape of `GET /api/ops/last-leads` (DESIGN.md), deliveries and exports.

        `mapped` is computed now from `fields` and `field_map` (`FIELD_MAP`; built-in names without it).
        """
        return {
            "facebook_lead_id": self.facebook_lead_id,
            "page_id": self.page_id,
            "form_id": self.form_id,
            "ad_id": self.ad_id,
            "created_time": iso_utc(self.created_time),
            "source": self.source,
            "email": self.email,
            "full_name": self.full_name,
            "phone_number": self.phone_number,
            "fields": self.fields,
            "mapped": mapped_fields(self.fields, field_map or {}),
        }


@dataclass(frozen=True)
class Erasure:
    """What `erase_lead` did: rows changed per table; the tombstone is always there afterwards."""

    rows: dict[str, int]
    tombstoned: bool = True

    @property
    def erased(self) -> bool:
        """Whether any of the person's data was found and removed."""
        return any(self.rows.values())


@dataclass(frozen=True)
class LeadRouting:
    """Where a stored lead came from, to put it back on the queue."""

    page_id: str | None
    form_id: str | None
    ad_id: str | None


LEAD_COLUMNS = columns(StoredLead)
_TEXT_COLUMNS = ("ad_name", "adset_name", "campaign_name", "platform", "email", "full_name", "phone_number")
_PLACEHOLDERS = ", ".join("?" * len(LEAD_COLUMNS.split(", ")))
# The tombstone is checked inside the insert itself, so a delivery racing an erasure cannot store the
# person: on Azure SQL the key-range lock (UPDLOCK, HOLDLOCK) makes the erasure's tombstone insert wait
# for this transaction, or this insert wait for the erasure; SQLite's write lock serialises both.
INSERT_LEAD = Sql(
    f"INSERT INTO leads ({LEAD_COLUMNS}) SELECT {_PLACEHOLDERS}"  # noqa: S608
    " WHERE NOT EXISTS (SELECT 1 FROM erased_leads WHERE facebook_lead_id = ?)",
    mssql=f"INSERT INTO leads ({LEAD_COLUMNS}) SELECT {_PLACEHOLDERS}"  # noqa: S608
    " WHERE NOT EXISTS (SELECT 1 FROM erased_leads WITH (UPDLOCK, HOLDLOCK) WHERE facebook_lead_id = ?)",
)
INSERT_RAW = (
    "INSERT INTO raw_leads (facebook_lead_id, source, raw_event, raw_graph, received_at) VALUES (?, ?, ?, ?, ?)"
)
INSERT_OUTBOX = "INSERT INTO notification_outbox (kind, notification_key, payload, created_at) VALUES (?, ?, ?, ?)"
LEAD_EXISTS = (
    "SELECT 1 FROM leads WHERE facebook_lead_id = ? UNION ALL SELECT 1 FROM erased_leads WHERE facebook_lead_id = ?"
)
EXISTING_IDS = (
    "SELECT facebook_lead_id FROM leads WHERE facebook_lead_id IN ({params})"
    " UNION SELECT facebook_lead_id FROM erased_leads WHERE facebook_lead_id IN ({params})"
)
LAST_LEADS = Sql(
    f"SELECT {LEAD_COLUMNS} FROM leads ORDER BY created_time DESC, id DESC LIMIT ?",  # noqa: S608
    mssql=f"SELECT TOP (?) {LEAD_COLUMNS} FROM leads ORDER BY created_time DESC, id DESC",  # noqa: S608
)
LEADS_BY_ID = f"SELECT {LEAD_COLUMNS} FROM leads WHERE facebook_lead_id IN ({{params}})"  # noqa: S608
ROUTING = "SELECT page_id, form_id, ad_id FROM leads WHERE facebook_lead_id = ?"
BUMP_COUNTER = "UPDATE lead_counters SET value = value + 1 WHERE name = ?"
INSERT_COUNTER = "INSERT INTO lead_counters (name, value) VALUES (?, 1)"
ERASE = (
    ("leads", "DELETE FROM leads WHERE facebook_lead_id = ?"),
    ("raw_leads", "DELETE FROM raw_leads WHERE facebook_lead_id = ?"),
    ("failed_events", "UPDATE failed_events SET payload = NULL WHERE facebook_lead_id = ? AND payload IS NOT NULL"),
    (
        "notification_outbox",
        "UPDATE notification_outbox SET status = 'erased'"
        " WHERE kind = 'lead' AND notification_key = ? AND status IN ('pending', 'queued')",
    ),
)
INSERT_ERASURE = "INSERT INTO erased_leads (facebook_lead_id, erased_at) VALUES (?, ?)"


class LeadsStore:
    """store_lead, has_lead, erase, and the lead read back for the ops routes, emails and reprocess."""

    def __init__(self, db: Database, routing: DeliveryRouting | None = None) -> None:
        self._db = db
        self._routing = routing or DeliveryRouting()

    def store_lead(
        self,
        lead: Any,
        raw_event: dict[str, Any] | None,
        raw_graph: dict[str, Any],
        audit_detail: dict[str, Any] | None = None,
        notify: bool = False,
    ) -> StoreOutcome:
        """Store a `NormalisedLead` with its raw event, raw Graph answer and an audit row, atomically.

        At most one row per `facebook_lead_id`, whatever the concurrency: a second attempt
        returns `AlreadyStored` and records a `duplicate` audit row instead.
        """
        now = datetime.now(UTC)
        values = [_insert_value(lead, name, now) for name in LEAD_COLUMNS.split(", ")]
        with self._db.write() as tx:
            try:
                inserted = tx.execute(INSERT_LEAD, (*values, lead.facebook_lead_id)) > 0
            except DuplicateKey:
                inserted = False
            if not inserted:  # stored before, or erased: nothing of the person is written
                _record_duplicate(tx, lead.facebook_lead_id, lead.source, audit_detail, now)
                return AlreadyStored(lead.facebook_lead_id)
            raw = None if raw_event is None else json.dumps(raw_event, ensure_ascii=False)
            tx.execute(INSERT_RAW, (lead.facebook_lead_id, lead.source, raw, json.dumps(raw_graph), now))
            write_audit(tx, "stored", lead.facebook_lead_id, lead.source, audit_detail, now)
            _bump(tx, f"source:{lead.source}")
            if notify:  # the outbox row commits with the lead: no lead is left unannounced
                tx.execute(INSERT_OUTBOX, ("lead", lead.facebook_lead_id, None, now))
            # and so do its deliveries to the team's endpoints and chats (built from the row when sent)
            add_deliveries(tx, self._routing.lead, "lead", lead.facebook_lead_id, None, now)
        return Stored(lead.facebook_lead_id)

    def record_duplicate(self, facebook_lead_id: str, source: str, detail: dict[str, Any] | None = None) -> None:
        """Audit a delivery of a lead that is already stored (counted as `duplicates_ignored`)."""
        with self._db.write() as tx:
            _record_duplicate(tx, facebook_lead_id, source, detail, datetime.now(UTC))

    def has_lead(self, facebook_lead_id: str) -> bool:
        """Whether the lead is stored or erased (a hint to skip a Graph call; the insert still decides)."""
        with self._db.read() as tx:
            return tx.value(int, LEAD_EXISTS, (facebook_lead_id, facebook_lead_id)) is not None

    def existing_lead_ids(self, ids: Sequence[str]) -> set[str]:
        """Which of `ids` are stored or erased (unique-index lookups, 500 at a time)."""
        return ids_found(self._db, EXISTING_IDS, ids, lambda chunk: (*chunk, *chunk))

    def lead_routing(self, facebook_lead_id: str) -> LeadRouting | None:
        """The page, form and ad ids of a stored lead (to re-queue it), or None."""
        with self._db.read() as tx:
            return tx.one(LeadRouting, ROUTING, (facebook_lead_id,))

    def last_leads(self, limit: int) -> list[StoredLead]:
        """The newest `limit` leads by creation time."""
        with self._db.read() as tx:
            return tx.all(StoredLead, LAST_LEADS, (limit,))

    def leads(self, ids: Sequence[str]) -> list[StoredLead]:
        """Stored leads among `ids` (in no particular order)."""
        found: list[StoredLead] = []
        unique = list(dict.fromkeys(ids))
        with self._db.read() as tx:
            for start in range(0, len(unique), ID_CHUNK):
                chunk = unique[start : start + ID_CHUNK]
                found += tx.all(StoredLead, LEADS_BY_ID.format(params=", ".join("?" * len(chunk))), chunk)
        return found

    def erase_lead(self, facebook_lead_id: str) -> Erasure:
        """Remove one person's data everywhere; keep a tombstone and an audit row without PII.

        The tombstone goes in first and always, even when the lead has not arrived yet, so a late
        webhook, a retry or the poller never stores the person again (the insert checks it). The
        lead and raw rows are deleted, dead-letter payloads emptied, and the lead's pending email
        closed (`erased`) so the outbox flush never re-queues it.
        """
        now = datetime.now(UTC)
        with self._db.write() as tx:
            with suppress(DuplicateKey):  # erased before: the tombstone stands
                tx.execute(INSERT_ERASURE, (facebook_lead_id, now))
            erasure = Erasure({table: tx.execute(statement, (facebook_lead_id,)) for table, statement in ERASE})
            write_audit(tx, "erased", facebook_lead_id, None, {"rows": erasure.rows}, now)
        return erasure


def ids_found(db: Database, statement: str, ids: Sequence[str], params: Any = tuple) -> set[str]:
    """The first column of `statement`'s rows for `ids`, asked 500 ids at a time.

    `statement` holds an `{params}` placeholder list; `params` turns a chunk into its parameters.
    """
    found: set[str] = set()
    unique = list(dict.fromkeys(ids))
    with db.read() as tx:
        for start in range(0, len(unique), ID_CHUNK):
            chunk = unique[start : start + ID_CHUNK]
            found.update(
                row.value for row in tx.all(_Id, statement.format(params=", ".join("?" * len(chunk))), params(chunk))
            )
    return found


@dataclass(frozen=True)
class _Id:
    value: str


def _insert_value(lead: Any, name: str, now: datetime) -> Any:
    if name == "stored_at":
        return now
    if name == "fields_json":
        return json.dumps(lead.fields, ensure_ascii=False)
    if name == "disclaimers_json":
        return json.dumps(lead.disclaimers, ensure_ascii=False)
    value = getattr(lead, name)
    return fit_text(value, width("leads", name)) if name in _TEXT_COLUMNS else value


def _record_duplicate(tx: Tx, lead_id: str, source: str, detail: dict[str, Any] | None, now: datetime) -> None:
    write_audit(tx, "duplicate", lead_id, source, detail, now)
    _bump(tx, "duplicates")


def _bump(tx: Tx, name: str) -> None:
    """Add one to a running counter in the same transaction (stats stay O(1) at a million leads)."""
    if tx.execute(BUMP_COUNTER, (name,)) == 0:
        try:
            tx.execute(INSERT_COUNTER, (name,))
        except DuplicateKey:
            tx.execute(BUMP_COUNTER, (name,))
