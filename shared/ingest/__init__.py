"""The ingestion pipeline: fetch, validate, dedupe, transform, store, audit; retry or dead-letter."""
