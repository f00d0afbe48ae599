"""Monitoring: what needs a human and how the agent reports on itself.

`incidents` opens and resolves each kind once; `watch` raises the dead-letter and silence
incidents; `token_state` pauses lead fetches while the access token is invalid; `meta_health`
checks the token (`debug_token`) and restores page subscriptions; `health` answers `/api/health`.
"""
