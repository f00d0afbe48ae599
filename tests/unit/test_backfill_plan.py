"""Where each form's poll starts: from its checkpoint however old, within the cap, and the gap named."""

from __future__ import annotations

from devhost.defaults import LOCAL_DEFAULTS
from shared.poller.backfill import BackfillLimits, plan_poll
from shared.settings import load_settings
from wiring import Services

HOUR, DAY = 3600, 24 * 3600
NOW = 1_800_000_000.0
LIMITS = BackfillLimits(overlap_seconds=300, window_seconds=DAY, first_run_seconds=DAY, max_backfill_seconds=90 * DAY)


def test_a_form_starts_at_its_checkpoint_minus_the_overlap_however_old():
    plan = plan_poll({"1": int(NOW - 10 * DAY), "2": int(NOW - 600)}, NOW, LIMITS, full=False)
    assert plan.starts == {"1": int(NOW - 10 * DAY) - 300, "2": int(NOW - 900)}


def test_a_full_pass_starts_no_later_than_the_window_floor_and_no_later_than_the_checkpoint():
    plan = plan_poll({"1": int(NOW - 3 * DAY), "2": int(NOW - 600)}, NOW, LIMITS, full=True)
    assert plan.starts == {"1": int(NOW - 3 * DAY) - 300, "2": int(NOW - DAY)}


def test_a_form_without_a_checkpoint_starts_where_the_oldest_checkpoint_does():
    plan = plan_poll({"1": int(NOW - 2 * DAY), "new": None}, NOW, LIMITS, full=False)
    assert plan.starts["new"] == plan.starts["1"]


def test_a_first_install_reads_first_run_hours_and_names_no_gap():
    limits = BackfillLimits(
        overlap_seconds=300, window_seconds=DAY, first_run_seconds=48 * HOUR, max_backfill_seconds=90 * DAY
    )
    plan = plan_poll({"1": None, "2": None}, NOW, limits, full=True)
    assert plan.starts == {"1": int(NOW - 48 * HOUR), "2": int(NOW - 48 * HOUR)}
    assert plan.gap is None


def test_reading_never_starts_before_the_cap_and_the_gap_says_what_was_not_read():
    plan = plan_poll({"1": int(NOW - 100 * DAY)}, NOW, LIMITS, full=False)
    assert plan.starts == {"1": int(NOW - 90 * DAY)}
    assert plan.gap is not None and plan.gap.capped
    assert plan.gap.as_dict()["unreadable_hours"] == round((10 * DAY + 300) / HOUR, 2)


def test_downtime_within_the_window_is_no_gap_and_downtime_beyond_it_is_one():
    assert plan_poll({"1": int(NOW - 20 * HOUR)}, NOW, LIMITS, full=True).gap is None
    gap = plan_poll({"1": int(NOW - 30 * HOUR)}, NOW, LIMITS, full=True).gap
    assert gap is not None and gap.as_dict()["hours"] == 30.0 and not gap.capped


def test_the_settings_set_the_first_run_window_and_the_cap():
    settings = load_settings({**LOCAL_DEFAULTS, "POLL_FIRST_RUN_HOURS": "48", "POLL_MAX_BACKFILL_DAYS": "30"})
    config = Services(settings).poller_deps().config
    assert (config.first_run_hours, config.max_backfill_days) == (48, 30)


def test_the_defaults_are_a_day_on_first_install_and_ninety_days_after_downtime():
    config = Services(load_settings(LOCAL_DEFAULTS)).poller_deps().config
    assert (config.first_run_hours, config.max_backfill_days) == (24, 90)
