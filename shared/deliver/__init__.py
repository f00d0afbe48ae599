"""Delivering leads and alerts beyond email: signed webhooks, Slack, Teams, Meta's Conversions API."""
