"""Settings that contradict each other are refused at start, with the names to fix."""

from __future__ import annotations

import pytest

from devhost.defaults import LOCAL_DEFAULTS
from shared.settings import SettingsError, load_settings


def test_the_defaults_keep_a_declined_lead_inside_the_reconcile_window(tmp_path):
    settings = load_settings(LOCAL_DEFAULTS, tmp_path)
    assert settings.poll_requeue_after_seconds + settings.reconcile_every_minutes * 60 < 24 * 3600


def test_a_reconcile_window_shorter_than_the_requeue_delay_is_refused(tmp_path):
    short = {**LOCAL_DEFAULTS, "RECONCILE_WINDOW_HOURS": "0.5", "POLL_REQUEUE_AFTER_SECONDS": "1800"}
    with pytest.raises(SettingsError, match="POLL_REQUEUE_AFTER_SECONDS"):
        load_settings(short, tmp_path)
