"""Leads read out in key-set pages: the CSV export and the JSON pages of `GET /api/ops/leads`.

A page is the leads strictly after a `Position` (`created_time`, then the row `id`), oldest first,
within `[since, until)` and optionally one form, read with one indexed range query: no `OFFSET`
over rows already read, so page n costs what page 1 costs, and a lead inserted later with a newer
`created_time` (or the same one: its `id` is higher) lands after every position already handed
out, never in a page already read. T-SQL has no row-value comparison, so the position is spelled
`created_time > ? OR (created_time = ? AND id > ?)` on both engines; `LIMIT` becomes
`OFFSET 0 ROWS FETCH NEXT ? ROWS ONLY`, which keeps the limit the last parameter on both.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from shared.store.backend import Sql, columns
from shared.store.database import Database
from shared.store.leads import StoredLead

NO_END = datetime(9999, 12, 31, tzinfo=UTC)  # an `until` no lead reaches (DATETIME2 takes it)
ANY_ID = 2**63 - 1  # a `through_id` every row id is under (BIGINT's largest)


@dataclass(frozen=True, order=True)
class Position:
    """A place in the (`created_time`, `id`) order; `Position(t, 0)` is just before every lead created at `t`."""

    created_time: datetime
    row_id: int


@dataclass(frozen=True)
class LeadRange:
    """Leads created in `[since, until)`, of `form_id` when given, with a row id up to `through_id`."""

    since: datetime
    until: datetime = NO_END
    form_id: str | None = None
    through_id: int = ANY_ID

    @property
    def start(self) -> Position:
        return Position(self.since, 0)


@dataclass(frozen=True)
class PagedLead(StoredLead):
    """A stored lead with its row id, so the next page can start after it."""

    row_id: int = field(metadata={"column": "id"})

    @property
    def position(self) -> Position:
        return Position(self.created_time, self.row_id)


@dataclass(frozen=True)
class LeadAnswers:
    """Only what the export's first pass needs of a lead: where it is and its answers."""

    row_id: int = field(metadata={"column": "id"})
    created_time: datetime
    fields: dict[str, list[str]] = field(metadata={"column": "fields_json"})

    @property
    def position(self) -> Position:
        return Position(self.created_time, self.row_id)


_AFTER = "created_time >= ? AND created_time < ? AND (created_time > ? OR (created_time = ? AND id > ?)) AND id <= ?"


def _page(select: str, of_form: bool) -> Sql:
    where = f"WHERE {_AFTER}{' AND form_id = ?' if of_form else ''} ORDER BY created_time, id"
    return Sql(
        f"SELECT {select} FROM leads {where} LIMIT ?",  # noqa: S608 - column lists and conditions are ours
        mssql=f"SELECT {select} FROM leads {where} OFFSET 0 ROWS FETCH NEXT ? ROWS ONLY",  # noqa: S608
    )


LEADS_AFTER = {of_form: _page(columns(PagedLead), of_form) for of_form in (False, True)}
ANSWERS_AFTER = {of_form: _page(columns(LeadAnswers), of_form) for of_form in (False, True)}


class LeadExport:
    """Key-set pages of leads, whole or answers only; each page is its own short read."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def leads_after(self, after: Position, within: LeadRange, limit: int) -> list[PagedLead]:
        """At most `limit` leads of `within` strictly after `after`, oldest first (ties by row id)."""
        with self._db.read() as tx:
            return tx.all(PagedLead, LEADS_AFTER[within.form_id is not None], _params(after, within, limit))

    def answers_after(self, after: Position, within: LeadRange, limit: int) -> list[LeadAnswers]:
        """As `leads_after`, reading only the row id, the creation time and the answers."""
        with self._db.read() as tx:
            return tx.all(LeadAnswers, ANSWERS_AFTER[within.form_id is not None], _params(after, within, limit))


def _params(after: Position, within: LeadRange, limit: int) -> tuple[object, ...]:
    at = max(after, within.start)
    form = () if within.form_id is None else (within.form_id,)
    return (at.created_time, within.until, at.created_time, at.created_time, at.row_id, within.through_id, *form, limit)
