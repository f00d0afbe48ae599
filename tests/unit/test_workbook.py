"""The operators' workbook shows the marked queries of docs/queries.kql, and the Bicep deploys it.

infra/modules/workbook.json is built from docs/queries.kql by `python -m tests.support.workbook` and read by
infra/modules/workbook.bicep with loadTextContent; these tests keep the three in step and pin what the
workbook must show.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from tests.support.workbook import (
    APP_INSIGHTS,
    QUERIES_KQL,
    ROOT,
    WORKBOOK_JSON,
    agent_helper,
    marked_panels,
    render,
)

INFRA = ROOT / "infra"
WORKBOOK_BICEP = INFRA / "modules" / "workbook.bicep"
REGENERATE = ".venv/bin/python -m tests.support.workbook"

# What issue 17 asks the operator's view to show, by panel title (the `// workbook:` lines of queries.kql).
REQUIRED_PANELS = (
    "Leads per hour by source",
    "Speed to lead (created_time to email), per hour",
    "Ingestion and notification outcomes",
    "Dead letters",
    "Poller gaps found",
    "Meta token and page subscriptions",
)


def normalised(query: str) -> str:
    """The query with every run of whitespace one space and no final `;`, so layout changes do not count."""
    return " ".join(query.split()).removesuffix(";").strip()


@pytest.fixture(scope="module")
def kql() -> str:
    return QUERIES_KQL.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def workbook() -> dict[str, Any]:
    return dict(json.loads(WORKBOOK_JSON.read_text(encoding="utf-8")))


def query_items(workbook: dict[str, Any]) -> list[dict[str, Any]]:
    return [item["content"] for item in workbook["items"]]


# --- the workbook and docs/queries.kql say the same ------------------------------------------------------------


def test_checked_in_workbook_json_is_the_one_built_from_queries_kql(kql):
    assert WORKBOOK_JSON.read_text(encoding="utf-8") == render(kql), (
        f"infra/modules/workbook.json is not built from the current docs/queries.kql: run `{REGENERATE}`"
    )


def test_workbook_queries_are_the_marked_queries_of_queries_kql_after_the_agent_helper(kql, workbook):
    helper = agent_helper(kql)
    marked = [(panel.title, normalised(helper + "\n" + panel.query)) for panel in marked_panels(kql)]
    shown = [(content["title"], normalised(content["query"])) for content in query_items(workbook)]
    assert shown == marked


def test_every_marker_in_queries_kql_becomes_a_panel(kql, workbook):
    markers = re.findall(r"^// workbook: (.+)$", kql, re.M)
    assert [content["title"] for content in query_items(workbook)] == [title.strip() for title in markers]


def test_every_workbook_query_begins_with_the_agent_helper_of_queries_kql(kql, workbook):
    helper = agent_helper(kql)
    assert helper.startswith("let agent = traces") and helper.endswith(";")
    for content in query_items(workbook):
        assert content["query"].startswith(helper + "\n"), content["title"]


@pytest.mark.parametrize("title", REQUIRED_PANELS)
def test_workbook_has_the_required_panel(workbook, title):
    titles = [content["title"] for content in query_items(workbook)]
    assert title in titles, f"no workbook panel titled {title!r}; panels: {titles}"


def test_speed_to_lead_panel_reads_speed_to_lead_ms_from_notify_sent_records(workbook):
    (speed,) = [c for c in query_items(workbook) if c["title"].startswith("Speed to lead")]
    assert 'stage == "notify" and outcome == "sent"' in speed["query"]
    assert "speed_to_lead_ms" in speed["query"]


def test_poller_gaps_panel_counts_missing_found_enqueued_and_gap_backfills(workbook):
    (gaps,) = [c for c in query_items(workbook) if c["title"] == "Poller gaps found"]
    for needle in ("d.missing_found", "d.enqueued", "poller: backfilling a gap after downtime"):
        assert needle in gaps["query"], needle


# --- the workbook's JSON is what Azure Monitor accepts ----------------------------------------------------------


def test_workbook_is_a_notebook_of_kql_items_on_application_insights(workbook):
    assert workbook["version"] == "Notebook/1.0"
    assert workbook["items"], "the workbook has no items"
    for item in workbook["items"]:
        content = item["content"]
        assert item["type"] == 3 and content["version"] == "KqlItem/1.0", item.get("name")
        assert content["queryType"] == 0 and content["resourceType"] == APP_INSIGHTS, content["title"]
        assert content["visualization"] in {"table", "timechart", "barchart"}, content["title"]
        assert content["title"].strip(), item.get("name")


def test_step_names_are_unique(workbook):
    names = [item["name"] for item in workbook["items"]]
    assert len(names) == len(set(names)), names


def test_charts_follow_the_query_render_and_tables_render_nothing(workbook):
    for content in query_items(workbook):
        renders = re.search(r"\|\s*render\s+(\w+)", content["query"])
        if renders is None:
            assert content["visualization"] == "table", content["title"]
        else:
            assert content["visualization"] != "table", content["title"]


# --- the marker rules --------------------------------------------------------------------------------------------


SAMPLE = """// helper
let agent = traces
    | where message has " | {";

// 1. stored
// workbook: Stored
agent
| summarize count()
| render timechart;

// 2. not in the workbook
agent | take 1;

// 3. list
// workbook: List
let ids = agent | distinct lead;
agent | where lead in (ids);
"""


def test_a_marked_query_runs_to_the_next_blank_line_without_its_final_semicolon():
    panels = marked_panels(SAMPLE)
    assert [(panel.title, panel.query) for panel in panels] == [
        ("Stored", "agent\n| summarize count()\n| render timechart"),
        ("List", "let ids = agent | distinct lead;\nagent | where lead in (ids)"),
    ]
    assert agent_helper(SAMPLE) == 'let agent = traces\n    | where message has " | {";'


def test_a_marker_without_a_query_or_a_repeated_title_is_refused():
    with pytest.raises(ValueError, match="not followed by a query"):
        marked_panels("// workbook: Empty\n\nagent;\n")
    with pytest.raises(ValueError, match="same workbook title"):
        marked_panels("// workbook: Twice\nagent;\n\n// workbook: Twice\nagent;\n")


# --- the Bicep deploys it ----------------------------------------------------------------------------------------


def test_workbook_bicep_deploys_a_shared_workbook_on_application_insights_from_workbook_json():
    source = WORKBOOK_BICEP.read_text(encoding="utf-8")
    assert re.search(r"resource \w+ 'Microsoft\.Insights/workbooks@2023-06-01' = \{", source)
    for needle in (
        "name: guid(resourceGroup().id, 'lead-agent-workbook')",
        "kind: 'shared'",
        "category: 'workbook'",
        "version: 'Notebook/1.0'",
        "sourceId: toLower(appInsightsId)",
        "serializedData: loadTextContent('workbook.json')",
        "location: location",
        "tags: tags",
    ):
        assert needle in source, f"workbook.bicep lacks {needle}"
    assert (WORKBOOK_BICEP.parent / "workbook.json") == WORKBOOK_JSON


def test_main_bicep_deploys_the_workbook_on_the_monitoring_module_application_insights():
    source = (INFRA / "main.bicep").read_text(encoding="utf-8")
    match = re.search(r"^module \w+ 'modules/workbook\.bicep' = \{\n(.*?)^\}", source, re.M | re.S)
    assert match, "main.bicep does not deploy modules/workbook.bicep (unconditionally)"
    assert "appInsightsId: monitoring.outputs.appInsightsId" in match.group(1)
