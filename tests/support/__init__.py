"""Shared test machinery: real local services (Azurite, sandbox Graph, SMTP) and polling waits."""
