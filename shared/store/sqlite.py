"""SQLite backend: a WAL file, one connection per thread, `BEGIN IMMEDIATE` write transactions.

Safe with several processes writing at once: writers queue on SQLite's lock for up to the store
timeout; a database that cannot be opened or written raises `StoreUnavailable`.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from shared.errors import StoreUnavailable
from shared.store.base_types import Migration, Statements, StoreBackend

STATEMENTS = Statements(
    ensure_migrations_table=(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)"
    ),
    current_version="SELECT MAX(version) FROM schema_migrations",
    record_version="INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)",
    insert_lead=(
        "INSERT INTO leads (facebook_lead_id, page_id, form_id, ad_id, ad_name, adset_id, adset_name, campaign_id,"
        " campaign_name, created_time, is_organic, platform, source, email, full_name, phone_number, fields_json,"
        " disclaimers_json, stored_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    ),
    insert_raw_lead=(
        "INSERT INTO raw_leads (facebook_lead_id, source, raw_event, raw_graph, received_at) VALUES (?, ?, ?, ?, ?)"
    ),
    insert_audit="INSERT INTO audit_log (at, action, facebook_lead_id, source, detail) VALUES (?, ?, ?, ?, ?)",
    lead_exists=(
        "SELECT 1 FROM leads WHERE facebook_lead_id = ? UNION ALL SELECT 1 FROM erased_leads WHERE facebook_lead_id = ?"
    ),
    last_leads=(
        "SELECT facebook_lead_id, page_id, form_id, ad_id, created_time, source, email, full_name, phone_number,"
        " fields_json FROM leads ORDER BY created_time DESC, id DESC LIMIT ?"
    ),
    insert_failed_event=(
        "INSERT INTO failed_events (queue, stage, facebook_lead_id, error, attempts, payload, first_failed_at,"
        " last_failed_at, dead_letter_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
    ),
    ping="SELECT 1",
    get_state="SELECT value FROM state WHERE key = ?",
    put_state=(
        "INSERT INTO state (key, value, updated_at) VALUES (?, ?, ?)"
        " ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at"
    ),
    acquire_lease=(
        "INSERT INTO leases (name, owner, expires_at) VALUES (?, ?, ?)"
        " ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at"
        " WHERE leases.expires_at < ? OR leases.owner = excluded.owner"
    ),
    release_lease="DELETE FROM leases WHERE name = ? AND owner = ?",
    existing_lead_ids=(
        "SELECT facebook_lead_id FROM leads WHERE facebook_lead_id IN ({params})"
        " UNION SELECT facebook_lead_id FROM erased_leads WHERE facebook_lead_id IN ({params})"
    ),
    insert_poll_run=(
        "INSERT INTO poll_runs (trigger, started_at, finished_at, window_start, window_end, forms_checked,"
        " leads_seen, missing_found, enqueued, graph_calls, duration_ms, error)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    ),
    list_failed_events=(
        "SELECT id, queue, stage, facebook_lead_id, error, attempts, first_failed_at, last_failed_at, status, payload"
        " FROM failed_events WHERE status = ? ORDER BY first_failed_at DESC, id DESC LIMIT ?"
    ),
    get_failed_event=(
        "SELECT id, queue, stage, facebook_lead_id, error, attempts, first_failed_at, last_failed_at, status, payload"
        " FROM failed_events WHERE id = ?"
    ),
    set_failed_event_status="UPDATE failed_events SET status = ?, last_failed_at = ? WHERE id = ?",
    purge_failed_events="DELETE FROM failed_events WHERE first_failed_at < ?",
    lead_message_fields="SELECT page_id, form_id, ad_id FROM leads WHERE facebook_lead_id = ?",
    latest_failed_event_for_lead=(
        "SELECT id, queue, stage, facebook_lead_id, error, attempts, first_failed_at, last_failed_at, status, payload"
        " FROM failed_events WHERE facebook_lead_id = ? ORDER BY id DESC LIMIT 1"
    ),
    reopen_incident=(
        "UPDATE incidents SET is_open = 1, opened_at = ?, resolved_at = NULL, detail = ? WHERE kind = ? AND is_open = 0"
    ),
    insert_incident="INSERT INTO incidents (kind, is_open, opened_at, detail) VALUES (?, 1, ?, ?)",
    resolve_incident="UPDATE incidents SET is_open = 0, resolved_at = ? WHERE kind = ? AND is_open = 1",
    list_incidents="SELECT kind, is_open, opened_at, resolved_at, detail FROM incidents ORDER BY kind",
    insert_outbox="INSERT INTO notification_outbox (kind, notification_key, payload, created_at) VALUES (?, ?, ?, ?)",
    mark_outbox="UPDATE notification_outbox SET status = ?, queued_at = ? WHERE kind = ? AND notification_key = ?",
    mark_outbox_queued=(
        "UPDATE notification_outbox SET status = 'queued', queued_at = ?"
        " WHERE kind = ? AND notification_key = ? AND status IN ('pending', 'queued')"
    ),
    outbox_due=(
        "SELECT kind, notification_key FROM notification_outbox"
        " WHERE (status = 'pending' AND created_at < ?) OR (status = 'queued' AND queued_at < ?)"
        " ORDER BY id LIMIT ?"
    ),
    outbox_payload="SELECT payload, status FROM notification_outbox WHERE kind = ? AND notification_key = ?",
    reserve_email_slot=(
        "INSERT INTO email_slots (token, kind, reserved_at) SELECT ?, ?, ?"
        " WHERE (SELECT COUNT(*) FROM email_slots WHERE reserved_at > ?) < ?"
        " AND (SELECT COUNT(*) FROM email_slots WHERE reserved_at > ?) < ?"
    ),
    release_email_slot="DELETE FROM email_slots WHERE token = ?",
    recent_email_slots="SELECT reserved_at FROM email_slots WHERE reserved_at > ? ORDER BY reserved_at",
    notification_status=(
        "SELECT status, claim_id, claimed_at FROM notification_log"
        " WHERE notification_key = ? AND kind = ? AND channel = ?"
    ),
    insert_notification_claim=(
        "INSERT INTO notification_log (notification_key, kind, channel, status, claim_id, claimed_at)"
        " VALUES (?, ?, ?, 'claimed', ?, ?)"
    ),
    reclaim_failed_notification=(
        "UPDATE notification_log SET status = 'claimed', claim_id = ?, claimed_at = ?, error = NULL"
        " WHERE notification_key = ? AND kind = ? AND channel = ?"
        " AND (status = 'failed' OR (status = 'claimed' AND claimed_at < ?))"
    ),
    begin_send="UPDATE notification_log SET status = 'sending' WHERE claim_id = ? AND status = 'claimed'",
    take_over_stuck="DELETE FROM notification_log WHERE claim_id = ? AND status = 'sending'",
    release_notification_claim="DELETE FROM notification_log WHERE claim_id = ? AND status IN ('claimed', 'sending')",
    mark_claim_sent=(
        "UPDATE notification_log SET status = 'sent', sent_at = ?, provider_id = ?, group_size = ?"
        " WHERE claim_id = ? AND status = 'sending'"
    ),
    mark_notification_failed=(
        "UPDATE notification_log SET status = 'failed', error = ?, attempts = ?"
        " WHERE claim_id = ? AND notification_key = ? AND kind = ? AND channel = ?"
    ),
    pending_lead_notifications=(
        "SELECT o.notification_key, l.page_id, l.form_id FROM notification_outbox o"
        " JOIN leads l ON l.facebook_lead_id = o.notification_key"
        " WHERE o.kind = 'lead' AND o.status IN ('pending', 'queued') ORDER BY o.id LIMIT ?"
    ),
    recently_polled="SELECT facebook_lead_id FROM poll_queued WHERE queued_at >= ? AND facebook_lead_id IN ({params})",
    forget_polled="DELETE FROM poll_queued WHERE facebook_lead_id IN ({params})",
    insert_polled="INSERT INTO poll_queued (facebook_lead_id, queued_at) VALUES (?, ?)",
    prune_polled="DELETE FROM poll_queued WHERE queued_at < ?",
    count_pending_lead_notifications=(
        "SELECT COUNT(*) FROM notification_outbox WHERE kind = 'lead' AND status IN ('pending', 'queued')"
    ),
    lead_summaries=(
        "SELECT facebook_lead_id, created_time, source, page_id, form_id, ad_id, ad_name, adset_name, campaign_id,"
        " campaign_name, full_name, email, phone_number, fields_json, is_organic, platform, stored_at"
        " FROM leads WHERE facebook_lead_id IN ({params})"
    ),
    leads_by_source_between=(
        "SELECT source, COUNT(*) FROM leads WHERE created_time >= ? AND created_time < ? GROUP BY source"
    ),
    leads_by_form_between=(
        "SELECT form_id, COUNT(*) FROM leads WHERE created_time >= ? AND created_time < ? GROUP BY form_id"
    ),
    leads_by_hour_between=(
        "SELECT substr(created_time, 1, 13), COUNT(*) FROM leads WHERE created_time >= ? AND created_time < ?"
        " GROUP BY substr(created_time, 1, 13)"
    ),
    count_leads_between="SELECT COUNT(*) FROM leads WHERE created_time >= ? AND created_time < ?",
    count_audit_between="SELECT COUNT(*) FROM audit_log WHERE action = ? AND at >= ? AND at < ?",
    count_failed_by_status="SELECT COUNT(*) FROM failed_events WHERE status = ?",
    poll_runs_between=(
        "SELECT COUNT(*), COALESCE(SUM(missing_found), 0), COALESCE(SUM(enqueued), 0),"
        " COALESCE(SUM(CASE WHEN error IS NULL THEN 0 ELSE 1 END), 0)"
        " FROM poll_runs WHERE started_at >= ? AND started_at < ?"
    ),
    notifications_sent_between=(
        "SELECT COUNT(*) FROM notification_log WHERE status = 'sent' AND sent_at >= ? AND sent_at < ?"
    ),
    bump_counter="UPDATE lead_counters SET value = value + 1 WHERE name = ?",
    insert_counter="INSERT INTO lead_counters (name, value) VALUES (?, 1)",
    read_counters="SELECT name, value FROM lead_counters",
    # two subqueries: each MAX uses its own index (one SELECT with both aggregates scans every lead)
    last_lead_times="SELECT (SELECT MAX(created_time) FROM leads), (SELECT MAX(stored_at) FROM leads)",
    leads_by_hour_and_source=(
        "SELECT substr(created_time, 1, 13), source, COUNT(*) FROM leads"
        " WHERE created_time >= ? AND created_time < ? GROUP BY substr(created_time, 1, 13), source"
    ),
    leads_by_form_and_source=(
        "SELECT form_id, source, COUNT(*) FROM leads WHERE created_time >= ? AND created_time < ?"
        " GROUP BY form_id, source"
    ),
    count_failed_since="SELECT COUNT(*) FROM failed_events WHERE first_failed_at >= ? AND first_failed_at < ?",
    notification_figures=(
        "SELECT COUNT(DISTINCT claim_id), COALESCE(SUM(CASE WHEN kind = 'lead' THEN 1 ELSE 0 END), 0),"
        " COUNT(DISTINCT CASE WHEN group_size > 1 THEN claim_id END)"
        " FROM notification_log WHERE status = 'sent' AND sent_at >= ? AND sent_at < ?"
    ),
    notification_latencies=(
        "SELECT n.sent_at, l.stored_at FROM notification_log n JOIN leads l ON l.facebook_lead_id = n.notification_key"
        " WHERE n.kind = 'lead' AND n.status = 'sent' AND n.sent_at >= ? AND n.sent_at < ?"
    ),
    count_outbox_pending="SELECT COUNT(*) FROM notification_outbox WHERE status IN ('pending', 'queued')",
    count_notifications_failed="SELECT COUNT(*) FROM notification_log WHERE status = 'failed'",
    erase_lead="DELETE FROM leads WHERE facebook_lead_id = ?",
    erase_raw_lead="DELETE FROM raw_leads WHERE facebook_lead_id = ?",
    erase_failed_payloads="UPDATE failed_events SET payload = NULL WHERE facebook_lead_id = ? AND payload IS NOT NULL",
    insert_erasure="INSERT INTO erased_leads (facebook_lead_id, erased_at) VALUES (?, ?)",
)

MIGRATIONS = (
    Migration(
        1,
        (
            """CREATE TABLE leads (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                facebook_lead_id TEXT NOT NULL,
                page_id TEXT, form_id TEXT, ad_id TEXT, ad_name TEXT, adset_id TEXT, adset_name TEXT,
                campaign_id TEXT, campaign_name TEXT,
                created_time TEXT NOT NULL,
                is_organic INTEGER, platform TEXT,
                source TEXT NOT NULL,
                email TEXT, full_name TEXT, phone_number TEXT,
                fields_json TEXT NOT NULL,
                disclaimers_json TEXT NOT NULL,
                stored_at TEXT NOT NULL,
                CONSTRAINT uq_leads_facebook_lead_id UNIQUE (facebook_lead_id)
            )""",
            "CREATE INDEX ix_leads_created_time ON leads (created_time DESC, id DESC)",
            "CREATE INDEX ix_leads_source_stored ON leads (source, stored_at)",
            "CREATE INDEX ix_leads_form_created ON leads (form_id, created_time)",
            """CREATE TABLE raw_leads (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                facebook_lead_id TEXT NOT NULL,
                source TEXT NOT NULL,
                raw_event TEXT,
                raw_graph TEXT NOT NULL,
                received_at TEXT NOT NULL,
                CONSTRAINT uq_raw_leads_facebook_lead_id UNIQUE (facebook_lead_id)
            )""",
            """CREATE TABLE audit_log (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                at TEXT NOT NULL,
                action TEXT NOT NULL,
                facebook_lead_id TEXT,
                source TEXT,
                detail TEXT
            )""",
            "CREATE INDEX ix_audit_log_action_at ON audit_log (action, at)",
            "CREATE INDEX ix_audit_log_lead ON audit_log (facebook_lead_id)",
            """CREATE TABLE failed_events (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                queue TEXT NOT NULL,
                stage TEXT NOT NULL,
                facebook_lead_id TEXT,
                error TEXT NOT NULL,
                attempts INTEGER NOT NULL,
                payload TEXT,
                first_failed_at TEXT NOT NULL,
                last_failed_at TEXT NOT NULL,
                status TEXT NOT NULL DEFAULT 'open'
            )""",
            "CREATE INDEX ix_failed_events_status ON failed_events (status, first_failed_at)",
            """CREATE TABLE state (
                key TEXT PRIMARY KEY,
                value TEXT NOT NULL,
                updated_at TEXT NOT NULL
            )""",
        ),
    ),
    Migration(
        2,
        (
            "ALTER TABLE failed_events ADD COLUMN dead_letter_id TEXT",
            "CREATE UNIQUE INDEX ux_failed_events_dead_letter ON failed_events (dead_letter_id)"
            " WHERE dead_letter_id IS NOT NULL",
            "CREATE INDEX ix_failed_events_first_failed ON failed_events (first_failed_at)",
            """CREATE TABLE leases (
                name TEXT PRIMARY KEY,
                owner TEXT NOT NULL,
                expires_at TEXT NOT NULL
            )""",
            """CREATE TABLE poll_runs (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                trigger TEXT NOT NULL,
                started_at TEXT NOT NULL,
                finished_at TEXT NOT NULL,
                window_start TEXT,
                window_end TEXT,
                forms_checked INTEGER NOT NULL,
                leads_seen INTEGER NOT NULL,
                missing_found INTEGER NOT NULL,
                enqueued INTEGER NOT NULL,
                graph_calls INTEGER NOT NULL,
                duration_ms INTEGER NOT NULL,
                error TEXT
            )""",
            "CREATE INDEX ix_poll_runs_started ON poll_runs (started_at)",
        ),
    ),
    Migration(
        3,
        (
            """CREATE TABLE incidents (
                kind TEXT PRIMARY KEY,
                is_open INTEGER NOT NULL,
                opened_at TEXT NOT NULL,
                resolved_at TEXT,
                detail TEXT
            )""",
        ),
    ),
    Migration(
        4,
        (
            """CREATE TABLE notification_outbox (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                kind TEXT NOT NULL,
                notification_key TEXT NOT NULL,
                payload TEXT,
                status TEXT NOT NULL DEFAULT 'pending',
                created_at TEXT NOT NULL,
                queued_at TEXT,
                CONSTRAINT uq_outbox_kind_key UNIQUE (kind, notification_key)
            )""",
            "CREATE INDEX ix_outbox_status_created ON notification_outbox (status, created_at)",
            """CREATE TABLE notification_log (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                notification_key TEXT NOT NULL,
                kind TEXT NOT NULL,
                channel TEXT NOT NULL,
                status TEXT NOT NULL,
                claim_id TEXT NOT NULL,
                claimed_at TEXT NOT NULL,
                sent_at TEXT,
                provider_id TEXT,
                group_size INTEGER,
                attempts INTEGER NOT NULL DEFAULT 0,
                error TEXT,
                CONSTRAINT uq_notification_log UNIQUE (notification_key, kind, channel)
            )""",
            "CREATE INDEX ix_notification_log_claim ON notification_log (claim_id)",
            "CREATE INDEX ix_notification_log_status_sent ON notification_log (status, sent_at)",
            """CREATE TABLE email_slots (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                token TEXT NOT NULL,
                kind TEXT NOT NULL,
                reserved_at TEXT NOT NULL
            )""",
            "CREATE INDEX ix_email_slots_reserved ON email_slots (reserved_at)",
            "CREATE INDEX ix_leads_stored_at ON leads (stored_at)",
        ),
    ),
    Migration(
        5,
        (
            "CREATE TABLE lead_counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL)",
            "INSERT INTO lead_counters (name, value) SELECT 'source:' || source, COUNT(*) FROM leads GROUP BY source",
            "INSERT INTO lead_counters (name, value)"
            " SELECT 'duplicates', COUNT(*) FROM audit_log WHERE action = 'duplicate'",
            """CREATE TABLE erased_leads (
                facebook_lead_id TEXT PRIMARY KEY,
                erased_at TEXT NOT NULL
            )""",
            "CREATE INDEX ix_failed_events_lead ON failed_events (facebook_lead_id)",
        ),
    ),
    Migration(
        6,
        (
            """CREATE TABLE poll_queued (
                facebook_lead_id TEXT PRIMARY KEY,
                queued_at TEXT NOT NULL
            )""",
            "CREATE INDEX ix_poll_queued_at ON poll_queued (queued_at)",
        ),
    ),
)

_UNAVAILABLE = (sqlite3.OperationalError, sqlite3.DatabaseError)


class SqliteBackend(StoreBackend):
    """A SQLite file in WAL mode; creates its folder; one connection per thread."""

    statements = STATEMENTS
    migrations = MIGRATIONS

    def __init__(self, path: str, timeout_seconds: float = 15.0) -> None:
        self.path = path
        self._timeout = timeout_seconds
        self._local = threading.local()

    def _connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None:
            return conn
        try:
            if self.path != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=self._timeout, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute(f"PRAGMA busy_timeout={int(self._timeout * 1000)}")
        except (OSError, *_UNAVAILABLE) as exc:
            raise StoreUnavailable(f"SQLite {self.path} cannot be opened: {exc}") from exc
        self._local.conn = conn
        return conn

    def _drop_connection(self) -> None:
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            with suppress(sqlite3.Error):
                conn.close()

    @contextmanager
    def write(self) -> Iterator[sqlite3.Cursor]:
        conn = self._connection()
        try:
            conn.execute("BEGIN IMMEDIATE")
        except _UNAVAILABLE as exc:
            self._drop_connection()
            raise StoreUnavailable(f"SQLite {self.path} cannot be written: {exc}") from exc
        cur = conn.cursor()
        try:
            yield cur
            conn.execute("COMMIT")
        except BaseException as exc:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                self._drop_connection()
            if isinstance(exc, sqlite3.IntegrityError):
                raise
            if isinstance(exc, _UNAVAILABLE):
                raise StoreUnavailable(f"SQLite {self.path} write failed: {exc}") from exc
            raise
        finally:
            cur.close()

    @contextmanager
    def read(self) -> Iterator[sqlite3.Cursor]:
        conn = self._connection()
        cur = conn.cursor()
        try:
            yield cur
        except _UNAVAILABLE as exc:
            if isinstance(exc, sqlite3.IntegrityError):
                raise
            self._drop_connection()
            raise StoreUnavailable(f"SQLite {self.path} read failed: {exc}") from exc
        finally:
            cur.close()

    def is_duplicate_key(self, exc: BaseException) -> bool:
        return isinstance(exc, sqlite3.IntegrityError) and "UNIQUE" in str(exc)

    def to_db_time(self, value: datetime) -> Any:
        """Fixed-width ISO 8601 with milliseconds, so text order is time order."""
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:23] + "Z"

    def from_db_time(self, value: Any) -> datetime:
        text = str(value)
        pattern = "%Y-%m-%dT%H:%M:%S.%fZ" if "." in text else "%Y-%m-%dT%H:%M:%SZ"
        return datetime.strptime(text, pattern).replace(tzinfo=UTC)
