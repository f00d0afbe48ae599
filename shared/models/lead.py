"""The lead as the Graph API returns it, and the normalised lead the store keeps."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from shared.models.envelope import GraphId

# Every field the ingestion asks Graph for; without an explicit list Graph returns only a few.
LEAD_FIELDS: tuple[str, ...] = (
    "id",
    "created_time",
    "field_data",
    "form_id",
    "ad_id",
    "ad_name",
    "adset_id",
    "adset_name",
    "campaign_id",
    "campaign_name",
    "is_organic",
    "platform",
    "custom_disclaimer_responses",
)


def _scalar_as_str(value: object) -> object:
    if isinstance(value, bool):
        return "1" if value else ""
    if isinstance(value, int | float):
        return str(value)
    return value


AnswerValue = Annotated[str, BeforeValidator(_scalar_as_str)]


class FieldDatum(BaseModel):
    """One answered question: `{"name": key, "values": [...]}`; values may be empty or several."""

    model_config = ConfigDict(defer_build=True)

    name: str = Field(min_length=1)
    values: list[AnswerValue] = Field(default_factory=list)

    @field_validator("values", mode="before")
    @classmethod
    def _none_is_empty(cls, value: object) -> object:
        return [] if value is None else value


class DisclaimerResponse(BaseModel):
    """A custom disclaimer checkbox; `is_checked` is `"1"` or `""` at Meta."""

    model_config = ConfigDict(extra="allow", defer_build=True)

    checkbox_key: str
    is_checked: AnswerValue | None = None


def parse_graph_time(value: object) -> object:
    """Graph sends `2015-02-28T08:49:14+0000`; epoch seconds are accepted too."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, tz=UTC)
    if isinstance(value, str):
        try:
            return datetime.strptime(value, "%Y-%m-%dT%H:%M:%S%z")
        except ValueError:
            return value
    return value


class GraphLead(BaseModel):
    """A lead fetched from `GET /{lead-id}`; ad fields are absent for organic and test leads."""

    model_config = ConfigDict(extra="allow", defer_build=True)

    id: GraphId
    created_time: Annotated[datetime, BeforeValidator(parse_graph_time)]
    field_data: list[FieldDatum] = Field(default_factory=list)
    form_id: GraphId | None = None
    ad_id: GraphId | None = None
    ad_name: str | None = None
    adset_id: GraphId | None = None
    adset_name: str | None = None
    campaign_id: GraphId | None = None
    campaign_name: str | None = None
    is_organic: bool | None = None
    platform: str | None = None
    custom_disclaimer_responses: list[DisclaimerResponse] = Field(default_factory=list)

    @field_validator("created_time")
    @classmethod
    def _aware_utc(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("created_time needs a UTC offset")
        return value.astimezone(UTC)


class NormalisedLead(BaseModel):
    """What the store keeps for one lead: ids, normalised contact fields and every answer."""

    model_config = ConfigDict(defer_build=True)

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
    fields: dict[str, list[str]]
    disclaimers: list[dict[str, Any]]
    webhook_received_at: datetime | None = None  # when our webhook took the change; None unless it came that way
