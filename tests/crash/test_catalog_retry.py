"""Catalog calls retried across real transient database errors, and not across permanent ones."""

from __future__ import annotations

import logging
import shlex
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import storage.engine
from orchestrator.catalog_retry import RetryingCatalog, is_transient
from schemas.errors import StorageError
from schemas.records import FrameState, FrameTask
from schemas.storyboard import Backend
from storage.catalog import Catalog

ROOT = Path(__file__).resolve().parents[2]
START_SERVICES = ROOT / ".ci" / "start_services.sh"


def one_frame_run(catalog: Catalog) -> tuple[str, str]:
    """Create a run of one frame; return (run id, frame key)."""
    storyboard_id = catalog.put_storyboard("retry", {"n": 1}, "c" * 64)
    task = FrameTask(
        key="f" * 24,
        storyboard_id=storyboard_id,
        scene_id="s1",
        prompt="Ana drinks coffee",
        characters=["ana"],
        backend=Backend.TINY,
        model="tiny-random-kontext",
        width=64,
        height=64,
        steps=2,
        guidance=2.5,
        seed=7,
    )
    return catalog.create_run(storyboard_id, [task], {}), task.key


def test_locked_sqlite_write_is_retried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # A short busy timeout turns a held write lock into "database is locked" quickly.
    monkeypatch.setattr(storage.engine, "SQLITE_BUSY_TIMEOUT_MS", 100)
    path = tmp_path / "catalog.db"
    catalog = Catalog(f"sqlite:///{path}")
    catalog.upgrade()
    run_id, frame_key = one_frame_run(catalog)
    retrying = RetryingCatalog(catalog, max_attempts=10, backoff_s=0.2)

    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    with pytest.raises(StorageError, match="database is locked") as plain:
        catalog.set_frame_state(run_id, frame_key, FrameState.FAILED, error="plain")
    assert is_transient(plain.value)
    release = threading.Timer(1.5, lambda: holder.execute("ROLLBACK"))
    release.start()

    with caplog.at_level(logging.WARNING, logger="orchestrator.catalog_retry"):
        retrying.set_frame_state(run_id, frame_key, FrameState.FAILED, error="retried")
    release.join()
    holder.close()

    assert [f.error for f in catalog.list_frames(run_id)] == ["retried"]
    assert any("database is locked" in record.getMessage() for record in caplog.records)


def test_permanent_error_is_not_retried(tmp_path: Path) -> None:
    # No migrations applied: "no such table" cannot be fixed by waiting.
    catalog = Catalog(f"sqlite:///{tmp_path / 'empty.db'}")
    retrying = RetryingCatalog(catalog, max_attempts=5, backoff_s=1.0)

    started = time.monotonic()
    with pytest.raises(StorageError, match="no such table") as info:
        retrying.list_runs()

    assert time.monotonic() - started < 0.5
    assert not is_transient(info.value)


@pytest.fixture
def postgres(tmp_path: Path) -> Iterator[dict[str, str]]:
    """A throwaway PostgreSQL server on 127.0.0.1, started by the CI script, stopped by pid."""
    if not START_SERVICES.is_file():
        pytest.skip(f"{START_SERVICES} not found")
    done = subprocess.run(
        ["bash", str(START_SERVICES)], capture_output=True, text=True, timeout=120
    )
    if done.returncode != 0:
        pytest.skip(f"no PostgreSQL server could be started: {done.stderr.strip()[-300:]}")
    server = {}
    for line in done.stdout.splitlines():
        name, _, value = line.removeprefix("export ").partition("=")
        server[name] = value
    try:
        yield server
    finally:
        pid = (Path(server["ONMODEL_PG_DIR"]) / "data" / "postmaster.pid").read_text().split()[0]
        subprocess.run(
            ["bash", str(START_SERVICES), "stop", pid, server["ONMODEL_PG_DIR"]],
            capture_output=True,
            timeout=60,
        )


def pg_ctl(folder: str, *args: str) -> None:
    """Run pg_ctl on the server's data folder as its owner (PostgreSQL refuses root)."""
    data = Path(folder) / "data"
    binary = shlex.split((data / "postmaster.opts").read_text())[0]
    command = [str(Path(binary).with_name("pg_ctl")), "-D", str(data), *args]
    owner = data.owner()
    if owner != "root":
        command = ["runuser", "-u", owner, "--", *command]
    subprocess.run(command, check=True, capture_output=True, timeout=60)


def test_postgres_restart_is_ridden_out(
    postgres: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    folder = postgres["ONMODEL_PG_DIR"]
    data = Path(folder) / "data"
    catalog = Catalog(postgres["ONMODEL_TEST_POSTGRES_URL"])
    catalog.upgrade()
    run_id, frame_key = one_frame_run(catalog)
    retrying = RetryingCatalog(catalog, max_attempts=8, backoff_s=0.5)
    # The server's own command line, so that it comes back on the same port and socket folder.
    options = shlex.split((data / "postmaster.opts").read_text())[3:]

    pg_ctl(folder, "-m", "fast", "-w", "stop")
    restart = threading.Timer(
        2.0,
        lambda: pg_ctl(
            folder, "-l", f"{folder}/server.log", "-w", "-o", shlex.join(options), "start"
        ),
    )
    restart.start()
    try:
        with caplog.at_level(logging.WARNING, logger="orchestrator.catalog_retry"):
            retrying.set_frame_state(run_id, frame_key, FrameState.FAILED, error="after restart")
    finally:
        restart.join()

    assert [f.error for f in catalog.list_frames(run_id)] == ["after restart"]
    assert any("transient database error" in r.getMessage() for r in caplog.records)
