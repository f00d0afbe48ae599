"""Settings that contradict each other are refused at start, with the names to fix."""

from __future__ import annotations

import pytest

from devhost.defaults import LOCAL_DEFAULTS
from shared.settings import SettingsError, load_settings


def test_the_defaults_keep_a_declined_lead_inside_the_reconcile_window():
    settings = load_settings(LOCAL_DEFAULTS)
    assert settings.poll_requeue_after_seconds + settings.reconcile_every_minutes * 60 < 24 * 3600


def test_a_reconcile_window_shorter_than_the_requeue_delay_is_refused():
    short = {**LOCAL_DEFAULTS, "RECONCILE_WINDOW_HOURS": "0.5", "POLL_REQUEUE_AFTER_SECONDS": "1800"}
    with pytest.raises(SettingsError, match="POLL_REQUEUE_AFTER_SECONDS"):
        load_settings(short)


ACS = {**LOCAL_DEFAULTS, "EMAIL_SENDER": "acs", "ACS_ENDPOINT": "https://agent.communication.azure.com"}


@pytest.mark.parametrize("sender", [LOCAL_DEFAULTS, ACS], ids=["smtp", "acs"])
def test_the_default_stuck_time_outlasts_the_longest_send(sender):
    settings = load_settings(sender)
    assert settings.longest_send_seconds is not None
    assert settings.notify_stuck_seconds > settings.longest_send_seconds


def test_a_stuck_time_an_acs_send_can_outlast_is_refused_in_one_line():
    slow = {**ACS, "EMAIL_TIMEOUT_SECONDS": "120", "NOTIFY_STUCK_SECONDS": "600"}  # polls alone may take 480 s
    with pytest.raises(SettingsError, match="NOTIFY_STUCK_SECONDS") as raised:
        load_settings(slow)
    assert "EMAIL_TIMEOUT_SECONDS" in str(raised.value) and "\n" not in str(raised.value)


def test_a_stuck_time_within_the_smtp_timeout_is_refused():
    slow = {**LOCAL_DEFAULTS, "EMAIL_TIMEOUT_SECONDS": "60", "NOTIFY_STUCK_SECONDS": "45"}
    with pytest.raises(SettingsError, match="NOTIFY_STUCK_SECONDS"):
        load_settings(slow)


def test_without_a_sender_the_stuck_time_is_not_checked():
    quiet = {**LOCAL_DEFAULTS, "EMAIL_SENDER": "none", "EMAIL_TIMEOUT_SECONDS": "120", "NOTIFY_STUCK_SECONDS": "30"}
    assert load_settings(quiet).longest_send_seconds is None


def test_local_settings_json_is_the_hosts_to_read_never_the_apps(tmp_path, monkeypatch):
    (tmp_path / "local.settings.json").write_text('{"Values": {"POLL_FIRST_RUN_HOURS": "48"}}', encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    assert load_settings(LOCAL_DEFAULTS).poll_first_run_hours == 24
