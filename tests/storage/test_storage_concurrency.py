"""Concurrent catalog writers: threads on one catalog, processes on one SQLite file."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import Engine

from schemas.records import AttemptState, FrameState, FrameTask
from storage.catalog import Catalog
from storage.engine import create_catalog_engine
from storage.objects import key_for

MakeTasks = Callable[..., list[FrameTask]]
WRITER = Path(__file__).with_name("catalog_writer.py")
REPO_ROOT = Path(__file__).resolve().parents[2]
FRAMES = 90


def run_threads(target: Callable[[int], None], count: int) -> list[BaseException]:
    """Run `target(index)` in `count` threads released together; return what they raised."""
    errors: list[BaseException] = []
    start = threading.Barrier(count)

    def wrapped(index: int) -> None:
        try:
            start.wait()
            target(index)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=wrapped, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads), "a writer thread hung"
    return errors


def process_frame(catalog: Catalog, run_id: str, frame_key: str) -> str:
    """Read, then write: the pattern that makes lazy SQLite transactions fail as locked."""
    catalog.list_frames(run_id, states=[FrameState.PENDING])
    attempt_id = catalog.start_attempt(run_id, frame_key, 1, 7)
    object_key, digest = key_for(frame_key.encode())
    catalog.finish_attempt(attempt_id, AttemptState.DONE, object_key=object_key, sha256=digest)
    catalog.run_summary(run_id)
    return catalog.accept_frame(run_id, frame_key, attempt_id, FrameState.ACCEPTED, {})


def test_threads_share_one_catalog(catalog: Catalog, make_tasks: MakeTasks) -> None:
    storyboard_id = catalog.put_storyboard("campaign", {"n": 1}, "a" * 64)
    tasks = make_tasks(storyboard_id, 24)
    run_id = catalog.create_run(storyboard_id, tasks, {})
    workers = 4

    def work(index: int) -> None:
        for task in tasks[index::workers]:
            process_frame(catalog, run_id, task.key)

    assert run_threads(work, workers) == []

    summary = catalog.run_summary(run_id)
    assert summary.accepted == 24
    assert summary.pending == 0
    assert len(catalog.list_assets(run_id=run_id)) == 24


def test_threads_store_same_storyboard_once(catalog: Catalog) -> None:
    ids: list[str] = []

    def store(index: int) -> None:
        ids.append(catalog.put_storyboard(f"copy {index}", {"n": 2}, "b" * 64))

    assert run_threads(store, 6) == []
    assert len(set(ids)) == 1


def test_concurrent_accepts_create_one_asset(catalog_url: str, make_tasks: MakeTasks) -> None:
    with Catalog(catalog_url) as setup:
        setup.upgrade()
        storyboard_id = setup.put_storyboard("campaign", {"n": 1}, "a" * 64)
        task = make_tasks(storyboard_id, 1)[0]
        run_id = setup.create_run(storyboard_id, [task], {})
        attempt_id = setup.start_attempt(run_id, task.key, 1, 7)
        object_key, digest = key_for(b"image")
        setup.finish_attempt(attempt_id, AttemptState.DONE, object_key=object_key, sha256=digest)

    # One catalog (engine) per thread, as separate driver processes would have.
    catalogs = [Catalog(catalog_url) for _ in range(4)]
    asset_ids: list[str] = []

    def accept(index: int) -> None:
        asset_ids.append(
            catalogs[index].accept_frame(run_id, task.key, attempt_id, FrameState.ACCEPTED, {})
        )

    try:
        assert run_threads(accept, len(catalogs)) == []
        assert len(asset_ids) == 4
        assert len(set(asset_ids)) == 1
        assert len(catalogs[0].list_assets()) == 1
    finally:
        for opened in catalogs:
            opened.close()


def test_processes_write_one_sqlite_file(tmp_path: Path, make_tasks: MakeTasks) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    with Catalog(url) as catalog:
        catalog.upgrade()
        storyboard_id = catalog.put_storyboard("campaign", {"n": 1}, "a" * 64)
        run_id = catalog.create_run(storyboard_id, make_tasks(storyboard_id, FRAMES), {})

    workers = 3
    gate = tmp_path / "gate"
    processes = [
        subprocess.Popen(
            [sys.executable, str(WRITER), url, run_id, str(index), str(workers), str(gate)],
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for index in range(workers)
    ]
    # Release the workers together once all have imported, so their writes overlap.
    deadline = time.monotonic() + 60
    while not all(Path(f"{gate}.{index}").exists() for index in range(workers)):
        assert all(process.poll() is None for process in processes), "a writer exited early"
        assert time.monotonic() < deadline, "writers did not start within 60 s"
        time.sleep(0.02)
    gate.touch()

    outputs = []
    for process in processes:
        stdout, stderr = process.communicate(timeout=120)
        assert process.returncode == 0, stderr
        assert "database is locked" not in stderr
        outputs.append(json.loads(stdout.strip().splitlines()[-1]))

    assert len({output["storyboard"] for output in outputs}) == 1
    created = [asset for output in outputs for asset in output["assets"]]
    assert len(created) == len(set(created)) == FRAMES
    with Catalog(url) as catalog:
        summary = catalog.run_summary(run_id)
        assert summary.accepted == FRAMES
        assert {asset.id for asset in catalog.list_assets(run_id=run_id)} == set(created)


def test_sqlite_connection_settings(tmp_path: Path) -> None:
    catalog = Catalog(f"sqlite:///{tmp_path / 'pragmas.db'}")
    with catalog, catalog.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30_000


def test_new_file_concurrent_connects(tmp_path: Path) -> None:
    # Connections that switch a new file to WAL at the same moment can
    # deadlock on SQLite's locks, and each one must still connect. One round
    # hits the deadlock only now and then, so the test runs many rounds.
    for round_index in range(40):
        url = f"sqlite:///{tmp_path / f'new-{round_index}.db'}"
        engines = [create_catalog_engine(url) for _ in range(4)]
        try:

            def connect(index: int, engines: list[Engine] = engines) -> None:
                with engines[index].connect() as connection:
                    assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"

            assert run_threads(connect, len(engines)) == []
        finally:
            for engine in engines:
                engine.dispose()
