"""The framework-free core of the Lead Monitoring Agent (no azure.functions imports here)."""
