"""What the emails say: the instant lead email, the daily digest and incident alerts, as text and HTML.

Pure functions over `shared.notify.models`; nothing here sends, reads settings or touches the store.
Every value that comes from a lead or from Meta is HTML-escaped in the HTML part (attribute values
too) and kept verbatim in the text part. One module per email (`lead_email`, `digest_email`,
`alert_email`) over the shared escaping and layout in `html`; times are shown in the zone the
caller passes, with its abbreviation.
"""

from __future__ import annotations

from shared.notify.templates.alert_email import render_alert
from shared.notify.templates.digest_email import render_digest
from shared.notify.templates.html import RenderedEmail
from shared.notify.templates.lead_email import render_lead_email

__all__ = ["RenderedEmail", "render_alert", "render_digest", "render_lead_email"]
