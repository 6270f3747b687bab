"""`tick`: which fires start runs, across DST, missed fires, overlap, pause and updates."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest
from schedule_specs import utc, write_spec

from orchestrator.scheduler import create_schedule, tick, update_schedule
from orchestrator.spec import LoadedSpec, load_spec
from schemas.records import RunState
from storage.catalog import Catalog
from storage.objects import ObjectStore
from storage.schedules import FireStatus, ScheduleStore


def ticks(start: str, end: str, every: timedelta, offset: timedelta) -> list[datetime]:
    """Return tick times from `start` to `end`, `offset` after each multiple of `every`."""
    current = utc(start) + offset
    result = []
    while current <= utc(end):
        result.append(current)
        current += every
    return result


def started(catalog: Catalog, schedule_id: str) -> list[datetime]:
    fires = ScheduleStore(catalog).list_fires(schedule_id, limit=1000)
    return sorted(f.fire_time for f in fires if f.status is FireStatus.STARTED)


@pytest.mark.parametrize(
    ("cron", "zone", "start", "end", "expected"),
    [
        (
            "30 2 * * *",
            "Europe/Berlin",
            "2025-03-28T12:00",
            "2025-04-01T00:00",
            ["2025-03-29T01:30", "2025-03-30T01:00", "2025-03-31T00:30"],
        ),
        (
            "30 2 * * *",
            "Europe/Berlin",
            "2025-10-24T12:00",
            "2025-10-28T00:00",
            ["2025-10-25T00:30", "2025-10-26T00:30", "2025-10-27T01:30"],
        ),
        (
            "30 2 * * *",
            "America/New_York",
            "2025-03-07T12:00",
            "2025-03-11T00:00",
            ["2025-03-08T07:30", "2025-03-09T07:00", "2025-03-10T06:30"],
        ),
        (
            "30 1 * * *",
            "America/New_York",
            "2025-10-31T12:00",
            "2025-11-04T00:00",
            ["2025-11-01T05:30", "2025-11-02T05:30", "2025-11-03T06:30"],
        ),
        (
            "*/30 * * * *",
            "Europe/Berlin",
            "2025-10-25T23:30",
            "2025-10-26T02:15",
            ["2025-10-26T00:00", "2025-10-26T00:30", "2025-10-26T01:00", "2025-10-26T01:30"]
            + ["2025-10-26T02:00"],
        ),
        (
            "*/30 * * * *",
            "Europe/Berlin",
            "2025-03-29T23:30",
            "2025-03-30T02:15",
            ["2025-03-30T00:00", "2025-03-30T00:30", "2025-03-30T01:00", "2025-03-30T01:30"]
            + ["2025-03-30T02:00"],
        ),
    ],
)
def test_ticks_across_dst_start_expected_runs(
    catalog: Catalog,
    store: ObjectStore,
    loaded: LoadedSpec,
    cron: str,
    zone: str,
    start: str,
    end: str,
    expected: list[str],
) -> None:
    schedule = create_schedule(
        catalog, store, loaded, cron=cron, timezone=zone, overlap_policy="allow", now=utc(start)
    )
    # A tick 30 s after every half hour: every fire time is seen within the grace period.
    run_ids: list[str] = []
    for now in ticks(start, end, timedelta(minutes=30), timedelta(seconds=30)):
        run_ids.extend(o.run_id for o in tick(catalog, now=now) if o.run_id)

    assert started(catalog, schedule.id) == [utc(t) for t in expected]
    assert len(run_ids) == len(expected)
    assert len(set(run_ids)) == len(expected)
    assert {r.id for r in catalog.list_runs(limit=100)} == set(run_ids)


def test_repeated_tick_at_same_time_starts_nothing_new(
    catalog: Catalog, store: ObjectStore, loaded: LoadedSpec
) -> None:
    create_schedule(
        catalog, store, loaded, cron="0 * * * *", timezone="UTC", now=utc("2025-01-01T00:00")
    )

    first = tick(catalog, now=utc("2025-01-01T01:00:10"))
    second = tick(catalog, now=utc("2025-01-01T01:00:10"))
    earlier = tick(catalog, now=utc("2025-01-01T00:59"))

    assert [o.status for o in first] == [FireStatus.STARTED]
    assert second == []
    assert earlier == []
    assert len(catalog.list_runs()) == 1


def test_fired_run_records_schedule_and_fire_time(
    catalog: Catalog, store: ObjectStore, loaded: LoadedSpec
) -> None:
    schedule = create_schedule(
        catalog, store, loaded, cron="0 * * * *", timezone="UTC", now=utc("2025-01-01T00:00")
    )

    (outcome,) = tick(catalog, now=utc("2025-01-01T01:00:05"))

    assert outcome.run_id is not None
    run = catalog.get_run(outcome.run_id)
    assert run.state == RunState.PENDING
    assert run.storyboard_id == schedule.storyboard_id
    assert run.options["schedule"] == {"id": schedule.id, "fire_time": "2025-01-01T01:00:00+00:00"}
    assert run.options["references"] == schedule.options["references"]
    assert run.frames_total == 1


def test_day_down_skip_policy_fires_nothing(
    catalog: Catalog, store: ObjectStore, loaded: LoadedSpec
) -> None:
    schedule = create_schedule(
        catalog, store, loaded, cron="0 * * * *", timezone="UTC", now=utc("2025-01-01T00:00")
    )

    outcomes = tick(catalog, now=utc("2025-01-02T00:10"))

    assert [o.status for o in outcomes] == [FireStatus.SKIPPED_MISSED]
    assert outcomes[0].fire_time == utc("2025-01-02T00:00")
    assert outcomes[0].detail is not None
    assert "24 fire times" in outcomes[0].detail
    assert catalog.list_runs() == []
    assert tick(catalog, now=utc("2025-01-02T01:00:30"))[0].status is FireStatus.STARTED
    assert len(started(catalog, schedule.id)) == 1


def test_restart_within_grace_fires_latest_and_skips_backlog(
    catalog: Catalog, store: ObjectStore, loaded: LoadedSpec
) -> None:
    create_schedule(
        catalog, store, loaded, cron="0 * * * *", timezone="UTC", now=utc("2025-01-01T00:00")
    )

    outcomes = tick(catalog, now=utc("2025-01-02T00:00:40"))

    assert [(o.status, o.fire_time) for o in outcomes] == [
        (FireStatus.SKIPPED_MISSED, utc("2025-01-01T23:00")),
        (FireStatus.STARTED, utc("2025-01-02T00:00")),
    ]
    assert outcomes[0].detail is not None
    assert "23 fire times" in outcomes[0].detail
    assert len(catalog.list_runs()) == 1


def test_day_down_run_once_fires_once(
    catalog: Catalog, store: ObjectStore, loaded: LoadedSpec
) -> None:
    create_schedule(
        catalog,
        store,
        loaded,
        cron="0 * * * *",
        timezone="UTC",
        missed_policy="run_once",
        now=utc("2025-01-01T00:00"),
    )

    outcomes = tick(catalog, now=utc("2025-01-02T00:10"))

    assert [(o.status, o.fire_time) for o in outcomes] == [
        (FireStatus.STARTED, utc("2025-01-02T00:00"))
    ]
    assert outcomes[0].detail is not None
    assert "24 fire times" in outcomes[0].detail
    assert len(catalog.list_runs()) == 1


def test_overlap_skip_waits_for_previous_run(
    catalog: Catalog, store: ObjectStore, loaded: LoadedSpec
) -> None:
    create_schedule(
        catalog, store, loaded, cron="0 * * * *", timezone="UTC", now=utc("2025-01-01T00:00")
    )
    (first,) = tick(catalog, now=utc("2025-01-01T01:00:10"))
    assert first.run_id is not None

    (blocked,) = tick(catalog, now=utc("2025-01-01T02:00:10"))
    catalog.set_run_state(first.run_id, RunState.RUNNING)
    (still_blocked,) = tick(catalog, now=utc("2025-01-01T03:00:10"))
    catalog.set_run_state(first.run_id, RunState.COMPLETED)
    (free,) = tick(catalog, now=utc("2025-01-01T04:00:10"))

    assert blocked.status is FireStatus.SKIPPED_OVERLAP
    assert blocked.detail == f"run {first.run_id} of this schedule is still pending"
    assert still_blocked.status is FireStatus.SKIPPED_OVERLAP
    assert free.status is FireStatus.STARTED
    assert len(catalog.list_runs()) == 2


def test_overlap_skip_ignores_interrupted_runs(
    catalog: Catalog, store: ObjectStore, loaded: LoadedSpec
) -> None:
    create_schedule(
        catalog, store, loaded, cron="0 * * * *", timezone="UTC", now=utc("2025-01-01T00:00")
    )
    (first,) = tick(catalog, now=utc("2025-01-01T01:00:10"))
    assert first.run_id is not None
    catalog.set_run_state(first.run_id, RunState.INTERRUPTED)

    (second,) = tick(catalog, now=utc("2025-01-01T02:00:10"))

    assert second.status is FireStatus.STARTED


def test_overlap_allow_starts_runs_side_by_side(
    catalog: Catalog, store: ObjectStore, loaded: LoadedSpec
) -> None:
    create_schedule(
        catalog,
        store,
        loaded,
        cron="0 * * * *",
        timezone="UTC",
        overlap_policy="allow",
        now=utc("2025-01-01T00:00"),
    )

    first = tick(catalog, now=utc("2025-01-01T01:00:10"))
    second = tick(catalog, now=utc("2025-01-01T02:00:10"))

    assert [o.status for o in first + second] == [FireStatus.STARTED, FireStatus.STARTED]
    assert [r.state for r in catalog.list_runs()] == [RunState.PENDING, RunState.PENDING]


def test_paused_schedule_does_not_fire_or_catch_up(
    catalog: Catalog, store: ObjectStore, loaded: LoadedSpec
) -> None:
    schedules = ScheduleStore(catalog)
    schedule = create_schedule(
        catalog,
        store,
        loaded,
        cron="0 * * * *",
        timezone="UTC",
        missed_policy="run_once",
        now=utc("2025-01-01T00:00"),
    )
    schedules.pause(schedule.id[:6])

    assert tick(catalog, now=utc("2025-01-01T05:00:10")) == []
    schedules.resume(schedule.id, now=utc("2025-01-01T05:30"))
    assert tick(catalog, now=utc("2025-01-01T05:40")) == []
    (outcome,) = tick(catalog, now=utc("2025-01-01T06:00:10"))

    assert outcome.fire_time == utc("2025-01-01T06:00")
    assert outcome.detail is None


def test_update_with_new_spec_changes_later_fires_only(
    tmp_path: Path, catalog: Catalog, store: ObjectStore, loaded: LoadedSpec
) -> None:
    schedule = create_schedule(
        catalog,
        store,
        loaded,
        cron="0 * * * *",
        timezone="UTC",
        overlap_policy="allow",
        now=utc("2025-01-01T00:00"),
    )
    (before,) = tick(catalog, now=utc("2025-01-01T01:00:10"))
    # Editing the file alone changes nothing: the schedule fires what was stored.
    spec_file = loaded.source
    assert spec_file is not None
    spec_file.write_text(spec_file.read_text().replace("Ana at the counter", "Ana outside"))
    (unchanged,) = tick(catalog, now=utc("2025-01-01T02:00:10"))
    update_schedule(catalog, store, schedule.id, loaded=load_spec(spec_file))
    (after,) = tick(catalog, now=utc("2025-01-01T03:00:10"))

    assert before.run_id is not None
    assert unchanged.run_id is not None
    assert after.run_id is not None
    run_ids = [before.run_id, unchanged.run_id, after.run_id]
    prompts = [catalog.list_frames(run_id)[0].prompt for run_id in run_ids]
    assert prompts == ["Ana at the counter", "Ana at the counter", "Ana outside"]
    assert (
        catalog.get_run(after.run_id).storyboard_id != catalog.get_run(before.run_id).storyboard_id
    )


def test_update_of_cron_applies_from_last_evaluation(
    catalog: Catalog, store: ObjectStore, loaded: LoadedSpec
) -> None:
    schedule = create_schedule(
        catalog, store, loaded, cron="0 0 * * *", timezone="UTC", now=utc("2025-01-01T00:00")
    )
    tick(catalog, now=utc("2025-01-01T10:00"))

    update_schedule(catalog, store, schedule.id, cron="15 10 * * *", timezone="Asia/Tokyo")
    (outcome,) = tick(catalog, now=utc("2025-01-02T01:15:20"))

    assert outcome.fire_time == utc("2025-01-02T01:15")


def test_matrix_fire_creates_full_plan(
    tmp_path: Path, catalog: Catalog, store: ObjectStore
) -> None:
    matrix = load_spec(write_spec(tmp_path / "matrix"))
    create_schedule(
        catalog, store, matrix, cron="@hourly", timezone="UTC", now=utc("2025-01-01T00:00")
    )

    (outcome,) = tick(catalog, now=utc("2025-01-01T01:00:01"))

    assert outcome.run_id is not None
    assert catalog.run_summary(outcome.run_id).frames == 33


def test_invalid_stored_storyboard_records_failed_fire(
    catalog: Catalog, store: ObjectStore, loaded: LoadedSpec
) -> None:
    schedule = create_schedule(
        catalog, store, loaded, cron="0 * * * *", timezone="UTC", now=utc("2025-01-01T00:00")
    )
    broken = {**loaded.storyboard.model_dump(mode="json"), "scenes": []}
    storyboard_id = catalog.put_storyboard("broken", broken, "broken-hash")
    ScheduleStore(catalog).update(schedule.id, storyboard_id=storyboard_id)

    (outcome,) = tick(catalog, now=utc("2025-01-01T01:00:10"))
    again = tick(catalog, now=utc("2025-01-01T01:00:20"))

    assert outcome.status is FireStatus.FAILED
    assert outcome.detail is not None
    assert "stored storyboard is invalid" in outcome.detail
    assert again == []
    assert catalog.list_runs() == []


def test_removed_schedule_keeps_its_runs(
    catalog: Catalog, store: ObjectStore, loaded: LoadedSpec
) -> None:
    schedules = ScheduleStore(catalog)
    schedule = create_schedule(
        catalog, store, loaded, cron="0 * * * *", timezone="UTC", now=utc("2025-01-01T00:00")
    )
    (outcome,) = tick(catalog, now=utc("2025-01-01T01:00:10"))

    schedules.delete(schedule.id)

    assert schedules.list_schedules() == []
    assert outcome.run_id is not None
    assert catalog.get_run(outcome.run_id).state == RunState.PENDING
    assert tick(catalog, now=utc("2025-01-01T02:00:10")) == []
