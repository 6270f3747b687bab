"""Finding runs whose driver is gone, and the resume, fail and leave policies."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from crash_helpers import write_spec

from orchestrator.app_state import Backends, open_backends
from orchestrator.recovery import (
    DriverStatus,
    current_driver,
    driver_status,
    driving,
    find_orphaned_runs,
    process_alive,
    restart_unstarted,
    resume_interrupted,
    take_over,
)
from orchestrator.runner import Runner, UserFacingRunError
from orchestrator.settings import Settings
from orchestrator.spec import load_spec
from orchestrator.submit import submit
from schemas.records import AttemptState, FrameState, RunState

HOST = socket.gethostname()


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    """A live process of this host, in place of a driver that is still running."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


def exited_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.fixture
def backends(tmp_path: Path) -> Backends:
    return open_backends(Settings(home=tmp_path / "home", actors=1))


def new_run(backends: Backends, folder: Path, frames: int = 3, *, origin: str | None = None) -> str:
    spec = write_spec(folder, variants=frames)
    return submit(backends.catalog, backends.store, load_spec(spec), origin=origin)


def set_running(backends: Backends, run_id: str, driver: str, in_flight: bool = True) -> int | None:
    """Make a run look like a driver runs it, with its first frame's attempt in flight."""
    backends.catalog.set_run_state(run_id, RunState.RUNNING, driver=driver)
    if not in_flight:
        return None
    frame = backends.catalog.list_frames(run_id)[0]
    return backends.catalog.start_attempt(run_id, frame.key, 1, frame.seed)


def test_driver_status_by_process(sleeper: subprocess.Popen[bytes]) -> None:
    assert driver_status(f"{HOST}:{sleeper.pid}", "r") == DriverStatus.ALIVE
    assert driver_status(f"{HOST}:{exited_pid()}", "r") == DriverStatus.DEAD
    assert driver_status(f"elsewhere-{HOST}:{sleeper.pid}", "r") == DriverStatus.UNKNOWN
    assert driver_status("not a driver id", "r") == DriverStatus.UNKNOWN
    assert driver_status(None, "r") == DriverStatus.DEAD


def test_zombie_driver_counts_as_dead() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 30
    # Not waited for yet: the process has exited but stays in the table as a zombie.
    while process_alive(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not process_alive(proc.pid)
    os.kill(proc.pid, 0)  # the zombie is still in the process table
    proc.wait()


def test_own_process_is_alive_only_while_driving() -> None:
    """A restarted process may get its old pid back; only runs it is executing count as alive."""
    assert driver_status(current_driver(), "run-a") == DriverStatus.DEAD
    with driving("run-a"):
        assert driver_status(current_driver(), "run-a") == DriverStatus.ALIVE
        assert driver_status(current_driver(), "run-b") == DriverStatus.DEAD
    assert driver_status(current_driver(), "run-a") == DriverStatus.DEAD


def test_orphaned_runs_are_found(
    tmp_path: Path, backends: Backends, sleeper: subprocess.Popen[bytes]
) -> None:
    dead = new_run(backends, tmp_path / "dead")
    set_running(backends, dead, f"{HOST}:{exited_pid()}")
    interrupted = new_run(backends, tmp_path / "interrupted")
    backends.catalog.set_run_state(interrupted, RunState.INTERRUPTED, driver=f"{HOST}:1")
    alive = new_run(backends, tmp_path / "alive")
    set_running(backends, alive, f"{HOST}:{sleeper.pid}")
    remote = new_run(backends, tmp_path / "remote")
    set_running(backends, remote, f"elsewhere-{HOST}:123")
    pending = new_run(backends, tmp_path / "pending")

    found = [run.id for run in find_orphaned_runs(backends.catalog)]

    assert sorted(found) == sorted([dead, interrupted])
    assert pending not in found


def test_leave_policy_changes_nothing(tmp_path: Path, backends: Backends) -> None:
    run_id = new_run(backends, tmp_path / "spec")
    set_running(backends, run_id, f"{HOST}:{exited_pid()}")

    handled = resume_interrupted(backends, lambda: pytest.fail("no runner needed"), policy="leave")

    assert handled == [run_id]
    assert backends.catalog.get_run(run_id).state == RunState.RUNNING


def test_fail_policy_marks_runs_failed(tmp_path: Path, backends: Backends) -> None:
    run_id = new_run(backends, tmp_path / "spec")
    attempt_id = set_running(backends, run_id, f"{HOST}:{exited_pid()}")

    handled = resume_interrupted(backends, lambda: pytest.fail("no runner needed"), policy="fail")

    assert handled == [run_id]
    run = backends.catalog.get_run(run_id)
    assert run.state == RunState.FAILED
    assert run.error is not None
    assert f"onmodel resume {run_id}" in run.error
    (attempt,) = [a for a in backends.catalog.list_attempts(run_id) if a.id == attempt_id]
    assert attempt.state == AttemptState.ABANDONED


def test_unstarted_runs_queued_again(tmp_path: Path, backends: Backends) -> None:
    first = new_run(backends, tmp_path / "a", origin="service")
    second = new_run(backends, tmp_path / "b", origin="service")
    from_cli = new_run(backends, tmp_path / "c")
    from_scheduler = new_run(backends, tmp_path / "d", origin="scheduler")
    started = new_run(backends, tmp_path / "e", origin="service")
    set_running(backends, started, current_driver(), in_flight=False)
    queued: list[str] = []

    handled = restart_unstarted(backends.catalog, queued.append, "service")

    assert handled == [first, second]
    assert queued == [first, second]
    for run_id in (first, second, from_cli, from_scheduler):
        assert backends.catalog.get_run(run_id).state == RunState.PENDING
    assert backends.catalog.get_run(started).state == RunState.RUNNING


def test_unstarted_runs_fail_or_stay(tmp_path: Path, backends: Backends) -> None:
    left = new_run(backends, tmp_path / "a", origin="service")
    never_start = lambda run_id: pytest.fail(f"{run_id} must not start")  # noqa: E731

    logged = restart_unstarted(backends.catalog, never_start, "service", policy="leave")
    assert logged == [left]
    assert backends.catalog.get_run(left).state == RunState.PENDING

    failed = restart_unstarted(backends.catalog, never_start, "service", policy="fail")
    assert failed == [left]
    run = backends.catalog.get_run(left)
    assert run.state == RunState.FAILED
    assert run.error is not None
    assert f"onmodel resume {left}" in run.error
    assert restart_unstarted(backends.catalog, never_start, "service") == []


def test_unknown_policy_is_rejected(backends: Backends) -> None:
    with pytest.raises(ValueError, match="policy: 'retry' is invalid"):
        resume_interrupted(backends, lambda: pytest.fail("no runner needed"), policy="retry")  # type: ignore[arg-type]


def test_resume_policy_completes_runs(
    tmp_path: Path, backends: Backends, ray_session: None
) -> None:
    dead = new_run(backends, tmp_path / "dead")
    set_running(backends, dead, f"{HOST}:{exited_pid()}")
    interrupted = new_run(backends, tmp_path / "interrupted")
    backends.catalog.set_run_state(interrupted, RunState.INTERRUPTED, driver=f"{HOST}:1")

    def factory() -> Runner:
        return Runner(backends.settings, backends.catalog, backends.store)

    handled = resume_interrupted(backends, factory)

    assert sorted(handled) == sorted([dead, interrupted])
    for run_id in handled:
        summary = backends.catalog.run_summary(run_id)
        assert summary.state == RunState.COMPLETED
        assert summary.accepted == 3
    attempts = backends.catalog.list_attempts(dead)
    assert attempts[0].state == AttemptState.ABANDONED
    assert [a.state for a in attempts[1:]] == [AttemptState.DONE] * 3


def test_runner_refuses_run_with_live_driver(
    tmp_path: Path, backends: Backends, sleeper: subprocess.Popen[bytes]
) -> None:
    run_id = new_run(backends, tmp_path / "spec")
    set_running(backends, run_id, f"{HOST}:{sleeper.pid}", in_flight=False)
    runner = Runner(backends.settings, backends.catalog, backends.store)

    with pytest.raises(UserFacingRunError, match=f"running in process {HOST}:{sleeper.pid}"):
        runner.run(run_id)
    assert backends.catalog.get_run(run_id).driver == f"{HOST}:{sleeper.pid}"


def test_run_on_another_host_needs_force(tmp_path: Path, backends: Backends) -> None:
    run_id = new_run(backends, tmp_path / "spec")
    set_running(backends, run_id, "elsewhere:123", in_flight=False)
    runner = Runner(backends.settings, backends.catalog, backends.store)

    with pytest.raises(UserFacingRunError, match="--force"):
        runner.run(run_id)
    run = take_over(backends.catalog, run_id)

    assert run.state == RunState.INTERRUPTED
    assert run.error is not None
    assert "taken over from driver elsewhere:123" in run.error
    assert [f.state for f in backends.catalog.list_frames(run_id)] == [FrameState.PENDING] * 3
