"""The sandbox's stored objects (leads and lead forms) and how each renders as a Graph API node.

Rendering follows Meta: only the requested fields plus `id`, a small default set when `fields`
is omitted, an error for a field the node type does not have, and ad-level fields absent (not
null) on organic and test leads.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from fakes.sandbox.errors import invalid_parameter, unknown_field
from fakes.sandbox.questions import QUESTION_FIELDS

GRAPH_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S+0000"
AD_FIELDS = ("ad_id", "ad_name", "adset_id", "adset_name", "campaign_id", "campaign_name")
LEAD_FIELDS = frozenset(
    {
        "id",
        "created_time",
        *AD_FIELDS,
        "form_id",
        "field_data",
        "custom_disclaimer_responses",
        "is_organic",
        "platform",
        "partner_name",
        "retailer_item_id",
        "home_listing",
        "vehicle",
        "post",
        "post_submission_check_result",
    }
)
LEAD_DEFAULT_FIELDS = ("id", "created_time")
FORM_FIELDS = frozenset(
    {"id", "name", "status", "locale", "created_time", "leads_count", "page_id", "questions", "organic_leads_count"}
)
FORM_DEFAULT_FIELDS = ("id", "name", "status", "locale", "created_time", "leads_count")


def graph_time(epoch: float) -> str:
    """An epoch instant as the Graph API writes it: `2026-01-31T08:49:14+0000` (UTC)."""
    return time.strftime(GRAPH_TIME_FORMAT, time.gmtime(int(epoch)))


def parse_field_tree(raw: str | None) -> dict[str, list[str] | None] | None:
    """The top-level names in a `fields` parameter, each with its `{…}` sub-selection (None without one).

    `a,b{c,d{e}},f` gives `{"a": None, "b": ["c", "d"], "f": None}`; None when `fields` is omitted.
    """
    if raw is None or not raw.strip():
        return None
    tree: dict[str, list[str] | None] = {}
    depth = 0
    name = inner = ""
    has_inner = False

    def close() -> None:
        if name.strip():
            tree[name.strip()] = parse_fields(inner) if has_inner else None

    for char in raw:
        if char == "{":
            if depth > 0:
                inner += char
            depth += 1
            has_inner = True
        elif char == "}":
            depth = max(0, depth - 1)
            if depth > 0:
                inner += char
        elif char == "," and depth == 0:
            close()
            name = inner = ""
            has_inner = False
        elif depth == 0:
            name += char
        else:
            inner += char
    close()
    return tree


def parse_fields(raw: str | None) -> list[str] | None:
    """The top-level names in a `fields` parameter (`a,b{c,d},e` gives `a,b,e`); None when omitted."""
    tree = parse_field_tree(raw)
    return None if tree is None else list(tree)


def select_fields(
    full: dict[str, Any], requested: Sequence[str] | None, default: Sequence[str], allowed: frozenset[str], node: str
) -> dict[str, Any]:
    """`id` plus each requested field the node has a value for; unknown names raise error 100."""
    names = default if requested is None else requested
    for name in names:
        if name not in allowed:
            raise unknown_field(name, node)
    selected: dict[str, Any] = {"id": full["id"]}
    for name in names:
        if name in full:
            selected[name] = copy.deepcopy(full[name])
    return selected


def normalise_field_data(value: Any) -> list[dict[str, Any]]:
    """`field_data` as a list of `{"name", "values": [str, ...]}`, kept exactly as given; else error 100."""
    if not isinstance(value, list):
        raise invalid_parameter("param field_data must be an array")
    answers: list[dict[str, Any]] = []
    for item in value:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise invalid_parameter("param field_data must be an array of objects with a name and values")
        values = item.get("values", [])
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise invalid_parameter(f"param field_data[{item['name']}].values must be an array of strings")
        answers.append({"name": item["name"], "values": list(values)})
    return answers


def normalise_disclaimers(value: Any) -> list[dict[str, Any]]:
    """`custom_disclaimer_responses` as a list of objects (empty when absent); else error 100."""
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise invalid_parameter("param custom_disclaimer_responses must be an array of objects")
    return copy.deepcopy(value)


@dataclass(frozen=True)
class StoredLead:
    """One lead as the sandbox keeps it; `ad` holds the ad-level fields of a paid lead (empty if organic)."""

    id: str
    page_id: str
    form_id: str
    created_time: int
    field_data: list[dict[str, Any]]
    custom_disclaimer_responses: list[dict[str, Any]] = field(default_factory=list)
    is_organic: bool = True
    platform: str = "fb"
    is_test: bool = False
    ad: dict[str, str] = field(default_factory=dict)

    @property
    def sort_key(self) -> tuple[int, int]:
        """Order of the `/leads` edge: newest first means descending by this key."""
        return (self.created_time, int(self.id))

    def graph_object(self) -> dict[str, Any]:
        """Every field the lead has a value for, as the Graph API spells it."""
        full: dict[str, Any] = {
            "id": self.id,
            "created_time": graph_time(self.created_time),
            **self.ad,
            "form_id": self.form_id,
            "field_data": self.field_data,
            "custom_disclaimer_responses": self.custom_disclaimer_responses,
            "is_organic": self.is_organic,
            "platform": self.platform,
        }
        return copy.deepcopy(full)

    def render(self, requested: Sequence[str] | None) -> dict[str, Any]:
        """The lead node for a request's `fields` (default: `id` and `created_time`)."""
        return select_fields(self.graph_object(), requested, LEAD_DEFAULT_FIELDS, LEAD_FIELDS, "Lead")


@dataclass(frozen=True)
class LeadForm:
    """One lead form of a page; `questions` is the form's question list as Meta returns it."""

    id: str
    page_id: str
    name: str
    created_time: int
    status: str = "ACTIVE"
    locale: str = "en_US"
    questions: tuple[dict[str, Any], ...] = ()

    def render(
        self,
        requested: Sequence[str] | None,
        leads_count: int,
        organic_leads_count: int,
        subfields: Mapping[str, Sequence[str] | None] | None = None,
    ) -> dict[str, Any]:
        """The form node for a request's `fields` (default: id, name, status, locale, created_time, leads_count).

        `subfields` holds `questions{key,type}`-style selections: each question keeps only those.
        """
        wanted = (subfields or {}).get("questions")
        for name in wanted or ():
            if name not in QUESTION_FIELDS:
                raise unknown_field(name, "LeadGenQuestion")
        questions = [
            {k: copy.deepcopy(v) for k, v in q.items() if wanted is None or k in wanted} for q in self.questions
        ]
        full: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "status": self.status,
            "locale": self.locale,
            "created_time": graph_time(self.created_time),
            "leads_count": leads_count,
            "organic_leads_count": organic_leads_count,
            "page_id": self.page_id,
            "questions": questions,
        }
        return select_fields(full, requested, FORM_DEFAULT_FIELDS, FORM_FIELDS, "LeadgenForm")
