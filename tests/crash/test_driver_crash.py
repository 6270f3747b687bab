"""A driver killed mid-run, resumed with `onmodel resume`, then swept by `onmodel gc`.

Real processes throughout: `onmodel run` is SIGKILLed while frames are in
flight, its orphaned Ray processes are killed by pid, and `onmodel resume`
and `onmodel gc --grace 0` run as fresh processes on the same home folder.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from crash_helpers import (
    CliProcesses,
    assert_no_leftovers,
    first_line,
    wait_for_accepted,
    write_spec,
)

from orchestrator.gc import referenced_keys
from orchestrator.recovery import find_orphaned_runs
from orchestrator.settings import Settings
from schemas.records import AttemptState, FrameState, RunState
from storage.catalog import Catalog
from storage.objects import TEMP_PREFIX, LocalObjectStore

FRAMES = 30


@pytest.mark.slow
def test_killed_driver_resumes_and_gc_leaves_no_orphans(tmp_path: Path, cli: CliProcesses) -> None:
    spec = write_spec(tmp_path / "spec", variants=FRAMES, size=256, steps=4)
    home = tmp_path / "home"
    settings = Settings(home=home)

    # 1. Start a run and kill its driver with SIGKILL once a few frames are accepted.
    proc = cli.start("run", str(spec))
    run_id = first_line(proc)
    catalog = Catalog(settings.catalog_url)
    wait_for_accepted(catalog, run_id, 3, timeout=180)
    cli.kill(proc)
    # Ray's head processes exit with their driver; its agents stay and are killed here by pid.
    cli.cleanup()

    # 2. The catalog contents at the moment of the kill.
    run = catalog.get_run(run_id)
    assert run.state == RunState.RUNNING
    assert run.driver is not None
    assert run.driver.endswith(f":{proc.pid}")
    accepted_before = {
        frame.key for frame in catalog.list_frames(run_id, states=[FrameState.ACCEPTED])
    }
    assert 3 <= len(accepted_before) < FRAMES, "the kill did not land mid-run"
    attempts_before = {
        key: [a.id for a in catalog.list_attempts(run_id, key)] for key in accepted_before
    }
    in_flight = [a for a in catalog.list_attempts(run_id) if a.state == AttemptState.RUNNING]

    # 3. Resume in a new process: the run completes as if nothing had happened.
    code, stdout, stderr = cli.run("resume", run_id, "--json", timeout=240)
    assert code == 0, stderr
    assert_no_leftovers(cli)
    summary = catalog.run_summary(run_id)
    assert summary.state == RunState.COMPLETED
    assert summary.accepted == FRAMES
    assert summary.failed == 0
    for key, attempt_ids in attempts_before.items():
        after = [a.id for a in catalog.list_attempts(run_id, key)]
        assert after == attempt_ids, f"frame {key} was accepted before the kill but ran again"
    for attempt in in_flight:
        (row,) = [a for a in catalog.list_attempts(run_id, attempt.frame_key) if a.id == attempt.id]
        assert row.state == AttemptState.ABANDONED
    assets = catalog.list_assets(run_id=run_id)
    assert len(assets) == FRAMES
    assert len({asset.frame_key for asset in assets}) == FRAMES

    # 4. An orphan object and a stale temp file, as a crash between write and row leaves them.
    store = LocalObjectStore(settings.object_location)
    orphan = store.put(b"written by a driver that died before its catalog row")
    stale = store.root / "sha256" / orphan.split("/")[1] / f"{TEMP_PREFIX}stale"
    stale.write_bytes(b"half an image")
    old = time.time() - 10
    os.utime(stale, (old, old))

    # 5. gc with no grace period: every object left is referenced, every reference exists.
    code, stdout, stderr = cli.run("gc", "--grace", "0", timeout=120)
    assert code == 0, stderr
    assert f"removed {orphan}" in stdout
    assert not store.exists(orphan)
    assert not stale.exists()
    stored = {key for key, _ in store.iter_keys()}
    referenced = referenced_keys(catalog)
    assert stored == referenced
    assert {asset.object_key for asset in assets} <= stored


@pytest.mark.slow
def test_sigterm_interrupts_run_and_stops_ray(tmp_path: Path, cli: CliProcesses) -> None:
    """SIGTERM (a pod shutdown, `kill`) marks the run interrupted and stops the local Ray."""
    spec = write_spec(tmp_path / "spec", variants=FRAMES, size=256, steps=4)
    catalog = Catalog(Settings(home=tmp_path / "home").catalog_url)

    proc = cli.start("run", str(spec))
    run_id = first_line(proc)
    wait_for_accepted(catalog, run_id, 2, timeout=180)
    proc.send_signal(signal.SIGTERM)
    code = cli.wait(proc, timeout=60)

    assert code == 143
    assert_no_leftovers(cli)
    run = catalog.get_run(run_id)
    assert run.state == RunState.INTERRUPTED
    assert run.error == "driver interrupted"
    attempts = catalog.list_attempts(run_id)
    assert AttemptState.RUNNING not in {attempt.state for attempt in attempts}
    assert [r.id for r in find_orphaned_runs(catalog)] == [run_id]
