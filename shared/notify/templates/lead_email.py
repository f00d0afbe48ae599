"""The instant lead email: one section per new lead with its contact, form, ad, named fields and every answer.

Each lead is listed once (by Facebook lead id); email and phone become mailto/tel links in the
HTML part, and every value from the lead is escaped there and kept verbatim in the text part.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import tzinfo

from shared.notify.models import LeadSummary
from shared.notify.templates.html import (
    Html,
    RenderedEmail,
    email,
    kv_table,
    link,
    one_line,
    paragraph,
    section,
    shorten,
    text_rows,
    time,
)

_NONE = "—"
NAME_IN_SUBJECT = 60  # characters of the lead's name in the subject, so the form name still shows


def render_lead_email(leads: Sequence[LeadSummary], tz: tzinfo) -> RenderedEmail:
    """The instant email for one or more new leads, each listed once (by Facebook lead id).

    Shows the named fields (`FIELD_MAP`'s names and the built-in ones, first answer each), every
    answered field with all its values, the lead time in `tz`, form, ad names (or "organic") and
    source. A long name is cut (with "…") in the subject only; the body has it whole. Raises
    `ValueError` for an empty sequence: there is nothing to announce.
    """
    by_id: dict[str, LeadSummary] = {}
    for lead in leads:
        by_id.setdefault(lead.facebook_lead_id, lead)
    unique = list(by_id.values())
    if not unique:
        raise ValueError("render_lead_email needs at least one lead")
    forms = {_form_label(lead) for lead in unique}
    if len(unique) == 1:
        name = shorten(one_line(unique[0].full_name or "(no name)"), NAME_IN_SUBJECT)
        subject = f"New lead: {name} — {forms.pop()}"
    else:
        subject = f"{len(unique)} new leads" + (f" — {forms.pop()}" if len(forms) == 1 else "")
    texts, blocks = [], []
    for index, lead in enumerate(unique, start=1):
        heading = lead.full_name or "(no name)"
        if len(unique) > 1:
            heading = f"{index}. {heading}"
        rows = _lead_rows(lead, tz)
        answers = [(key, ", ".join(values) if values else _NONE) for key, values in lead.fields.items()]
        answer_lines = [f"  {key}: {value}" for key, value in answers] or ["  none"]
        named = list(lead.mapped.items())
        named_lines = ["Named fields:", *(f"  {name}: {value}" for name, value in named)] if named else []
        texts.append("\n".join([heading, *text_rows(rows), *named_lines, "Answers:", *answer_lines]))
        blocks.append(
            section(heading, kv_table(_with_links(rows, lead)))
            + (section("Named fields", kv_table(named), small=True) if named else Html(""))
            + section("Answers", kv_table(answers) if answers else paragraph("No answers."), small=True)
        )
    return email(subject, "\n\n".join(texts), Html("".join(blocks)))


def _lead_rows(lead: LeadSummary, tz: tzinfo) -> list[tuple[str, str]]:
    rows = [
        ("Name", lead.full_name or _NONE),
        ("Email", lead.email or _NONE),
        ("Phone", lead.phone_number or _NONE),
        ("Time", time(lead.created_time, tz)),
        ("Form", _form_label(lead) + (f" (id {lead.form_id})" if lead.form_name and lead.form_id else "")),
    ]
    ad = [
        ("Ad", lead.ad_name or (f"id {lead.ad_id}" if lead.ad_id else None)),
        ("Ad set", lead.adset_name),
        ("Campaign", lead.campaign_name or (f"id {lead.campaign_id}" if lead.campaign_id else None)),
    ]
    known = [(label, value) for label, value in ad if value]
    if known:
        rows += known
    else:
        rows.append(("Ad", "organic (not from an ad)" if lead.is_organic else "unknown"))
    rows += [("Source", lead.source), ("Platform", lead.platform or _NONE), ("Lead id", lead.facebook_lead_id)]
    return rows


def _with_links(rows: list[tuple[str, str]], lead: LeadSummary) -> list[tuple[str, str]]:
    """The lead's rows for HTML: email and phone become mailto/tel links (escaped and URL-quoted)."""
    links = {
        "Email": link("mailto:", lead.email, "@") if lead.email else None,
        "Phone": link("tel:", lead.phone_number, "+") if lead.phone_number else None,
    }
    return [(label, links.get(label) or value) for label, value in rows]


def _form_label(lead: LeadSummary) -> str:
    return lead.form_name or (f"form {lead.form_id}" if lead.form_id else "unknown form")
