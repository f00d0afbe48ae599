"""NCRONTAB schedules: six fields, UTC occurrences, names, steps, settings, and clear rejections."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from devhost.ncrontab import Schedule, ScheduleError


def occurrences(expression: str, start: datetime, count: int) -> list[datetime]:
    schedule = Schedule.parse(expression)
    found, moment = [], start
    for _ in range(count):
        moment = schedule.next_after(moment)
        found.append(moment)
    return found


def test_every_five_minutes_fires_on_the_five_minute_marks():
    start = datetime(2026, 3, 10, 12, 3, 17)
    assert occurrences("0 */5 * * * *", start, 3) == [
        datetime(2026, 3, 10, 12, 5),
        datetime(2026, 3, 10, 12, 10),
        datetime(2026, 3, 10, 12, 15),
    ]


def test_next_occurrence_is_strictly_after_the_given_moment():
    assert Schedule.parse("0 */5 * * * *").next_after(datetime(2026, 3, 10, 12, 5)) == datetime(2026, 3, 10, 12, 10)


def test_daily_at_seven_rolls_over_to_the_next_day():
    schedule = Schedule.parse("0 0 7 * * *")
    assert schedule.next_after(datetime(2026, 3, 10, 6, 59, 59)) == datetime(2026, 3, 10, 7, 0)
    assert schedule.next_after(datetime(2026, 3, 10, 7, 0)) == datetime(2026, 3, 11, 7, 0)


def test_every_second():
    assert occurrences("* * * * * *", datetime(2026, 1, 1, 0, 0, 0, 500_000), 2) == [
        datetime(2026, 1, 1, 0, 0, 1),
        datetime(2026, 1, 1, 0, 0, 2),
    ]


def test_ranges_lists_and_steps_combine():
    # minutes 10, 20 and 40-50 every 5; hours 9 to 17 every 4 (9, 13, 17)
    schedule = Schedule.parse("30 10,20,40-50/5 9-17/4 * * *")
    assert schedule.minutes == frozenset({10, 20, 40, 45, 50})
    assert schedule.hours == frozenset({9, 13, 17})
    assert occurrences("30 10,20,40-50/5 9-17/4 * * *", datetime(2026, 5, 5, 9, 45), 3) == [
        datetime(2026, 5, 5, 9, 45, 30),
        datetime(2026, 5, 5, 9, 50, 30),
        datetime(2026, 5, 5, 13, 10, 30),
    ]


def test_a_single_value_with_a_step_runs_to_the_end_of_the_field():
    assert Schedule.parse("0 5/20 * * * *").minutes == frozenset({5, 25, 45})


def test_day_names_pick_weekdays():
    # 2026-03-09 is a Monday
    schedule = Schedule.parse("0 0 9 * * Mon-Fri")
    assert schedule.next_after(datetime(2026, 3, 13, 10, 0)) == datetime(2026, 3, 16, 9, 0)  # Fri after 9 -> Mon
    assert Schedule.parse("0 0 9 * * monday,FRIDAY").days_of_week == frozenset({1, 5})


def test_month_names_and_month_rollover():
    schedule = Schedule.parse("0 0 0 1 Jan,Jul *")
    assert schedule.next_after(datetime(2026, 1, 1, 0, 0)) == datetime(2026, 7, 1)
    assert schedule.next_after(datetime(2026, 7, 1, 0, 0)) == datetime(2027, 1, 1)


def test_day_31_skips_months_without_it():
    assert occurrences("0 0 12 31 * *", datetime(2026, 1, 31, 13, 0), 3) == [
        datetime(2026, 3, 31, 12, 0),
        datetime(2026, 5, 31, 12, 0),
        datetime(2026, 7, 31, 12, 0),
    ]


def test_leap_day_waits_for_a_leap_year():
    schedule = Schedule.parse("0 0 0 29 Feb *")
    assert schedule.next_after(datetime(2025, 3, 1)) == datetime(2028, 2, 29)
    # 2100 is not a leap year
    assert schedule.next_after(datetime(2096, 3, 1)) == datetime(2104, 2, 29)


def test_sunday_is_both_0_and_7():
    zero = Schedule.parse("0 0 8 * * 0")
    seven = Schedule.parse("0 0 8 * * 7")
    assert zero.days_of_week == seven.days_of_week == frozenset({0})
    # 2026-03-15 is a Sunday
    assert seven.next_after(datetime(2026, 3, 11)) == datetime(2026, 3, 15, 8, 0)
    assert Schedule.parse("0 0 8 * * 5-7").days_of_week == frozenset({5, 6, 0})


def test_day_of_month_and_day_of_week_must_both_match():
    # Friday the 13th: NCrontab combines the two day fields with AND
    assert Schedule.parse("0 0 0 13 * Fri").next_after(datetime(2026, 1, 1)) == datetime(2026, 2, 13)


def test_aware_moments_are_read_in_utc_and_answered_in_utc():
    plus_two = timezone(timedelta(hours=2))
    moment = datetime(2026, 3, 10, 8, 30, tzinfo=plus_two)  # 06:30 UTC
    assert Schedule.parse("0 0 7 * * *").next_after(moment) == datetime(2026, 3, 10, 7, 0, tzinfo=UTC)


def test_settings_are_resolved_from_the_environment():
    schedule = Schedule.parse("%DIGEST_SCHEDULE%", {"DIGEST_SCHEDULE": "0 30 6 * * *"})
    assert schedule.expression == "0 30 6 * * *"
    assert schedule.next_after(datetime(2026, 1, 1)) == datetime(2026, 1, 1, 6, 30)


def test_a_missing_setting_is_named():
    with pytest.raises(ScheduleError, match="DIGEST_SCHEDULE"):
        Schedule.parse("%DIGEST_SCHEDULE%", {})


def test_five_field_cron_is_rejected_with_a_hint():
    with pytest.raises(ScheduleError, match="6") as info:
        Schedule.parse("*/5 * * * *")
    assert "seconds" in str(info.value)


@pytest.mark.parametrize(
    "expression",
    [
        "",
        "0 0 0 * * * *",
        "60 * * * * *",
        "0 0 24 * * *",
        "0 0 0 0 * *",
        "0 0 0 * 13 *",
        "0 0 0 * * 8",
        "0 */0 * * * *",
        "0 10-5 * * * *",
        "0 1,,2 * * * *",
        "0 0 0 * Foo *",
        "0 a * * * *",
        "0 0 0 30 Feb *",
    ],
)
def test_malformed_expressions_are_rejected(expression: str):
    with pytest.raises(ScheduleError):
        Schedule.parse(expression)
