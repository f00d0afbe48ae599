"""The leads out again: a CSV of a time range (`GET /api/ops/leads.csv`) and JSON pages (`GET /api/ops/leads`).

The CSV is RFC 4180 (CRLF line ends, fields quoted only when they must be) in UTF-8 with a BOM, so
spreadsheet programs read it as UTF-8. Every cell that a spreadsheet would run as a formula (one
starting with `=`, `+`, `-`, `@`, a tab or a carriage return) is prefixed with `'` (OWASP's CSV
injection advice), header cells included.

Nothing here holds every lead: the store is read twice in key-set pages of `PAGE_SIZE`. The first
pass reads only the answers, to learn the question columns (what it keeps grows with the number of
distinct questions, not of leads); the second writes the rows, a page at a time, into a file. The
Functions HTTP response takes its body whole, so the route answers with the file's bytes at the end:
the file is a `SpooledTemporaryFile` kept in memory up to `SPOOL_BYTES` and on disk past that.

Each export, CSV or JSON page, leaves one `leads_exported` audit row: its range, form, format and
row count, never a lead's data.
"""

from __future__ import annotations

import base64
import binascii
import csv
import io
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from tempfile import SpooledTemporaryFile
from typing import IO, Any

from shared.models.fields import mapped_fields
from shared.ops.errors import OpsRefused
from shared.store import Store
from shared.store.backend import iso_utc
from shared.store.export import ANY_ID, NO_END, LeadExport, LeadRange, PagedLead, Position

PAGE_SIZE = 1_000
SPOOL_BYTES = 8 * 1024 * 1024
DEFAULT_DAYS = 30
DEFAULT_PAGE_LEADS = 100
MAX_PAGE_LEADS = 1_000
BOM = "\ufeff"
FIXED_COLUMNS = (
    "facebook_lead_id",
    "created_time",
    "page_id",
    "form_id",
    "ad_id",
    "source",
    "full_name",
    "email",
    "phone_number",
)
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
ANSWER_SEPARATOR = "; "
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NO_END_MILLIS = (NO_END - _EPOCH) // timedelta(milliseconds=1)
_CURSOR_TEXT = re.compile(r"[A-Za-z0-9_-]{1,64}")
_CURSOR_VALUE = re.compile(r"(\d{1,15}):(\d{1,19})")
_FORM_ID = re.compile(r"\d{1,64}")


@dataclass(frozen=True)
class CsvExport:
    """A finished CSV: its bytes (BOM first), a file name for `Content-Disposition`, and its row count."""

    body: bytes
    filename: str
    rows: int


@dataclass(frozen=True)
class Written:
    """What `write_leads_csv` wrote: the rows and the columns (header included)."""

    rows: int
    columns: tuple[str, ...]


def leads_csv(
    store: Store,
    since: str | None,
    until: str | None,
    form_id: str | None,
    mapping: Mapping[str, str],
    now: datetime | None = None,
) -> CsvExport:
    """The CSV of the leads created in `[since, until)` (default: the 30 days before now), audited once.

    `mapping` (`FIELD_MAP`: question key → name) adds one `mapped:<name>` column per name, each cell
    the lead's value for that name as `mapped_fields` gives it (as in `last-leads`). Raises
    `OpsRefused` for a time that is not ISO 8601, `since` not before `until`, or a form id that is
    not digits.
    """
    within = export_range(since, until, form_id, now or datetime.now(UTC))
    with SpooledTemporaryFile(max_size=SPOOL_BYTES) as spool:
        written = write_leads_csv(store, within, mapping, spool)
        spool.seek(0)
        body = spool.read()
    store.audit("leads_exported", None, _audit_detail("csv", within, written.rows))
    name = f"leads-{_compact(within.since)}-{_compact(within.until)}.csv"
    return CsvExport(body, name, written.rows)


def write_leads_csv(store: Store, within: LeadRange, mapping: Mapping[str, str], out: IO[bytes]) -> Written:
    """Write the CSV of `within` to `out` in two key-set passes; no more than one page of leads is held.

    The second pass stops at the highest row id the first saw, so a lead stored during the export is
    left for the next one rather than written under a header that lacks its questions. (Azure SQL
    numbers a row at its insert, not its commit: a lead committed during the first pass under a
    lower id can still come through, and an answer to a question the header lacks is then left out.)
    """
    reads = LeadExport(store.db)
    keys: set[str] = set()
    through = 0
    after = within.start
    while page := reads.answers_after(after, within, PAGE_SIZE):
        for answers in page:
            keys.update(answers.fields)
            through = max(through, answers.row_id)
        after = page[-1].position
    questions = sorted(keys)
    names = tuple(dict.fromkeys(mapping.values()))
    header = (*FIXED_COLUMNS, *(f"mapped:{name}" for name in names), *(f"question:{key}" for key in questions))
    lines = _Lines(out)
    out.write(BOM.encode("utf-8"))
    lines.write([header])
    rows = 0
    if through:
        snapshot = LeadRange(within.since, within.until, within.form_id, through)
        for leads in _pages(reads, snapshot):
            lines.write(_row(lead, mapping, names, questions) for lead in leads)
            rows += len(leads)
    return Written(rows, header)


def leads_page(
    store: Store,
    since: str | None,
    cursor: str | None,
    limit: str | None,
    field_map: Mapping[str, str] | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """`{"leads": [...], "next_cursor": ...}`: up to `limit` (1-1000, default 100) leads, oldest first.

    Leads created since `since` (default: 30 days ago), after the `cursor` a previous page gave, each
    in the ops shape with `mapped` by `field_map`.
    `next_cursor` is null when nothing follows yet. A lead stored later with a newer creation time
    comes after every cursor handed out, so following the cursors never repeats or skips a lead.
    Raises `OpsRefused` for a bad time, limit or cursor.
    """
    count = _page_limit(limit)
    start = _time("since", since) if since else (now or datetime.now(UTC)) - timedelta(days=DEFAULT_DAYS)
    within = LeadRange(start, NO_END, None, ANY_ID)
    after = max(decode_cursor(cursor), within.start) if cursor else within.start
    found = LeadExport(store.db).leads_after(after, within, count + 1)
    page, more = found[:count], len(found) > count
    store.audit("leads_exported", None, {**_audit_detail("json", within, len(page)), "cursor": bool(cursor)})
    following = encode_cursor(page[-1].position) if more else None
    return {"leads": [lead.ops_view(field_map) for lead in page], "next_cursor": following}


def export_range(since: str | None, until: str | None, form_id: str | None, now: datetime) -> LeadRange:
    """The range a request asks for: ISO 8601 times (UTC when no offset is given), digits for a form."""
    end = _time("until", until) if until else now
    start = _time("since", since) if since else end - timedelta(days=DEFAULT_DAYS)
    if start >= end:
        raise OpsRefused("since must be before until", since=iso_utc(start), until=iso_utc(end))
    if form_id and not (form_id.isascii() and _FORM_ID.fullmatch(form_id)):
        raise OpsRefused("form_id must be a form's id (digits only)")
    return LeadRange(start, end, form_id or None)


def neutralised(value: str) -> str:
    """`value` with a `'` in front when a spreadsheet would read it as a formula."""
    return "'" + value if value.startswith(FORMULA_STARTS) else value


def encode_cursor(position: Position) -> str:
    """An opaque cursor: base64url (no padding) of the position's creation time in ms and row id."""
    millis = (position.created_time - _EPOCH) // timedelta(milliseconds=1)
    return base64.urlsafe_b64encode(f"{millis}:{position.row_id}".encode("ascii")).decode("ascii").rstrip("=")


def decode_cursor(cursor: str) -> Position:
    """The position a cursor of `encode_cursor` names; `OpsRefused` for anything else."""
    refused = OpsRefused("cursor is not one this route gave; start again without it")
    if not (cursor.isascii() and _CURSOR_TEXT.fullmatch(cursor)):
        raise refused
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise refused from None
    value = _CURSOR_VALUE.fullmatch(text)
    if value is None:
        raise refused
    millis = int(value[1])
    if millis >= _NO_END_MILLIS:
        raise refused
    return Position(_EPOCH + timedelta(milliseconds=millis), int(value[2]))


class _Lines:
    """CSV lines of RFC 4180 written to a byte stream in UTF-8, a batch at a time."""

    def __init__(self, out: IO[bytes]) -> None:
        self._out = out
        self._text = io.StringIO()
        self._csv = csv.writer(self._text, lineterminator="\r\n", quoting=csv.QUOTE_MINIMAL)

    def write(self, rows: Any) -> None:
        self._csv.writerows([neutralised(cell) for cell in row] for row in rows)
        self._out.write(self._text.getvalue().encode("utf-8"))
        self._text.seek(0)
        self._text.truncate()


def _pages(reads: LeadExport, within: LeadRange) -> Iterator[list[PagedLead]]:
    after = within.start
    while page := reads.leads_after(after, within, PAGE_SIZE):
        yield page
        after = page[-1].position


def _row(lead: PagedLead, mapping: Mapping[str, str], names: tuple[str, ...], questions: list[str]) -> list[str]:
    fixed = [
        lead.facebook_lead_id,
        iso_utc(lead.created_time),
        lead.page_id,
        lead.form_id,
        lead.ad_id,
        lead.source,
        lead.full_name,
        lead.email,
        lead.phone_number,
    ]
    named = mapped_fields(lead.fields, mapping) if names else {}
    mapped = [named.get(name, "") for name in names]
    asked = [ANSWER_SEPARATOR.join(lead.fields.get(key, ())) for key in questions]
    return [value or "" for value in fixed] + mapped + asked


def _time(name: str, raw: str) -> datetime:
    try:
        value = datetime.fromisoformat(raw)
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except (ValueError, OverflowError):
        raise OpsRefused(f"{name} must be an ISO 8601 time, like 2026-11-01T00:00:00Z") from None
    if not _EPOCH <= value < NO_END:
        raise OpsRefused(f"{name} must be from 1970 to {NO_END.year}")
    return value


def _page_limit(raw: str | None) -> int:
    if not raw:
        return DEFAULT_PAGE_LEADS
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= MAX_PAGE_LEADS:
        raise OpsRefused(f"limit must be a whole number from 1 to {MAX_PAGE_LEADS}")
    return int(raw)


def _audit_detail(kind: str, within: LeadRange, rows: int) -> dict[str, Any]:
    until = None if within.until == NO_END else iso_utc(within.until)
    return {"format": kind, "since": iso_utc(within.since), "until": until, "form_id": within.form_id, "rows": rows}


def _compact(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
