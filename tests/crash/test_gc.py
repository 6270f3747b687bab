"""Garbage collection keeps every object a row or run option refers to, and only those."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from crash_helpers import write_spec

from orchestrator.app_state import Backends, open_backends
from orchestrator.gc import collect_garbage, referenced_keys
from orchestrator.settings import Settings
from orchestrator.spec import load_spec
from orchestrator.submit import submit
from schemas.records import AttemptState, FrameState
from storage.objects import TEMP_PREFIX, LocalObjectStore

# A clock one day ahead, so that every object counts as older than the grace period.
LATER = datetime.now(UTC) + timedelta(days=1)


@pytest.fixture
def backends(tmp_path: Path) -> Backends:
    return open_backends(Settings(home=tmp_path / "home"))


def test_reference_images_of_a_run_are_kept(tmp_path: Path, backends: Backends) -> None:
    """Reference and style images are referenced only through the run's options."""
    run_id = submit(backends.catalog, backends.store, load_spec(write_spec(tmp_path / "spec")))
    options = backends.catalog.get_run(run_id).options
    reference_key = options["references"]["ana"][0]["key"]

    report = collect_garbage(backends.catalog, backends.store, grace_s=60, now=LATER)

    assert report.removed == []
    assert report.referenced == 1
    assert backends.store.exists(reference_key)
    assert reference_key in referenced_keys(backends.catalog)


def test_orphans_go_and_referenced_objects_stay(tmp_path: Path, backends: Backends) -> None:
    catalog, store = backends.catalog, backends.store
    run_id = submit(catalog, store, load_spec(write_spec(tmp_path / "spec", variants=2)))
    first, second = catalog.list_frames(run_id)
    accepted_key = store.put(b"accepted image")
    attempt_id = catalog.start_attempt(run_id, first.key, 1, first.seed)
    catalog.finish_attempt(
        attempt_id,
        AttemptState.DONE,
        object_key=accepted_key,
        sha256=accepted_key.rsplit("/", 1)[1].split(".")[0],
    )
    catalog.accept_frame(run_id, first.key, attempt_id, FrameState.ACCEPTED, {})
    attempt_key = store.put(b"image of an attempt that was not accepted")
    other_id = catalog.start_attempt(run_id, second.key, 1, second.seed)
    catalog.finish_attempt(
        other_id,
        AttemptState.DONE,
        object_key=attempt_key,
        sha256=attempt_key.rsplit("/", 1)[1].split(".")[0],
    )
    orphan = store.put(b"image whose driver died before its row")

    dry = collect_garbage(catalog, store, grace_s=3600, dry_run=True, now=LATER)
    assert dry.removed == [orphan]
    assert store.exists(orphan)

    young = collect_garbage(catalog, store, grace_s=3600)
    assert young.removed == []
    assert young.recent == 1

    report = collect_garbage(catalog, store, grace_s=3600, now=LATER)
    assert report.removed == [orphan]
    assert report.referenced == 3
    assert report.missing == []
    assert not store.exists(orphan)
    assert store.exists(accepted_key)
    assert store.exists(attempt_key)


def test_missing_objects_are_reported(tmp_path: Path, backends: Backends) -> None:
    run_id = submit(backends.catalog, backends.store, load_spec(write_spec(tmp_path / "spec")))
    reference_key = backends.catalog.get_run(run_id).options["references"]["ana"][0]["key"]
    backends.store.delete(reference_key)

    report = collect_garbage(backends.catalog, backends.store, grace_s=0)

    assert report.missing == [reference_key]


def test_stale_temp_files_are_swept(backends: Backends) -> None:
    store = backends.store
    assert isinstance(store, LocalObjectStore)
    key = store.put(b"x")
    folder = store.root / "sha256" / key.split("/")[1]
    stale = folder / f"{TEMP_PREFIX}stale"
    fresh = folder / f"{TEMP_PREFIX}fresh"
    stale.write_bytes(b"half")
    fresh.write_bytes(b"half")
    old = time.time() - 7200
    os.utime(stale, (old, old))

    dry = collect_garbage(backends.catalog, store, grace_s=3600, dry_run=True)
    assert dry.temp_files == 1
    assert stale.exists()

    report = collect_garbage(backends.catalog, store, grace_s=3600)
    assert report.temp_files == 1
    assert not stale.exists()
    assert fresh.exists()


def test_negative_grace_is_rejected(backends: Backends) -> None:
    with pytest.raises(ValueError, match="grace_s must be >= 0"):
        collect_garbage(backends.catalog, backends.store, grace_s=-1)
