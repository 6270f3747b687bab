"""The schedule tables: migration, id prefixes, run claims."""

from __future__ import annotations

from typing import Any

import pytest
from schedule_specs import utc

from orchestrator.scheduler import create_schedule, tick
from orchestrator.spec import LoadedSpec
from schemas.errors import NotFoundError
from storage.catalog import Catalog
from storage.migrate import schema_differences
from storage.objects import ObjectStore
from storage.schedules import FireStatus, ScheduleStore

MY_TABLES = {"schedules", "schedule_fires"}


def tables_of(difference: Any) -> set[str]:
    """Return the tables an Alembic autogenerate difference touches."""
    if isinstance(difference, list):
        return set().union(*(tables_of(item) for item in difference))
    kind, *rest = difference
    if kind.startswith("modify_") or kind in ("add_column", "remove_column"):
        # (kind, schema, table name, ...)
        return {rest[1]}
    target = rest[0]
    return {getattr(target, "table", target).name}


def test_migration_matches_schedule_models(catalog: Catalog) -> None:
    differences = [d for d in schema_differences(catalog.engine) if tables_of(d) & MY_TABLES]

    assert differences == []


def test_prefix_lookup_and_not_found(
    catalog: Catalog, store: ObjectStore, loaded: LoadedSpec
) -> None:
    schedules = ScheduleStore(catalog)
    schedule = create_schedule(catalog, store, loaded, cron="@daily", timezone="UTC")

    assert schedules.get(schedule.id[:5]).id == schedule.id
    with pytest.raises(NotFoundError, match="onmodel schedule list"):
        schedules.get("abc")
    with pytest.raises(NotFoundError):
        schedules.get("0000000000")


def test_schedule_stores_spec_references_in_object_store(
    catalog: Catalog, store: ObjectStore, loaded: LoadedSpec
) -> None:
    schedule = create_schedule(catalog, store, loaded, cron="@daily", timezone="UTC")

    (reference,) = schedule.options["references"]["ana"]
    assert store.get(reference["key"]) == loaded.references["ana"][0].png
    assert catalog.get_storyboard(schedule.storyboard_id).spec_sha256 == loaded.sha256


def test_record_no_run_rejects_started(
    catalog: Catalog, store: ObjectStore, loaded: LoadedSpec
) -> None:
    schedule = create_schedule(catalog, store, loaded, cron="@daily", timezone="UTC")

    with pytest.raises(ValueError, match="needs a run"):
        ScheduleStore(catalog).record_no_run(
            schedule.id, utc("2025-01-01T00:00"), FireStatus.STARTED, "x"
        )


def test_delete_removes_fire_rows(catalog: Catalog, store: ObjectStore, loaded: LoadedSpec) -> None:
    schedules = ScheduleStore(catalog)
    schedule = create_schedule(
        catalog, store, loaded, cron="0 * * * *", timezone="UTC", now=utc("2025-01-01T00:00")
    )
    tick(catalog, now=utc("2025-01-01T01:00:05"))

    schedules.delete(schedule.id)

    with pytest.raises(NotFoundError):
        schedules.list_fires(schedule.id)
    assert len(catalog.list_runs()) == 1
