"""Fire times of cron expressions in a time zone, across daylight-saving changes."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from schedule_specs import utc

from orchestrator.scheduler import (
    ScheduleError,
    fire_times,
    next_fire_time,
    parse_cron,
    parse_missed_policy,
    parse_timezone,
)


def times(cron: str, zone: str, after: str, until: str) -> list[datetime]:
    return list(fire_times(cron, ZoneInfo(zone), utc(after), utc(until)))


def test_berlin_spring_daily_fires_at_gap_end() -> None:
    # 2025-03-30 02:00 CET jumps to 03:00 CEST; 02:30 does not exist that day.
    fired = times("30 2 * * *", "Europe/Berlin", "2025-03-28T12:00", "2025-04-01T00:00")

    assert fired == [utc("2025-03-29T01:30"), utc("2025-03-30T01:00"), utc("2025-03-31T00:30")]


def test_berlin_fall_daily_fires_once() -> None:
    # 2025-10-26 03:00 CEST falls back to 02:00 CET; 02:30 happens twice.
    fired = times("30 2 * * *", "Europe/Berlin", "2025-10-24T12:00", "2025-10-28T00:00")

    assert fired == [utc("2025-10-25T00:30"), utc("2025-10-26T00:30"), utc("2025-10-27T01:30")]


def test_new_york_spring_daily_fires_at_gap_end() -> None:
    # 2025-03-09 02:00 EST jumps to 03:00 EDT.
    fired = times("30 2 * * *", "America/New_York", "2025-03-07T12:00", "2025-03-11T00:00")

    assert fired == [utc("2025-03-08T07:30"), utc("2025-03-09T07:00"), utc("2025-03-10T06:30")]


def test_new_york_fall_daily_fires_once() -> None:
    # 2025-11-02 02:00 EDT falls back to 01:00 EST; 01:30 happens twice.
    fired = times("30 1 * * *", "America/New_York", "2025-10-31T12:00", "2025-11-04T00:00")

    assert fired == [utc("2025-11-01T05:30"), utc("2025-11-02T05:30"), utc("2025-11-03T06:30")]


def test_berlin_spring_half_hourly_keeps_rhythm() -> None:
    fired = times("*/30 * * * *", "Europe/Berlin", "2025-03-29T23:50", "2025-03-30T02:10")

    assert fired == [utc(f"2025-03-30T{h:02d}:{m:02d}") for h in (0, 1) for m in (0, 30)] + [
        utc("2025-03-30T02:00")
    ]


def test_berlin_fall_half_hourly_fires_both_passes() -> None:
    fired = times("*/30 * * * *", "Europe/Berlin", "2025-10-25T23:50", "2025-10-26T02:10")

    # 02:00 and 02:30 local happen twice (00:00/00:30 UTC in CEST, 01:00/01:30 UTC in CET).
    assert fired == [utc(f"2025-10-26T{h:02d}:{m:02d}") for h in (0, 1) for m in (0, 30)] + [
        utc("2025-10-26T02:00")
    ]


def test_new_york_half_hourly_keeps_rhythm() -> None:
    spring = times("*/30 * * * *", "America/New_York", "2025-03-09T06:20", "2025-03-09T07:40")
    fall = times("*/30 * * * *", "America/New_York", "2025-11-02T04:50", "2025-11-02T06:40")

    assert spring == [utc("2025-03-09T06:30"), utc("2025-03-09T07:00"), utc("2025-03-09T07:30")]
    assert fall == [utc(f"2025-11-02T{h:02d}:{m:02d}") for h in (5, 6) for m in (0, 30)]


def test_fixed_hour_fires_first_pass_only() -> None:
    # Hour field 2: the wall-clock times 02:00 and 02:30 fire once each.
    fired = times("*/30 2 * * *", "Europe/Berlin", "2025-10-25T23:50", "2025-10-26T03:00")

    assert fired == [utc("2025-10-26T00:00"), utc("2025-10-26T00:30")]


def test_window_excludes_start_and_includes_end() -> None:
    fired = times("0 * * * *", "UTC", "2025-01-01T00:00", "2025-01-01T02:00")

    assert fired == [utc("2025-01-01T01:00"), utc("2025-01-01T02:00")]


def test_aliases_fire_like_their_expansion() -> None:
    daily = times("@daily", "UTC", "2025-01-01T00:00", "2025-01-03T00:00")

    assert daily == [utc("2025-01-02T00:00"), utc("2025-01-03T00:00")]


def test_next_fire_time_is_after_the_given_instant() -> None:
    assert next_fire_time("0 9 * * 1", ZoneInfo("UTC"), utc("2025-01-01T00:00")) == utc(
        "2025-01-06T09:00"
    )


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("61 * * * *", "invalid cron expression '61 * * * *'"),
        ("* * * *", "4 fields"),
        ("0 0 * * * *", "6 fields"),
        ("0 0 31 2 *", "never fires"),
        ("every day", "invalid cron expression"),
    ],
)
def test_invalid_cron_names_option_and_value(expression: str, expected: str) -> None:
    with pytest.raises(ScheduleError) as caught:
        parse_cron(expression, "--cron")

    assert str(caught.value).startswith("--cron: ")
    assert expected in str(caught.value)


def test_cron_spacing_is_normalised() -> None:
    assert parse_cron("  30   2 * *  * ") == "30 2 * * *"


@pytest.mark.parametrize("zone", ["Europe/Paris2", "", "../etc/passwd", "Mars/Olympus"])
def test_unknown_time_zone_names_option_and_value(zone: str) -> None:
    with pytest.raises(ScheduleError) as caught:
        parse_timezone(zone, "--timezone")

    assert str(caught.value).startswith("--timezone: unknown time zone")
    assert repr(zone) in str(caught.value)


def test_invalid_policy_lists_valid_ones() -> None:
    with pytest.raises(ScheduleError, match="use one of: skip, run_once"):
        parse_missed_policy("never", "--missed")
