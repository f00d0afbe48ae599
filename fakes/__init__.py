"""Stand-ins for what the agent talks to outside Azure: Meta's Graph API (`sandbox`), a mail server
(`smtp_sink`) and Meta's webhook deliveries (`simulate`). Used by `make run`, the tests and the benchmarks;
never deployed. The stand-in for the Functions host itself is `devhost/`.
"""
