"""The Graph API client: one place that talks to Meta and turns its errors into typed exceptions."""
