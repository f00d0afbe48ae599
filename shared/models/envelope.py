"""The webhook envelope, parsed in two stages: `object`/`entry`/`changes`, then the leadgen value.

Ids arrive as JSON strings or numbers at Meta; both are accepted and kept as strings. A lead id
and a form id are digits only (`DigitsId`): anything else is not an id Meta issued, and the
change carrying it is dead-lettered with that reason.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, StrictStr


def _id_as_str(value: object) -> object:
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return value.strip()
    return value


def _digits_only(value: str) -> str:
    if not (value.isascii() and value.isdigit()):
        raise ValueError("a Graph id is digits only")
    return value


GraphId = Annotated[str, BeforeValidator(_id_as_str), Field(min_length=1, pattern=r"^[0-9A-Za-z_.-]+$")]
DigitsId = Annotated[str, BeforeValidator(_id_as_str), Field(min_length=1), AfterValidator(_digits_only)]


class Change(BaseModel):
    """One `changes[]` item; `value` stays untyped until the field is known to be `leadgen`."""

    model_config = ConfigDict(extra="allow", defer_build=True)

    field: StrictStr = ""
    value: Any = None


class Entry(BaseModel):
    """One `entry[]` item: usually one page, one or many changes, each validated on its own.

    `time` (when Meta sent the notification) is never used, so it is never a reason to refuse one.
    """

    model_config = ConfigDict(extra="allow", defer_build=True)

    id: Any = None
    time: Any = None
    changes: list[Any] = Field(default_factory=list)

    @property
    def page_id(self) -> str | None:
        """The entry's id when it can be a page id (the fallback for a change without `page_id`)."""
        value = _id_as_str(self.id)
        return value if isinstance(value, str) and value.isascii() and value.isdigit() else None


class WebhookEnvelope(BaseModel):
    """The whole POST body: `{"object": "page", "entry": [...]}`; entries are validated one by one."""

    model_config = ConfigDict(extra="allow", defer_build=True)

    object: StrictStr
    entry: list[Any] = Field(default_factory=list)


class LeadgenChange(BaseModel):
    """The `value` of a `leadgen` change: ids only, never the answers."""

    model_config = ConfigDict(extra="allow", defer_build=True)

    leadgen_id: DigitsId
    page_id: GraphId | None = None
    form_id: DigitsId | None = None
    ad_id: GraphId | None = None
    adgroup_id: GraphId | None = None
    created_time: int | None = None
