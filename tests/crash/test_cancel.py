"""`onmodel runs cancel` against a real run in another process, and against runs with no driver."""

from __future__ import annotations

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

from orchestrator.app_state import open_backends
from orchestrator.recovery import RunStateError, cancel_run
from orchestrator.settings import Settings
from orchestrator.spec import load_spec
from orchestrator.submit import submit
from schemas.records import AttemptState, FrameState, RunState

FRAMES = 40


@pytest.mark.slow
def test_cancel_stops_a_running_run(tmp_path: Path, cli: CliProcesses) -> None:
    spec = write_spec(tmp_path / "spec", variants=FRAMES, size=256, steps=4)
    backends = open_backends(Settings(home=tmp_path / "home"))
    catalog = backends.catalog

    proc = cli.start("run", str(spec))
    run_id = first_line(proc)
    wait_for_accepted(catalog, run_id, 2, timeout=180)
    code, stdout, stderr = cli.run("runs", "cancel", run_id[:8])
    cancelled_at = time.monotonic()
    assert code == 0, stderr
    assert "finishes the frames in flight" in stdout

    code = cli.wait(proc, timeout=60)
    assert code == 0
    assert time.monotonic() - cancelled_at < 30
    assert_no_leftovers(cli)
    summary = catalog.run_summary(run_id)
    assert summary.state == RunState.CANCELLED
    assert summary.failed == 0
    assert 2 <= summary.accepted < FRAMES
    frames = catalog.list_frames(run_id)
    states = {frame.state for frame in frames}
    assert states == {FrameState.ACCEPTED, FrameState.CANCELLED}
    for frame in frames:
        if frame.state == FrameState.CANCELLED:
            assert frame.error == "run cancelled"
            assert frame.asset_id is None
        else:
            assert frame.asset_id is not None
    attempts = catalog.list_attempts(run_id)
    assert AttemptState.RUNNING not in {attempt.state for attempt in attempts}
    assert len(catalog.list_assets(run_id=run_id)) == summary.accepted


def test_cancel_without_driver_ends_the_run(tmp_path: Path) -> None:
    """A pending run that no driver has started is cancelled at once, frames included."""
    backends = open_backends(Settings(home=tmp_path / "home"))
    spec = write_spec(tmp_path / "spec", variants=4)
    run_id = submit(backends.catalog, backends.store, load_spec(spec))

    outcome = cancel_run(backends.catalog, run_id)

    assert not outcome.driver_notified
    assert outcome.frames_cancelled == 4
    summary = backends.catalog.run_summary(run_id)
    assert summary.state == RunState.CANCELLED
    assert summary.finished_at is not None
    frames = backends.catalog.list_frames(run_id)
    assert {frame.state for frame in frames} == {FrameState.CANCELLED}
    with pytest.raises(RunStateError, match="already cancelled"):
        cancel_run(backends.catalog, run_id)


def test_cancel_of_run_with_dead_driver(tmp_path: Path) -> None:
    """A run left running by a driver that died: attempts in flight end abandoned."""
    backends = open_backends(Settings(home=tmp_path / "home"))
    catalog = backends.catalog
    run_id = submit(catalog, backends.store, load_spec(write_spec(tmp_path / "spec", variants=3)))
    frame = catalog.list_frames(run_id)[0]
    catalog.set_run_state(run_id, RunState.RUNNING, driver=dead_driver())
    attempt_id = catalog.start_attempt(run_id, frame.key, 1, frame.seed)

    outcome = cancel_run(catalog, run_id)

    assert not outcome.driver_notified
    assert catalog.run_summary(run_id).state == RunState.CANCELLED
    (attempt,) = [a for a in catalog.list_attempts(run_id) if a.id == attempt_id]
    assert attempt.state == AttemptState.ABANDONED
    assert {f.state for f in catalog.list_frames(run_id)} == {FrameState.CANCELLED}


def dead_driver() -> str:
    """Return a `host:pid` driver id of this host whose process has exited."""
    import socket
    import subprocess
    import sys

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return f"{socket.gethostname()}:{child.pid}"
