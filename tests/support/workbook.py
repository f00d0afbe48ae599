"""The operators' workbook (infra/modules/workbook.json), built from the marked queries of docs/queries.kql.

A query in docs/queries.kql whose comment ends with a `// workbook: <panel title>` line is a panel of the
Azure Monitor workbook that infra/modules/workbook.bicep deploys next to Application Insights. The query is
the lines after the marker up to the next blank line, its final `;` dropped; the workbook runs each panel's
query alone, so each gets the file's `let agent = traces …;` helper in front. The Bicep reads the result with
`loadTextContent('workbook.json')` at build time; tests/unit/test_workbook.py rebuilds it and fails when the
checked-in file differs, as for a lock file. Standard library only.

Run: `.venv/bin/python -m tests.support.workbook` (rewrites infra/modules/workbook.json).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
QUERIES_KQL = ROOT / "docs" / "queries.kql"
WORKBOOK_JSON = ROOT / "infra" / "modules" / "workbook.json"

MARKER = re.compile(r"^// workbook: (?P<title>\S.*?)\s*$")
HELPER_START = "let agent = traces"
APP_INSIGHTS = "microsoft.insights/components"
# Every panel may look back 30 days (the default retention); each query narrows its own window with ago().
TIME_RANGE_MS = 30 * 24 * 3600 * 1000
# The query's `render` decides the chart; a query without one is a table.
VISUALIZATIONS = {"timechart": "timechart", "columnchart": "barchart", "barchart": "barchart"}


@dataclass(frozen=True)
class Panel:
    """One marked query of docs/queries.kql: the panel's title and the query as written there."""

    title: str
    query: str


def agent_helper(kql: str) -> str:
    """The `let agent = traces …;` statement of queries.kql, from its first line to the `;` that ends it."""
    lines = kql.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith(HELPER_START)), None)
    if start is None:
        raise ValueError(f"docs/queries.kql has no line starting with {HELPER_START!r}")
    end = next((i for i in range(start, len(lines)) if lines[i].rstrip().endswith(";")), None)
    if end is None:
        raise ValueError("the `let agent` helper of docs/queries.kql never ends with ';'")
    return "\n".join(lines[start : end + 1])


def marked_panels(kql: str) -> list[Panel]:
    """Every `// workbook: <title>` query in file order; titles are unique and no marked query is empty."""
    lines = kql.splitlines()
    panels: list[Panel] = []
    for i, line in enumerate(lines):
        match = MARKER.match(line)
        if match is None:
            continue
        body: list[str] = []
        for following in lines[i + 1 :]:
            if not following.strip():
                break
            body.append(following.rstrip())
        query = "\n".join(body).removesuffix(";").rstrip()
        if not query:
            raise ValueError(f"docs/queries.kql line {i + 1}: `// workbook:` is not followed by a query")
        panels.append(Panel(match.group("title"), query))
    titles = [panel.title for panel in panels]
    duplicates = sorted({title for title in titles if titles.count(title) > 1})
    if duplicates:
        raise ValueError(f"docs/queries.kql marks several queries with the same workbook title: {duplicates}")
    return panels


def visualization(query: str) -> str:
    """The workbook's chart for the query's `| render <kind>`, or `table` when it renders nothing."""
    match = re.search(r"\|\s*render\s+(\w+)", query)
    return VISUALIZATIONS.get(match.group(1), "table") if match else "table"


def panel_item(helper: str, panel: Panel, index: int) -> dict[str, Any]:
    """A workbook query step (type 3, KqlItem) that runs the helper and the panel's query on App Insights."""
    return {
        "type": 3,
        "content": {
            "version": "KqlItem/1.0",
            "query": f"{helper}\n{panel.query}",
            "size": 0,
            "title": panel.title,
            "noDataMessage": "No matching records in the time range.",
            "timeContext": {"durationMs": TIME_RANGE_MS},
            "queryType": 0,
            "resourceType": APP_INSIGHTS,
            "visualization": visualization(panel.query),
        },
        "name": f"query - {index}",
    }


def build(kql: str) -> dict[str, Any]:
    """The workbook (`Notebook/1.0`) with one KqlItem per marked query of `kql`, in file order."""
    helper = agent_helper(kql)
    panels = marked_panels(kql)
    if not panels:
        raise ValueError("docs/queries.kql marks no query with `// workbook: <title>`")
    return {
        "version": "Notebook/1.0",
        "items": [panel_item(helper, panel, index) for index, panel in enumerate(panels, start=1)],
        "isLocked": False,
        "$schema": "https://github.com/Microsoft/Application-Insights-Workbooks/blob/master/schema/workbook.json",
    }


def render(kql: str) -> str:
    """The text of infra/modules/workbook.json for `kql`: stable key order, two-space indent, final newline."""
    return json.dumps(build(kql), indent=2, ensure_ascii=False) + "\n"


def main() -> None:
    WORKBOOK_JSON.write_text(render(QUERIES_KQL.read_text(encoding="utf-8")), encoding="utf-8", newline="\n")
    print(f"wrote {WORKBOOK_JSON.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
