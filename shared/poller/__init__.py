"""The safety net: poll Meta for leads the webhook missed; the token and subscription checks are in `monitoring`."""
