"""Typed shapes at the edges: the webhook envelope, the Graph lead, the queue messages, stored leads."""
