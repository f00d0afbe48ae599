"""The safety net: poll Meta for leads the webhook missed, watch the token and page subscriptions."""
