"""What the emails say: every answer shown, lead values escaped in HTML, times in the configured zone."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from typing import Any, get_args
from zoneinfo import ZoneInfo

import pytest

from shared.monitoring.incidents import IncidentKind
from shared.notify.models import AlertData, DigestData, LeadSummary
from shared.notify.templates import render_alert, render_digest, render_lead_email
from shared.notify.templates.html import SUBJECT_MAX
from shared.timing import Timing

BERLIN = ZoneInfo("Europe/Berlin")


def lead(**changes: Any) -> LeadSummary:
    base = LeadSummary(
        facebook_lead_id="900100",
        created_time=datetime(2026, 11, 27, 12, 5, tzinfo=UTC),
        source="webhook",
        page_id="1000000000001",
        form_id="77",
        form_name="Solar quote",
        ad_id="501",
        ad_name="Winter promo",
        adset_name="Berlin 25-45",
        campaign_id="601",
        campaign_name="Q4 solar",
        full_name="Ada Lovelace",
        email="ada@example.com",
        phone_number="+4915112345678",
        fields={"full_name": ["Ada Lovelace"], "which_products": ["Solar", "Battery"]},
        is_organic=False,
        platform="fb",
    )
    return replace(base, **changes)


def digest(**changes: Any) -> DigestData:
    start = datetime(2026, 11, 25, 23, 0, tzinfo=UTC)  # 26 Nov 00:00 in Berlin
    base = DigestData(
        period_start=start,
        period_end=start + timedelta(hours=24),
        leads_total=42,
        by_source={"webhook": 37, "polling": 4, "reprocess": 1},
        by_form=[("Solar quote", 30), ("Heat pump", 12)],
        duplicates_ignored=5,
        dead_letters_open=2,
        poll_runs=96,
        poll_errors=3,
        missing_found=4,
        enqueued_by_poller=4,
        token={"valid": True, "expires_at": "2027-01-20T10:00:00Z"},
        open_incidents={"silence": {"open": True, "opened_at": "2026-11-26T17:00:00Z", "detail": {"hours": 6}}},
        leads_per_hour=[
            (start + timedelta(hours=9), 8),
            (start + timedelta(hours=10), 2),
            (start + timedelta(hours=14), 4),
        ],
    )
    return replace(base, **changes)


class _ChartRows(HTMLParser):
    """(label, bar width in px or 0, count) for each row of the `leads-per-hour` table."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[tuple[str, int, int]] = []
        self._depth = 0  # table nesting inside the chart; 0 = outside
        self._cells: list[str] = []
        self._width = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "table" and (self._depth or attributes.get("id") == "leads-per-hour"):
            self._depth += 1
        elif self._depth == 1 and tag == "tr":
            self._cells, self._width = [], 0
        elif self._depth == 1 and tag == "td":
            self._cells.append("")
        elif self._depth == 2 and tag == "td" and attributes.get("bgcolor"):
            self._width = int(attributes["width"] or 0)

    def handle_endtag(self, tag: str) -> None:
        if tag == "table" and self._depth:
            self._depth -= 1
        elif self._depth == 1 and tag == "tr":
            self.rows.append((self._cells[0], self._width, int(self._cells[-1])))

    def handle_data(self, data: str) -> None:
        if self._depth == 1 and self._cells:
            self._cells[-1] += data


def chart_rows(html: str) -> list[tuple[str, int, int]]:
    parser = _ChartRows()
    parser.feed(html)
    return parser.rows


# --- the instant lead email ---------------------------------------------------------------------


def test_hostile_lead_values_are_escaped_in_html_and_verbatim_in_text():
    hostile = lead(
        full_name="<script>alert(1)</script>",
        fields={'<b>key</b> & "q"': ['<b>bold</b> & "quoted"']},
        form_name="<i>Form</i>",
    )
    email = render_lead_email([hostile], BERLIN)
    assert "<script" not in email.html.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in email.html
    assert "&lt;b&gt;key&lt;/b&gt; &amp; &quot;q&quot;" in email.html
    assert "&lt;b&gt;bold&lt;/b&gt; &amp; &quot;quoted&quot;" in email.html
    assert "<b>" not in email.html and "<i>" not in email.html
    assert "<script>alert(1)</script>" in email.text
    assert '<b>key</b> & "q": <b>bold</b> & "quoted"' in email.text


def test_email_and_phone_links_cannot_break_out_of_their_attribute():
    email = render_lead_email([lead(email='x"><script>@example.com', phone_number="+49 151\"'<>")], BERLIN)
    hrefs = re.findall(r'href="([^"]*)"', email.html)
    assert hrefs[0].startswith("mailto:") and hrefs[1].startswith("tel:")
    assert all(not set(href) & set("<>\"' ") for href in hrefs)
    assert "<script" not in email.html


def test_every_answered_field_appears_with_all_its_values():
    fields = {"which_products": ["Solar", "Battery", "Wallbox"], "roof_size": ["40 m²"], "skipped_question": []}
    email = render_lead_email([lead(fields=fields)], BERLIN)
    assert "which_products: Solar, Battery, Wallbox" in email.text
    assert "roof_size: 40 m²" in email.text
    assert "skipped_question: —" in email.text
    for text in ("which_products", "Solar, Battery, Wallbox", "roof_size", "40 m²", "skipped_question"):
        assert text in email.html


def test_unicode_names_and_answers_stay_intact():
    name = "Zoë Åström مرحبا 🌞"
    email = render_lead_email([lead(full_name=name, fields={"note": ["سلام 👋"]})], BERLIN)
    assert name in email.subject and name in email.text and name in email.html
    assert "سلام 👋" in email.text and "سلام 👋" in email.html


def test_lead_time_is_shown_in_the_configured_zone_with_its_abbreviation():
    email = render_lead_email([lead()], BERLIN)
    assert "27 Nov 2026, 13:05 CET" in email.text
    assert "27 Nov 2026, 13:05 CET" in email.html


def test_one_lead_subject_names_the_lead_and_the_form():
    assert render_lead_email([lead()], BERLIN).subject == "New lead: Ada Lovelace — Solar quote"
    unnamed = render_lead_email([lead(full_name=None, form_name=None)], BERLIN)
    assert unnamed.subject == "New lead: (no name) — form 77"


def test_a_600_character_name_is_cut_in_the_subject_and_kept_whole_in_the_body():
    name = "Zoë " + "Montgomery-Ångström " * 30  # 604 characters
    email = render_lead_email([lead(full_name=name.strip())], BERLIN)
    assert len(email.subject) <= SUBJECT_MAX
    assert email.subject.startswith("New lead: Zoë Montgomery-Ångström Montgomery")
    assert email.subject.endswith("… — Solar quote")
    assert name.strip() in email.text
    assert name.strip() in email.html


def test_every_subject_is_at_most_120_characters_and_says_it_was_cut():
    email = render_lead_email([lead(form_name="Quote for a " + "very " * 40 + "big roof")], BERLIN)
    assert SUBJECT_MAX == 120
    assert len(email.subject) == SUBJECT_MAX
    assert email.subject.startswith("New lead: Ada Lovelace — Quote for a very")
    assert email.subject.endswith("…")
    assert "very " * 40 in email.text


def test_a_subject_that_fits_is_not_cut():
    name = "N" * 60
    email = render_lead_email([lead(full_name=name)], BERLIN)
    assert email.subject == f"New lead: {name} — Solar quote"


def test_several_leads_make_one_email_listing_each_lead_once():
    leads = [lead(facebook_lead_id=f"90000{i}", full_name=f"Person {i}") for i in range(3)]
    email = render_lead_email([*leads, leads[1]], BERLIN)
    assert email.subject == "3 new leads — Solar quote"
    for i in range(3):
        assert email.text.count(f"90000{i}") == 1
        assert email.html.count(f"90000{i}") == 1


def test_several_leads_from_different_forms_name_no_form_in_the_subject():
    email = render_lead_email([lead(), lead(facebook_lead_id="2", form_id="78", form_name="Heat pump")], BERLIN)
    assert email.subject == "2 new leads"


def test_ad_lead_shows_ad_adset_and_campaign_names():
    email = render_lead_email([lead()], BERLIN)
    assert "Ad: Winter promo" in email.text
    assert "Ad set: Berlin 25-45" in email.text
    assert "Campaign: Q4 solar" in email.text
    assert "organic" not in email.text


def test_organic_lead_says_organic_instead_of_ad_names():
    organic = lead(ad_id=None, ad_name=None, adset_name=None, campaign_id=None, campaign_name=None, is_organic=True)
    email = render_lead_email([organic], BERLIN)
    assert "Ad: organic" in email.text
    assert "Campaign" not in email.text


def test_lead_email_names_source_platform_form_and_lead_id():
    email = render_lead_email([lead(source="polling", platform="ig")], BERLIN)
    for line in ("Source: polling", "Platform: ig", "Form: Solar quote (id 77)", "Lead id: 900100"):
        assert line in email.text


def test_lead_email_has_no_images_or_scripts():
    html = render_lead_email([lead()], BERLIN).html.lower()
    assert "<img" not in html and "<script" not in html and "<svg" not in html


def test_no_leads_is_an_error():
    with pytest.raises(ValueError):
        render_lead_email([], BERLIN)


# --- the daily digest ---------------------------------------------------------------------------


def test_digest_subject_names_the_day_and_the_total():
    assert render_digest(digest(), BERLIN).subject == "Lead digest for 26 Nov 2026: 42 leads"


def test_digest_reports_totals_by_source_and_by_form():
    email = render_digest(digest(), BERLIN)
    for line in ("New leads: 42", "webhook: 37", "polling: 4", "reprocess: 1", "Solar quote: 30", "Heat pump: 12"):
        assert line in email.text
    assert "Heat pump" in email.html


def test_digest_reports_duplicates_dead_letters_and_reconciliation():
    text = render_digest(digest(), BERLIN).text
    assert "Duplicates ignored: 5" in text
    assert "Dead letters open: 2" in text
    assert "Poll runs: 96" in text
    assert "Poll errors: 3" in text
    assert "Missing leads found (webhook never delivered): 4" in text
    assert "Queued by the poller: 4" in text


def test_digest_reports_token_health_and_open_incidents():
    email = render_digest(digest(), BERLIN)
    assert "Access token: valid" in email.text
    assert "2027-01-20T10:00:00Z" in email.text
    assert "No leads for 6 hours" in email.text and "No leads for 6 hours" in email.html
    assert "since 26 Nov 2026, 18:00 CET" in email.text
    invalid = render_digest(digest(token={"valid": False, "error": "code 190"}, open_incidents={}), BERLIN)
    assert "Access token: INVALID" in invalid.text and "code 190" in invalid.text


def test_digest_chart_has_one_row_per_hour_with_bars_proportional_to_counts():
    email = render_digest(digest(), BERLIN)
    rows = chart_rows(email.html)
    assert len(rows) == 24
    assert rows[0][0] == "00:00 CET" and rows[-1][0] == "23:00 CET"
    by_label = {label: (width, count) for label, width, count in rows}
    assert by_label["09:00 CET"][1] == 8 and by_label["10:00 CET"][1] == 2
    widest = max(width for _, width, _ in rows)
    assert by_label["09:00 CET"][0] == widest
    assert by_label["10:00 CET"][0] * 4 == widest
    assert by_label["00:00 CET"] == (0, 0)


def test_digest_chart_uses_table_cells_only():
    html = render_digest(digest(), BERLIN).html.lower()
    assert "<img" not in html and "<svg" not in html and "<script" not in html


def test_digest_text_chart_draws_hours_with_hashes():
    lines = [line for line in render_digest(digest(), BERLIN).text.splitlines() if " | " in line]
    assert len(lines) == 24
    assert "09:00 CET | " + "#" * 40 + " 8" in lines
    assert "10:00 CET | " + "#" * 10 + " 2" in lines
    assert "00:00 CET |  0" in lines


def test_digest_reports_speed_to_lead_and_webhook_to_stored_percentiles():
    email = render_digest(
        digest(
            speed_to_lead=Timing(count=38, p50_ms=41_500.0, p99_ms=312_000.0, max_ms=900_000.0),
            webhook_to_stored=Timing(count=37, p50_ms=850.0, p99_ms=2_400.0, max_ms=3_000.0),
            not_from_webhook=5,
        ),
        BERLIN,
    )
    assert "Speed to lead (form submitted to email sent): p50 41.5 s, p99 5.2 min (38 leads)" in email.text
    assert "Webhook to lead stored: p50 850 ms, p99 2.4 s (37 webhook leads; 5 by polling or reprocess)" in email.text
    assert "p50 41.5 s, p99 5.2 min (38 leads)" in email.html


def test_digest_says_when_no_lead_was_measured():
    text = render_digest(digest(speed_to_lead=Timing(), webhook_to_stored=Timing(), not_from_webhook=5), BERLIN).text
    assert "Speed to lead (form submitted to email sent): no lead emailed" in text
    assert "Webhook to lead stored: no webhook lead (5 by polling or reprocess)" in text


def test_digest_escapes_form_names():
    email = render_digest(digest(by_form=[("<script>x</script> & co", 3)]), BERLIN)
    assert "<script" not in email.html
    assert "&lt;script&gt;x&lt;/script&gt; &amp; co" in email.html
    assert "<script>x</script> & co: 3" in email.text


# --- alerts -------------------------------------------------------------------------------------

KIND_WORDS = {
    "token_invalid": "Key Vault",
    "subscription_lost": "Leads Access",
    "polling_failing": "/api/health",
    "dead_letters_growing": "/api/ops/failed-events",
    "silence": "ads are running",
}


@pytest.mark.parametrize("kind", sorted(KIND_WORDS))
def test_opened_alert_has_alert_subject_and_guidance_for_its_kind(kind):
    email = render_alert(AlertData(kind=kind, opened=True, at=datetime(2026, 11, 27, 12, 5, tzinfo=UTC)), BERLIN)
    assert email.subject.startswith("[Lead agent] ALERT: ")
    assert KIND_WORDS[kind] in email.text and KIND_WORDS[kind] in email.html
    assert "27 Nov 2026, 13:05 CET" in email.text


@pytest.mark.parametrize("kind", sorted(KIND_WORDS))
def test_resolved_alert_has_resolved_subject(kind):
    email = render_alert(AlertData(kind=kind, opened=False, at=datetime(2026, 11, 27, 12, 5, tzinfo=UTC)), BERLIN)
    assert email.subject.startswith("[Lead agent] RESOLVED: ")
    assert "ALERT" not in email.subject


def test_token_alert_says_leads_wait_and_none_are_lost():
    email = render_alert(AlertData(kind="token_invalid", opened=True, at=datetime.now(UTC)), BERLIN)
    assert email.subject == "[Lead agent] ALERT: Meta access token is invalid"
    assert "none are lost" in email.text


def test_alert_titles_carry_the_numbers_from_the_detail():
    at = datetime.now(UTC)
    silence = render_alert(AlertData(kind="silence", opened=True, at=at, detail={"hours": 6}), BERLIN)
    dead = render_alert(AlertData(kind="dead_letters_growing", opened=True, at=at, detail={"count": 17}), BERLIN)
    assert silence.subject == "[Lead agent] ALERT: No leads for 6 hours"
    assert "17 dead letters are open" in dead.text


def test_alert_detail_values_are_escaped_in_html():
    detail = {"pages": ["<b>1</b>"], "error": "<script>x</script>"}
    email = render_alert(AlertData(kind="subscription_lost", opened=True, at=datetime.now(UTC), detail=detail), BERLIN)
    assert "<script" not in email.html and "<b>1" not in email.html
    assert "&lt;script&gt;x&lt;/script&gt;" in email.html
    assert "error: <script>x</script>" in email.text


def test_unknown_incident_kind_gets_a_generic_alert():
    email = render_alert(AlertData(kind="cosmic_rays", opened=True, at=datetime.now(UTC)), BERLIN)
    assert email.subject == "[Lead agent] ALERT: Incident cosmic_rays"
    assert "/api/health" in email.text


@pytest.mark.parametrize("kind", get_args(IncidentKind))
def test_every_incident_kind_renders_with_its_detail_or_without_any(kind):
    at = datetime(2026, 11, 27, 12, 5, tzinfo=UTC)
    detail = {"count": 3, "days": 25, "hours": 30, "since": "2026-11-26T06:00:00Z", "backfill_from": "2026-11-26"}
    for opened, given in ((True, detail), (True, {}), (False, {})):
        email = render_alert(AlertData(kind=kind, opened=opened, at=at, detail=given), BERLIN)
        assert "{" not in email.subject and "{" not in email.text and email.subject.startswith("[Lead agent]")
    assert (
        "25" in render_alert(AlertData(kind="dead_letters_unattended", opened=True, at=at, detail=detail), BERLIN).text
    )
