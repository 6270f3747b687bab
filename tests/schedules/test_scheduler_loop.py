"""`onmodel scheduler`'s loop: fired runs and recovered runs are driven to the end on Ray."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import pytest
from schedule_specs import utc

from orchestrator.scheduler import create_schedule, tick
from orchestrator.scheduler_loop import SchedulerLoop
from orchestrator.settings import Settings
from orchestrator.spec import LoadedSpec
from schemas.records import RunState
from storage.catalog import Catalog
from storage.objects import ObjectStore


def dead_local_driver() -> str:
    """Return a driver name on this host whose process has exited and been reaped."""
    process = subprocess.Popen(["true"])
    process.wait()
    return f"{socket.gethostname()}:{process.pid}"


@pytest.mark.slow
def test_loop_drives_fired_and_recovered_runs(
    tmp_path: Path,
    sqlite_catalog: Catalog,
    store: ObjectStore,
    loaded: LoadedSpec,
    ray_session: None,
) -> None:
    catalog = sqlite_catalog
    settings = Settings(home=tmp_path / "home", actors=1)
    create_schedule(
        catalog,
        store,
        loaded,
        cron="0 * * * *",
        timezone="UTC",
        overlap_policy="allow",
        now=utc("2025-01-01T00:00"),
    )
    # Runs fired earlier: one never run, one whose local driver died, one
    # whose driver runs on another host.
    fired = [tick(catalog, now=utc(f"2025-01-01T0{hour}:00:05"))[0] for hour in (1, 2, 3)]
    pending, orphan, elsewhere = (outcome.run_id for outcome in fired)
    assert pending is not None
    assert orphan is not None
    assert elsewhere is not None
    dead = dead_local_driver()
    catalog.set_run_state(orphan, RunState.RUNNING, driver=dead)
    catalog.set_run_state(elsewhere, RunState.RUNNING, driver="other-host:1")
    loop = SchedulerLoop(settings, catalog, store, interval_s=1.0, max_runs=1)

    loop.start()
    (fresh,) = loop.tick_once(now=utc("2025-01-01T04:00:05"))
    idle = loop.wait_idle(timeout_s=300)

    assert idle
    assert fresh.run_id is not None
    for run_id in (pending, orphan, fresh.run_id):
        assert catalog.get_run(run_id).state == RunState.COMPLETED
        assert catalog.run_summary(run_id).accepted == 1
    assert catalog.get_run(elsewhere).state == RunState.RUNNING
    assert catalog.get_run(elsewhere).driver == "other-host:1"
    assert loop.active_runs() == []
