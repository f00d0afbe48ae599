"""The `/leads` edge's query language: `filtering` on `time_created`, `limit`, and opaque cursors.

A cursor encodes the sort key (created time, id) of a lead, so paging stays correct while new
leads arrive: they sort before the first page and never shift the pages a client is walking.
"""

from __future__ import annotations

import base64
import binascii
import json
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from fakes.sandbox.errors import invalid_parameter

DEFAULT_LIMIT = 25
MAX_LIMIT = 100
OPERATORS: dict[str, Callable[[int, int], bool]] = {
    "GREATER_THAN": operator.gt,
    "GREATER_THAN_OR_EQUAL": operator.ge,
    "LESS_THAN": operator.lt,
}
SortKey = tuple[int, int]


@dataclass(frozen=True)
class TimeFilter:
    """One `filtering` clause on `time_created` (epoch seconds)."""

    operator: str
    value: int

    def accepts(self, created_time: int) -> bool:
        """Whether a lead created at `created_time` passes this clause."""
        return OPERATORS[self.operator](created_time, self.value)


def _filter_value(raw: Any) -> int:
    if isinstance(raw, bool):
        raise ValueError
    if isinstance(raw, int | float):
        return int(raw)
    if isinstance(raw, str):
        return int(float(raw))
    raise ValueError


def parse_filtering(raw: str | None) -> list[TimeFilter]:
    """The clauses of a `filtering` parameter (all must hold); error 100 names what is wrong."""
    if raw is None or not raw.strip():
        return []
    try:
        clauses = json.loads(raw)
    except ValueError:
        raise invalid_parameter("param filtering must be a JSON array") from None
    if not isinstance(clauses, list):
        raise invalid_parameter("param filtering must be a JSON array")
    filters: list[TimeFilter] = []
    for clause in clauses:
        if not isinstance(clause, dict):
            raise invalid_parameter("param filtering must be an array of objects")
        if clause.get("field") != "time_created":
            raise invalid_parameter(f"Filtering field {clause.get('field')!r} is invalid; use time_created")
        if clause.get("operator") not in OPERATORS:
            raise invalid_parameter(f"Filtering operator {clause.get('operator')!r} is not supported")
        try:
            value = _filter_value(clause.get("value"))
        except ValueError:
            raise invalid_parameter("Filtering value must be a Unix timestamp in seconds") from None
        filters.append(TimeFilter(clause["operator"], value))
    return filters


def parse_limit(raw: str | None) -> int:
    """The page size: 25 when omitted, at most 100, at least 1; error 100 when not a number."""
    if raw is None or raw == "":
        return DEFAULT_LIMIT
    try:
        limit = int(raw)
    except ValueError:
        raise invalid_parameter("param limit must be an integer") from None
    return max(1, min(MAX_LIMIT, limit))


def encode_cursor(key: SortKey) -> str:
    """An opaque cursor for the position just at `key`."""
    return base64.urlsafe_b64encode(f"{key[0]}:{key[1]}".encode("ascii")).decode("ascii").rstrip("=")


def decode_cursor(cursor: str) -> SortKey:
    """The position a cursor stands for; error 100 when it is not one of ours."""
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
        created, lead_id = text.split(":")
        return (int(created), int(lead_id))
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise invalid_parameter("param after is not a valid cursor") from None


@dataclass(frozen=True)
class PageSlice:
    """One page of a newest-first listing: its keys and whether anything follows it."""

    keys: list[SortKey]
    has_more: bool


def slice_newest_first(keys: Sequence[SortKey], after: SortKey | None, size: int) -> PageSlice:
    """Up to `size` keys that sort after the cursor position, from keys already sorted newest first."""
    remaining = [key for key in keys if after is None or key < after]
    return PageSlice(keys=remaining[:size], has_more=len(remaining) > size)
