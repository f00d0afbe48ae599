"""Azure SQL (T-SQL) statements and migrations; the same flow as SQLite, in SQL Server's dialect.

Statements that are portable are taken from the SQLite backend unchanged; the rest are written
here. Times are `DATETIME2(3)` in UTC, JSON is `NVARCHAR(MAX)`, ids are `NVARCHAR(64)`.
Conditional writes use `UPDLOCK, HOLDLOCK` (or `MERGE … WITH (HOLDLOCK)`) so they stay single,
race-free statements; the unique constraints remain the real guarantee.
"""

from __future__ import annotations

import dataclasses

from shared.store.base_types import Migration, Statements
from shared.store.sqlite import STATEMENTS as SQLITE_STATEMENTS

STATEMENTS: Statements = dataclasses.replace(
    SQLITE_STATEMENTS,
    ensure_migrations_table=(
        "IF OBJECT_ID(N'dbo.schema_migrations', N'U') IS NULL"
        " CREATE TABLE dbo.schema_migrations (version INT NOT NULL PRIMARY KEY, applied_at DATETIME2(3) NOT NULL)"
    ),
    last_leads=(
        "SELECT TOP (?) facebook_lead_id, page_id, form_id, ad_id, created_time, source, email, full_name,"
        " phone_number, fields_json FROM leads ORDER BY created_time DESC, id DESC"
    ),
    get_state="SELECT value FROM state WHERE [key] = ?",
    put_state=(
        "MERGE state WITH (HOLDLOCK) AS t USING (SELECT ? AS k, ? AS v, ? AS u) AS s ON t.[key] = s.k"
        " WHEN MATCHED THEN UPDATE SET value = s.v, updated_at = s.u"
        " WHEN NOT MATCHED THEN INSERT ([key], value, updated_at) VALUES (s.k, s.v, s.u);"
    ),
    acquire_lease=(
        "MERGE leases WITH (HOLDLOCK) AS t USING (SELECT ? AS name, ? AS owner, ? AS expires_at, ? AS now) AS s"
        " ON t.name = s.name"
        " WHEN MATCHED AND (t.expires_at < s.now OR t.owner = s.owner)"
        " THEN UPDATE SET owner = s.owner, expires_at = s.expires_at"
        " WHEN NOT MATCHED THEN INSERT (name, owner, expires_at) VALUES (s.name, s.owner, s.expires_at);"
    ),
    insert_poll_run=(
        "INSERT INTO poll_runs ([trigger], started_at, finished_at, window_start, window_end, forms_checked,"
        " leads_seen, missing_found, enqueued, graph_calls, duration_ms, error)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    ),
    list_failed_events=(
        "SELECT id, queue, stage, facebook_lead_id, error, attempts, first_failed_at, last_failed_at, status, payload"
        " FROM failed_events WHERE status = ? ORDER BY first_failed_at DESC, id DESC"
        " OFFSET 0 ROWS FETCH NEXT ? ROWS ONLY"
    ),
    latest_failed_event_for_lead=(
        "SELECT TOP (1) id, queue, stage, facebook_lead_id, error, attempts, first_failed_at, last_failed_at,"
        " status, payload FROM failed_events WHERE facebook_lead_id = ? ORDER BY id DESC"
    ),
    outbox_due=(
        "SELECT kind, notification_key FROM notification_outbox"
        " WHERE (status = 'pending' AND created_at < ?) OR (status = 'queued' AND queued_at < ?)"
        " ORDER BY id OFFSET 0 ROWS FETCH NEXT ? ROWS ONLY"
    ),
    pending_lead_notifications=(
        "SELECT TOP (?) o.notification_key, l.page_id, l.form_id FROM notification_outbox o"
        " JOIN leads l ON l.facebook_lead_id = o.notification_key"
        " WHERE o.kind = 'lead' AND o.status IN ('pending', 'queued') ORDER BY o.id"
    ),
    reserve_email_slot=(
        "INSERT INTO email_slots (token, kind, reserved_at) SELECT ?, ?, ?"
        " WHERE (SELECT COUNT(*) FROM email_slots WITH (UPDLOCK, HOLDLOCK) WHERE reserved_at > ?) < ?"
        " AND (SELECT COUNT(*) FROM email_slots WITH (UPDLOCK, HOLDLOCK) WHERE reserved_at > ?) < ?"
    ),
    reclaim_failed_notification=(
        "UPDATE notification_log SET status = 'claimed', claim_id = ?, claimed_at = ?, error = NULL"
        " WHERE notification_key = ? AND kind = ? AND channel = ?"
        " AND (status = 'failed' OR (status = 'claimed' AND claimed_at < ?))"
    ),
    leads_by_hour_between=(
        "SELECT CONVERT(CHAR(13), created_time, 126), COUNT(*) FROM leads WHERE created_time >= ? AND created_time < ?"
        " GROUP BY CONVERT(CHAR(13), created_time, 126)"
    ),
    leads_by_hour_and_source=(
        "SELECT CONVERT(CHAR(13), created_time, 126), source, COUNT(*) FROM leads"
        " WHERE created_time >= ? AND created_time < ? GROUP BY CONVERT(CHAR(13), created_time, 126), source"
    ),
)

ID = "NVARCHAR(64)"
TIME = "DATETIME2(3)"

MIGRATIONS = (
    Migration(
        1,
        (
            f"""CREATE TABLE leads (
                id BIGINT IDENTITY(1,1) NOT NULL CONSTRAINT pk_leads PRIMARY KEY,
                facebook_lead_id {ID} NOT NULL CONSTRAINT uq_leads_facebook_lead_id UNIQUE,
                page_id {ID} NULL, form_id {ID} NULL, ad_id {ID} NULL, ad_name NVARCHAR(400) NULL,
                adset_id {ID} NULL, adset_name NVARCHAR(400) NULL, campaign_id {ID} NULL,
                campaign_name NVARCHAR(400) NULL,
                created_time {TIME} NOT NULL,
                is_organic BIT NULL, platform NVARCHAR(32) NULL,
                source NVARCHAR(16) NOT NULL,
                email NVARCHAR(320) NULL, full_name NVARCHAR(400) NULL, phone_number NVARCHAR(64) NULL,
                fields_json NVARCHAR(MAX) NOT NULL,
                disclaimers_json NVARCHAR(MAX) NOT NULL,
                stored_at {TIME} NOT NULL
            )""",
            "CREATE INDEX ix_leads_created_time ON leads (created_time DESC, id DESC)",
            "CREATE INDEX ix_leads_source_stored ON leads (source, stored_at)",
            "CREATE INDEX ix_leads_form_created ON leads (form_id, created_time)",
            f"""CREATE TABLE raw_leads (
                id BIGINT IDENTITY(1,1) NOT NULL CONSTRAINT pk_raw_leads PRIMARY KEY,
                facebook_lead_id {ID} NOT NULL CONSTRAINT uq_raw_leads_facebook_lead_id UNIQUE,
                source NVARCHAR(16) NOT NULL,
                raw_event NVARCHAR(MAX) NULL,
                raw_graph NVARCHAR(MAX) NOT NULL,
                received_at {TIME} NOT NULL
            )""",
            f"""CREATE TABLE audit_log (
                id BIGINT IDENTITY(1,1) NOT NULL CONSTRAINT pk_audit_log PRIMARY KEY,
                at {TIME} NOT NULL,
                action NVARCHAR(64) NOT NULL,
                facebook_lead_id {ID} NULL,
                source NVARCHAR(16) NULL,
                detail NVARCHAR(MAX) NULL
            )""",
            "CREATE INDEX ix_audit_log_action_at ON audit_log (action, at)",
            "CREATE INDEX ix_audit_log_lead ON audit_log (facebook_lead_id)",
            f"""CREATE TABLE failed_events (
                id BIGINT IDENTITY(1,1) NOT NULL CONSTRAINT pk_failed_events PRIMARY KEY,
                queue NVARCHAR(64) NOT NULL,
                stage NVARCHAR(16) NOT NULL,
                facebook_lead_id {ID} NULL,
                error NVARCHAR(1000) NOT NULL,
                attempts INT NOT NULL,
                payload NVARCHAR(MAX) NULL,
                first_failed_at {TIME} NOT NULL,
                last_failed_at {TIME} NOT NULL,
                status NVARCHAR(16) NOT NULL CONSTRAINT df_failed_events_status DEFAULT 'open'
            )""",
            "CREATE INDEX ix_failed_events_status ON failed_events (status, first_failed_at)",
            f"""CREATE TABLE state (
                [key] NVARCHAR(200) NOT NULL CONSTRAINT pk_state PRIMARY KEY,
                value NVARCHAR(MAX) NOT NULL,
                updated_at {TIME} NOT NULL
            )""",
        ),
    ),
    Migration(
        2,
        (
            "ALTER TABLE failed_events ADD dead_letter_id NVARCHAR(64) NULL",
            "CREATE UNIQUE INDEX ux_failed_events_dead_letter ON failed_events (dead_letter_id)"
            " WHERE dead_letter_id IS NOT NULL",
            "CREATE INDEX ix_failed_events_first_failed ON failed_events (first_failed_at)",
            f"""CREATE TABLE leases (
                name NVARCHAR(100) NOT NULL CONSTRAINT pk_leases PRIMARY KEY,
                owner NVARCHAR(64) NOT NULL,
                expires_at {TIME} NOT NULL
            )""",
            f"""CREATE TABLE poll_runs (
                id BIGINT IDENTITY(1,1) NOT NULL CONSTRAINT pk_poll_runs PRIMARY KEY,
                [trigger] NVARCHAR(16) NOT NULL,
                started_at {TIME} NOT NULL,
                finished_at {TIME} NOT NULL,
                window_start {TIME} NULL,
                window_end {TIME} NULL,
                forms_checked INT NOT NULL,
                leads_seen INT NOT NULL,
                missing_found INT NOT NULL,
                enqueued INT NOT NULL,
                graph_calls INT NOT NULL,
                duration_ms INT NOT NULL,
                error NVARCHAR(1000) NULL
            )""",
            "CREATE INDEX ix_poll_runs_started ON poll_runs (started_at)",
        ),
    ),
    Migration(
        3,
        (
            f"""CREATE TABLE incidents (
                kind NVARCHAR(64) NOT NULL CONSTRAINT pk_incidents PRIMARY KEY,
                is_open BIT NOT NULL,
                opened_at {TIME} NOT NULL,
                resolved_at {TIME} NULL,
                detail NVARCHAR(MAX) NULL
            )""",
        ),
    ),
    Migration(
        4,
        (
            f"""CREATE TABLE notification_outbox (
                id BIGINT IDENTITY(1,1) NOT NULL CONSTRAINT pk_notification_outbox PRIMARY KEY,
                kind NVARCHAR(16) NOT NULL,
                notification_key NVARCHAR(200) NOT NULL,
                payload NVARCHAR(MAX) NULL,
                status NVARCHAR(16) NOT NULL CONSTRAINT df_outbox_status DEFAULT 'pending',
                created_at {TIME} NOT NULL,
                queued_at {TIME} NULL,
                CONSTRAINT uq_outbox_kind_key UNIQUE (kind, notification_key)
            )""",
            "CREATE INDEX ix_outbox_status_created ON notification_outbox (status, created_at)",
            f"""CREATE TABLE notification_log (
                id BIGINT IDENTITY(1,1) NOT NULL CONSTRAINT pk_notification_log PRIMARY KEY,
                notification_key NVARCHAR(200) NOT NULL,
                kind NVARCHAR(16) NOT NULL,
                channel NVARCHAR(16) NOT NULL,
                status NVARCHAR(16) NOT NULL,
                claim_id NVARCHAR(64) NOT NULL,
                claimed_at {TIME} NOT NULL,
                sent_at {TIME} NULL,
                provider_id NVARCHAR(400) NULL,
                group_size INT NULL,
                attempts INT NOT NULL CONSTRAINT df_notification_attempts DEFAULT 0,
                error NVARCHAR(1000) NULL,
                CONSTRAINT uq_notification_log UNIQUE (notification_key, kind, channel)
            )""",
            "CREATE INDEX ix_notification_log_claim ON notification_log (claim_id)",
            "CREATE INDEX ix_notification_log_status_sent ON notification_log (status, sent_at)",
            f"""CREATE TABLE email_slots (
                id BIGINT IDENTITY(1,1) NOT NULL CONSTRAINT pk_email_slots PRIMARY KEY,
                token NVARCHAR(64) NOT NULL,
                kind NVARCHAR(16) NOT NULL,
                reserved_at {TIME} NOT NULL
            )""",
            "CREATE INDEX ix_email_slots_reserved ON email_slots (reserved_at)",
            "CREATE INDEX ix_leads_stored_at ON leads (stored_at)",
        ),
    ),
    Migration(
        5,
        (
            "CREATE TABLE lead_counters (name NVARCHAR(100) NOT NULL CONSTRAINT pk_lead_counters PRIMARY KEY,"
            " value BIGINT NOT NULL)",
            "INSERT INTO lead_counters (name, value)"
            " SELECT CONCAT('source:', source), COUNT(*) FROM leads GROUP BY source",
            "INSERT INTO lead_counters (name, value)"
            " SELECT 'duplicates', COUNT(*) FROM audit_log WHERE action = 'duplicate'",
            f"""CREATE TABLE erased_leads (
                facebook_lead_id {ID} NOT NULL CONSTRAINT pk_erased_leads PRIMARY KEY,
                erased_at {TIME} NOT NULL
            )""",
            "CREATE INDEX ix_failed_events_lead ON failed_events (facebook_lead_id)",
        ),
    ),
    Migration(
        6,
        (
            f"""CREATE TABLE poll_queued (
                facebook_lead_id {ID} NOT NULL CONSTRAINT pk_poll_queued PRIMARY KEY,
                queued_at {TIME} NOT NULL
            )""",
            "CREATE INDEX ix_poll_queued_at ON poll_queued (queued_at)",
        ),
    ),
)
