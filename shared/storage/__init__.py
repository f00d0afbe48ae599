"""The Azure Storage account (not the lead store): where it is, what its queues and tables are called, its tables.

`connection` finds the account as the Functions host does; `names` holds the queue and table names
the code, host.json and the Bicep share; `counters` (day counters) and `ratelimit` (the webhook's
per-client budget) are the two Table Storage modules.
"""
