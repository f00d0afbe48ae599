"""Notifications: instant lead emails, the daily digest and alerts, through one sender interface."""
