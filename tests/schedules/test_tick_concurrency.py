"""Several schedulers ticking at once never record a fire or start a run twice."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path

from schedule_specs import ROOT, utc

from orchestrator.scheduler import FireOutcome, create_schedule, tick
from orchestrator.spec import LoadedSpec
from storage.catalog import Catalog
from storage.objects import ObjectStore
from storage.schedules import FireStatus, ScheduleStore

SCHEDULES = 5
ROUNDS = 3
WORKER = Path(__file__).with_name("tick_worker.py")


def make_schedules(catalog: Catalog, store: ObjectStore, loaded: LoadedSpec) -> list[str]:
    return [
        create_schedule(
            catalog,
            store,
            loaded,
            cron="*/5 * * * *",
            timezone="UTC",
            overlap_policy="allow",
            name=f"s{i}",
            now=utc("2025-01-01T00:00"),
        ).id
        for i in range(SCHEDULES)
    ]


def round_time(index: int) -> datetime:
    return utc("2025-01-01T00:00:20") + timedelta(minutes=5 * (index + 1))


def assert_each_fire_once(
    catalog: Catalog, schedule_ids: list[str], started: list[str], rounds: int
) -> None:
    schedules = ScheduleStore(catalog)
    for schedule_id in schedule_ids:
        fires = schedules.list_fires(schedule_id, limit=100)
        assert len(fires) == rounds
        assert {f.status for f in fires} == {FireStatus.STARTED}
        assert len({f.fire_time for f in fires}) == rounds
    runs = catalog.list_runs(limit=1000)
    assert len(runs) == SCHEDULES * rounds
    assert sorted(started) == sorted(r.id for r in runs)


def tick_in_threads(url: str, now: datetime, count: int) -> list[FireOutcome]:
    """Tick from `count` threads released together, each with its own Catalog."""
    barrier = threading.Barrier(count)
    catalogs = [Catalog(url) for _ in range(count)]
    results: list[list[FireOutcome]] = []
    lock = threading.Lock()

    def worker(own: Catalog) -> None:
        barrier.wait()
        outcomes = tick(own, now=now)
        with lock:
            results.append(outcomes)

    threads = [threading.Thread(target=worker, args=(own,)) for own in catalogs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    for own in catalogs:
        own.close()
    assert len(results) == count
    return [outcome for outcomes in results for outcome in outcomes]


def tick_in_processes(url: str, now: datetime, count: int, folder: Path) -> list[list[str]]:
    """Tick from `count` processes released together; return their outcome rows."""
    folder.mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, str(WORKER), url, now.isoformat(), str(folder)]
    processes = [
        subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(count)
    ]
    deadline = time.monotonic() + 60
    while len(list(folder.glob("ready-*"))) < count and time.monotonic() < deadline:
        time.sleep(0.01)
    (folder / "go").touch()
    rows = []
    for process in processes:
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
        rows.extend(json.loads(out.strip().splitlines()[-1]))
    return rows


def test_threads_ticking_at_once_start_each_run_once(
    catalog: Catalog, store: ObjectStore, loaded: LoadedSpec
) -> None:
    schedule_ids = make_schedules(catalog, store, loaded)
    started: list[str] = []

    for index in range(ROUNDS):
        reported = tick_in_threads(catalog.url, round_time(index), count=4)

        assert len(reported) == SCHEDULES
        started.extend(o.run_id for o in reported if o.run_id)

    assert_each_fire_once(catalog, schedule_ids, started, ROUNDS)


def test_processes_ticking_at_once_start_each_run_once(
    tmp_path: Path, catalog: Catalog, store: ObjectStore, loaded: LoadedSpec
) -> None:
    schedule_ids = make_schedules(catalog, store, loaded)

    # One round: three processes importing the project take about 6 s on 2 cores.
    reported = tick_in_processes(catalog.url, round_time(0), 3, tmp_path / "barrier")

    assert len(reported) == SCHEDULES
    started = [run_id for _, _, _, run_id in reported if run_id]
    assert_each_fire_once(catalog, schedule_ids, started, rounds=1)
