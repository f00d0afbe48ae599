"""What the emails say: the instant lead email, the daily digest and incident alerts, as text and HTML.

A stable import path for the senders and tests; the rendering lives in `shared.notify.templates`
(one module per email over shared escaping and layout helpers), and this module only re-exports
its public names so callers need not know how it is split.
"""

from __future__ import annotations

from shared.notify.templates import RenderedEmail, render_alert, render_digest, render_lead_email

__all__ = ["RenderedEmail", "render_alert", "render_digest", "render_lead_email"]
