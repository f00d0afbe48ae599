"""What Slack and Teams are told: every field and answer, lead text inert, within each service's limits."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, get_args

import pytest

from shared.deliver.chat import slack_alert, slack_escape, slack_lead, teams_alert, teams_lead
from shared.monitoring.incidents import IncidentKind
from shared.notify.models import AlertData
from shared.notify.templates import render_alert
from shared.notify.templates.alert_email import alert_title

Z = "\u200b"  # zero-width space
HOSTILE = "<!channel> *bold* _it_ ~s~ `code` & <http://evil|click>"
HOSTILE_IN_SLACK = (
    f"&lt;!channel&gt; {Z}*{Z}bold{Z}*{Z} {Z}_{Z}it{Z}_{Z} {Z}~{Z}s{Z}~{Z} {Z}`{Z}code{Z}`{Z} "
    "&amp; &lt;http://evil|click&gt;"
)
DETAIL = {
    "count": 12,
    "days": 7,
    "hours": 30,
    "since": "2026-11-20T08:00:00Z",
    "backfill_from": "2026-11-19T08:00:00Z",
    "capped": False,
    "unreadable_hours": 0,
}


def lead(**changes: Any) -> dict[str, Any]:
    """A lead as `StoredLead.ops_view()` gives it."""
    return {
        "facebook_lead_id": "900100",
        "page_id": "1000000000001",
        "form_id": "77",
        "ad_id": "501",
        "created_time": "2026-11-27T12:05:00Z",
        "source": "webhook",
        "email": "ada@example.com",
        "full_name": "Ada Lovelace",
        "phone_number": "+4915112345678",
        "fields": {"full_name": ["Ada Lovelace"], "which_products": ["Solar", "Battery"], "roof_size": ["40 m²"]},
        **changes,
    }


def alert(kind: str, opened: bool = True, **detail: Any) -> dict[str, Any]:
    return {"kind": kind, "opened": opened, "at": "2026-11-27T12:05:00.000Z", "detail": detail or dict(DETAIL)}


def slack_texts(message: dict[str, Any]) -> list[str]:
    """The fallback text and every text object's text, in order."""
    found = [message["text"]]
    for block in message["blocks"]:
        for value in [block.get("text"), *block.get("fields", []), *block.get("elements", [])]:
            if value:
                found.append(value["text"])
    return found


def card_body(message: dict[str, Any]) -> list[dict[str, Any]]:
    body: list[dict[str, Any]] = message["attachments"][0]["content"]["body"]
    return body


def card_elements(message: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every element of the card, inlines included, depth first."""
    stack = list(reversed(card_body(message)))
    while stack:
        element = stack.pop()
        yield element
        for key in ("inlines", "items", "columns", "facts"):
            stack.extend(reversed(element.get(key, [])))


def text_runs(message: dict[str, Any]) -> list[str]:
    return [element["text"] for element in card_elements(message) if element.get("type") == "TextRun"]


def markdown_texts(message: dict[str, Any]) -> list[str]:
    """Every text Teams renders as Markdown: TextBlocks and facts."""
    return [
        str(element.get("text", "")) + str(element.get("title", "")) + str(element.get("value", ""))
        for element in card_elements(message)
        if element.get("type") != "TextRun" and element.get("type") != "RichTextBlock"
    ]


def units(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def assert_within_slack_limits(message: dict[str, Any]) -> None:
    blocks = message["blocks"]
    assert len(blocks) <= 50
    for block in blocks:
        if "text" in block:
            assert 1 <= units(block["text"]["text"]) <= (150 if block["type"] == "header" else 3000)
        assert len(block.get("fields", [])) <= 10
        assert all(1 <= units(field["text"]) <= 2000 for field in block.get("fields", []))
        assert all(1 <= units(element["text"]) <= 3000 for element in block.get("elements", []))
    assert len(json.dumps(message, allow_nan=False)) < 40_000


def assert_within_teams_limits(message: dict[str, Any]) -> None:
    assert len(json.dumps(message, allow_nan=False)) < 25_000


# --- every field and answer -----------------------------------------------------------------------


def test_slack_lead_shows_every_field_and_answer():
    message = slack_lead(lead(), "Solar quote")
    texts = "\n".join(slack_texts(message))
    for value in ("900100", "1000000000001", "77", "501", "webhook", "ada@example.com", "+4915112345678"):
        assert value in texts
    assert "Ada Lovelace" in texts and "Solar quote" in texts
    assert "27 Nov 2026, 12:05 UTC" in texts
    assert "*which_products*\nSolar, Battery" in texts
    assert "*full_name*\nAda Lovelace" in texts and "*roof_size*\n40 m²" in texts
    assert message["text"] == "New lead: Ada Lovelace (Solar quote)"
    assert_within_slack_limits(message)


def test_teams_lead_shows_every_field_and_answer_in_the_emails_order():
    message = teams_lead(lead(), "Solar quote")
    runs = text_runs(message)
    assert runs[0] == "Ada Lovelace"
    labels = [run.removesuffix(": ") for run in runs[1:14:2]]
    assert labels == ["Email", "Phone", "Time", "Form", "Ad", "Source", "full_name"]
    assert runs[2:14:2] == [
        "ada@example.com",
        "+4915112345678",
        "27 Nov 2026, 12:05 UTC",
        "Solar quote (id 77)",
        "id 501",
        "webhook",
    ]
    assert runs[15:19] == ["which_products: ", "Solar, Battery", "roof_size: ", "40 m²"]
    assert runs[-1] == "Lead id 900100 · page 1000000000001"
    assert_within_teams_limits(message)


def test_a_form_without_a_name_is_shown_by_its_id():
    assert "*Form*\nform 77" in slack_texts(slack_lead(lead(), None))
    assert "form 77" in text_runs(teams_lead(lead(), None))


def test_a_lead_without_contact_details_or_answers_still_renders():
    bare = lead(full_name=None, email=None, phone_number=None, ad_id=None, fields={})
    slack = slack_lead(bare, None)
    assert "(no name)" in slack_texts(slack) and "*Email*\n—" in slack_texts(slack)
    assert "*Answers*\nNo answers." in slack_texts(slack)
    assert_within_slack_limits(slack)
    teams = teams_lead(bare, None)
    assert "(no name)" in text_runs(teams)
    assert any(block.get("text") == "No answers." for block in card_body(teams))


# --- lead text stays inert ------------------------------------------------------------------------


def test_slack_shows_an_injected_name_escaped_and_unformatted():
    message = slack_lead(lead(full_name=HOSTILE), "Solar quote")
    assert message["blocks"][1]["text"] == {"type": "mrkdwn", "text": HOSTILE_IN_SLACK, "verbatim": True}
    assert message["text"] == f"New lead: {HOSTILE_IN_SLACK} (Solar quote)"
    assert all("<" not in text and ">" not in text for text in slack_texts(message))


def test_slack_escapes_answers_keys_and_contact_details_alike():
    message = slack_lead(lead(email=HOSTILE, fields={HOSTILE: [HOSTILE]}), HOSTILE)
    texts = slack_texts(message)
    assert f"*Email*\n{HOSTILE_IN_SLACK}" in texts
    assert f"*Form*\n{HOSTILE_IN_SLACK} (id 77)" in texts
    assert f"*Answers*\n*{HOSTILE_IN_SLACK}*\n{HOSTILE_IN_SLACK}" in texts
    assert all("<" not in text and ">" not in text for text in texts)


def test_slack_leaves_a_mark_inside_a_word_alone_so_addresses_copy_cleanly():
    assert slack_escape("first_last@example.com") == "first_last@example.com"
    assert slack_escape("2*3=6 and a~b") == "2*3=6 and a~b"
    assert slack_escape("_x") == f"{Z}_{Z}x"
    assert slack_escape("a`b") == f"a{Z}`{Z}b"  # backticks always


def test_slack_does_not_quote_a_line_a_lead_starts_with_gt():
    assert slack_escape("> quoted\n> again") == f"{Z}&gt; quoted\n{Z}&gt; again"
    assert slack_escape("a > b") == "a &gt; b"


def test_slack_entity_encodes_only_ampersand_and_angle_brackets():
    assert slack_escape("\"quotes\" 'apostrophes' é ü ✓ 😀 &lt;") == "\"quotes\" 'apostrophes' é ü ✓ 😀 &amp;lt;"


def test_teams_puts_lead_text_only_in_text_runs():
    message = teams_lead(lead(full_name=HOSTILE, email=HOSTILE, fields={HOSTILE: [HOSTILE]}), HOSTILE)
    runs = text_runs(message)
    assert HOSTILE in runs and f"{HOSTILE}: " in runs and f"{HOSTILE} (id 77)" in runs
    assert runs.count(HOSTILE) == 3  # name, email, answer
    assert all("channel" not in text and "evil" not in text for text in markdown_texts(message))


def test_teams_envelope_is_exactly_the_workflows_shape():
    for message in (teams_lead(lead(), "Solar quote"), teams_alert(alert("silence"))):
        assert list(message) == ["type", "attachments"] and message["type"] == "message"
        assert len(message["attachments"]) == 1
        attachment = message["attachments"][0]
        assert attachment == {
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": None,
            "content": {
                "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                "type": "AdaptiveCard",
                "version": "1.4",
                "body": attachment["content"]["body"],
            },
        }
        assert json.loads(json.dumps(message))["attachments"][0]["contentUrl"] is None


def test_teams_title_is_a_bold_medium_text_block_of_our_own_words():
    assert card_body(teams_lead(lead(), None))[0] == {
        "type": "TextBlock",
        "text": "New lead",
        "wrap": True,
        "weight": "Bolder",
        "size": "Medium",
    }


# --- limits ---------------------------------------------------------------------------------------


def test_a_10000_character_answer_is_cut_with_an_ellipsis_and_the_note_says_so():
    long = lead(fields={"story": ["x" * 10_000], "budget": ["5000"]})
    slack = slack_lead(long, None)
    texts = slack_texts(slack)
    answers = next(text for text in texts if text.startswith("*Answers*"))
    assert "x" * 1000 + "…" in answers and "*budget*\n5000" in answers
    assert texts[-1] == "Answers cut to fit Slack: 1 shortened. The stored lead keeps every answer whole."
    assert_within_slack_limits(slack)
    teams = teams_lead(long, None)
    assert any(run.startswith("x" * 1000) and run.endswith("…") for run in text_runs(teams))
    assert "5000" in text_runs(teams)
    assert card_body(teams)[-2]["text"] == (
        "Answers cut to fit Teams: 1 shortened. The stored lead keeps every answer whole."
    )
    assert_within_teams_limits(teams)


def test_300_long_answers_stay_within_slack_limits_and_the_note_says_how_many_are_missing():
    many = lead(fields={f"question_{n}": ["y" * 10_000] for n in range(300)})
    message = slack_lead(many, "Solar quote")
    assert_within_slack_limits(message)
    note = slack_texts(message)[-1]
    shown = sum(text.count("*question_") for text in slack_texts(message))
    assert 0 < shown < 300
    assert note == (
        f"Answers cut to fit Slack: {shown} shortened, {300 - shown} not shown. "
        "The stored lead keeps every answer whole."
    )
    assert "*question_0*" in "".join(slack_texts(message))  # in order, from the first


def test_300_short_answers_fill_slack_sections_without_passing_50_blocks():
    many = lead(fields={f"question_{n}": [f"answer {n}"] for n in range(300)})
    message = slack_lead(many, None)
    assert_within_slack_limits(message)
    texts = "\n".join(slack_texts(message))
    assert all(f"*question_{n}*\nanswer {n}" in texts for n in range(300))
    assert "cut to fit" not in texts


def test_300_long_answers_stay_within_teams_size_and_the_note_says_how_many_are_missing():
    many = lead(fields={f"question_{n}": ["y" * 10_000] for n in range(300)})
    message = teams_lead(many, "Solar quote")
    assert_within_teams_limits(message)
    shown = sum(run.startswith("question_") for run in text_runs(message))
    assert 0 < shown < 300
    assert card_body(message)[-2]["text"] == (
        f"Answers cut to fit Teams: {shown} shortened, {300 - shown} not shown. "
        "The stored lead keeps every answer whole."
    )


@pytest.mark.parametrize("char", ["&", "😀", "*", ">", "é"])
def test_characters_that_grow_when_escaped_cannot_push_past_the_limits(char):
    swollen = lead(
        full_name=char * 5000,
        email=char * 5000,
        phone_number=char * 5000,
        fields={char * 500: [char * 10_000], f"k{char}" * 200: [char * 10_000], "k": [char * 10_000]},
    )
    slack = slack_lead(swollen, char * 5000)
    assert_within_slack_limits(slack)
    assert "shortened" in slack_texts(slack)[-1]
    assert_within_teams_limits(teams_lead(swollen, char * 5000))


def test_a_cut_never_splits_an_entity_or_a_wrapped_mark():
    for char, escaped in (("&", "&amp;"), ("*", f"{Z}*{Z}")):
        answers = next(
            text
            for text in slack_texts(slack_lead(lead(fields={"q": [char * 10_000]}), None))
            if text.startswith("*Answers*")
        )
        value = answers.split("\n", 2)[2].removesuffix("…")
        assert value == escaped * (len(value) // len(escaped))


# --- alerts ---------------------------------------------------------------------------------------


def email_paragraph(kind: str, opened: bool) -> str:
    """The alert email's own words for what happened (or what resolution means)."""
    at = datetime(2026, 11, 27, 12, 5, tzinfo=UTC)
    return render_alert(AlertData(kind, opened, at, dict(DETAIL)), UTC).text.split("\n\n")[1]


@pytest.mark.parametrize("opened", [True, False], ids=["opened", "resolved"])
@pytest.mark.parametrize("kind", get_args(IncidentKind))
def test_each_alert_kind_renders_in_the_emails_words(kind, opened):
    title = alert_title(kind, DETAIL)
    heading = f"Lead agent: {title}" if opened else f"Lead agent resolved: {title}"
    words = email_paragraph(kind, opened)
    stamp = f"{'Opened' if opened else 'Resolved'} at"

    slack = slack_alert(alert(kind, opened))
    texts = slack_texts(slack)
    assert texts[:3] == [heading, f"*{heading}*", words]
    assert f"*Incident:* {kind}" in texts[3] and f"*{stamp}:* 27 Nov 2026, 12:05 UTC" in texts[3]
    assert "*count:* 12" in texts[3]
    assert_within_slack_limits(slack)

    teams = teams_alert(alert(kind, opened))
    runs = text_runs(teams)
    assert runs[:2] == [heading, words]
    assert runs[2:6] == ["Incident: ", kind, f"{stamp}: ", "27 Nov 2026, 12:05 UTC"]
    assert_within_teams_limits(teams)


def test_an_unknown_alert_kind_gets_the_emails_generic_words():
    assert slack_texts(slack_alert(alert("mystery")))[0] == "Lead agent: Incident mystery"
    assert text_runs(teams_alert(alert("mystery", False)))[:2] == [
        "Lead agent resolved: Incident mystery",
        "The incident is resolved.",
    ]


def test_alert_detail_is_escaped_in_slack_and_only_in_text_runs_in_teams():
    hostile = alert("token_invalid", error=HOSTILE)
    assert f"*error:* {HOSTILE_IN_SLACK}" in slack_texts(slack_alert(hostile))[3]
    teams = teams_alert(hostile)
    assert HOSTILE in text_runs(teams)
    assert all("channel" not in text for text in markdown_texts(teams))


def test_every_message_is_plain_json():
    messages = [
        slack_lead(lead(), "Solar quote"),
        teams_lead(lead(), "Solar quote"),
        *(
            build(alert(kind, opened))
            for build in (slack_alert, teams_alert)
            for kind in get_args(IncidentKind)
            for opened in (True, False)
        ),
    ]
    for message in messages:
        assert json.loads(json.dumps(message, allow_nan=False)) == message
