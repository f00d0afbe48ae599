"""The webhook envelope, parsed in two stages: `object`/`entry`/`changes`, then the leadgen value.

Ids arrive as JSON strings or numbers at Meta; both are accepted and kept as strings.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field


def _id_as_str(value: object) -> object:
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return value.strip()
    return value


GraphId = Annotated[str, BeforeValidator(_id_as_str), Field(min_length=1, pattern=r"^[0-9A-Za-z_.-]+$")]


class Change(BaseModel):
    """One `changes[]` item; `value` stays untyped until the field is known to be `leadgen`."""

    model_config = ConfigDict(extra="allow", defer_build=True)

    field: str = ""
    value: dict[str, Any] | None = None


class Entry(BaseModel):
    """One `entry[]` item: usually one page, one or many changes."""

    model_config = ConfigDict(extra="allow", defer_build=True)

    id: Annotated[str, BeforeValidator(_id_as_str)] = ""
    time: int | None = None
    changes: list[Change] = Field(default_factory=list)


class WebhookEnvelope(BaseModel):
    """The whole POST body: `{"object": "page", "entry": [...]}`."""

    model_config = ConfigDict(extra="allow", defer_build=True)

    object: str
    entry: list[Entry] = Field(default_factory=list)


class LeadgenChange(BaseModel):
    """The `value` of a `leadgen` change: ids only, never the answers."""

    model_config = ConfigDict(extra="allow", defer_build=True)

    leadgen_id: GraphId
    page_id: GraphId | None = None
    form_id: GraphId | None = None
    ad_id: GraphId | None = None
    adgroup_id: GraphId | None = None
    created_time: int | None = None
