"""Generator actors that crash, die for good, hang or raise, inside real runs on a real Ray.

The generators are the real tiny generator with a twist (a pause per frame,
an error or a hang at one size), and the crashes are real: SIGKILL of the
actor's worker process, or Ray killing a hung actor.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import ray
from crash_helpers import write_spec
from ray import cloudpickle

from actors.generator import GeneratorWorker
from orchestrator.app_state import Backends, open_backends
from orchestrator.planner import TINY_MODEL
from orchestrator.runner import Runner
from orchestrator.settings import Settings
from orchestrator.spec import load_spec
from orchestrator.submit import submit
from schemas.catalog import FrameRow
from schemas.records import (
    AttemptState,
    FrameState,
    GenerationRequest,
    GenerationResult,
    RunState,
    Verdict,
)

# Size at which the test generators below misbehave.
BAD_SIZE = 96


class SlowGenerator(GeneratorWorker):
    """The tiny generator with a pause per frame, so that a kill lands while a frame runs."""

    def generate(self, request: GenerationRequest) -> GenerationResult:
        time.sleep(0.3)
        return super().generate(request)


class FailingGenerator(GeneratorWorker):
    """The tiny generator, except that it raises on every frame of BAD_SIZE pixels."""

    def generate(self, request: GenerationRequest) -> GenerationResult:
        if request.width == BAD_SIZE:
            raise ValueError(f"cannot generate {request.width}x{request.height}")
        return super().generate(request)


class HangingGenerator(GeneratorWorker):
    """The tiny generator, except that it hangs on every frame of BAD_SIZE pixels."""

    def generate(self, request: GenerationRequest) -> GenerationResult:
        if request.width == BAD_SIZE:
            time.sleep(3600)
        return super().generate(request)


# Ray workers cannot import this test module, so its classes travel by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])


class KillAfter:
    """A run listener that SIGKILLs a process once `count` frames have finished."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.pid: int | None = None
        self.finished = 0
        self.killed = False

    def started(self, run_id: str, total: int, done: int) -> None:
        pass

    def frame_finished(self, frame: FrameRow, state: FrameState, verdict: Verdict | None) -> None:
        self.finished += 1
        if self.finished == self.count and self.pid is not None:
            os.kill(self.pid, signal.SIGKILL)
            self.killed = True


def start_run(tmp_path: Path, settings: Settings, **spec: Any) -> tuple[Backends, str]:
    backends = open_backends(settings)
    run_id = submit(
        backends.catalog, backends.store, load_spec(write_spec(tmp_path / "spec", **spec))
    )
    return backends, run_id


def actor_pid(runner: Runner) -> int:
    """Start the runner's tiny generator pool and return the pid of its one actor.

    An actor that Ray is restarting after the run is waited for.
    """
    pool = runner.generator_pool("tiny", TINY_MODEL)
    deadline = time.monotonic() + 60
    while not pool.healthy:
        assert time.monotonic() < deadline, f"{pool} did not come back within 60 s"
        pool.poll()
        time.sleep(0.2)
    info: dict[str, Any] = ray.get(pool.healthy[0].info.remote(), timeout=60)
    return int(info["pid"])


@pytest.mark.slow
def test_killed_generator_actor_run_completes(tmp_path: Path, ray_session: None) -> None:
    settings = Settings(home=tmp_path / "home", actors=1, retry_backoff_s=0.1)
    backends, run_id = start_run(tmp_path, settings, variants=20)
    killer = KillAfter(5)
    runner = Runner(
        settings, backends.catalog, backends.store, generator_cls=SlowGenerator, listener=killer
    )
    try:
        killer.pid = actor_pid(runner)
        summary = runner.run(run_id)
        new_pid = actor_pid(runner)
    finally:
        runner.shutdown()

    assert killer.killed
    assert new_pid != killer.pid
    assert summary.state == RunState.COMPLETED
    assert summary.accepted == 20
    assets = backends.catalog.list_assets(run_id=run_id)
    assert len(assets) == 20
    assert len({asset.frame_key for asset in assets}) == 20
    attempts = backends.catalog.list_attempts(run_id)
    lost = [a for a in attempts if a.state in (AttemptState.FAILED, AttemptState.ABANDONED)]
    assert lost, "the kill cost no attempt, so it did not land mid-run"
    for attempt in lost:
        assert attempt.error is not None
        assert "actor died" in attempt.error
    done_per_frame: dict[str, int] = {}
    for attempt in attempts:
        if attempt.state == AttemptState.DONE:
            done_per_frame[attempt.frame_key] = done_per_frame.get(attempt.frame_key, 0) + 1
    assert sorted(done_per_frame.values()) == [1] * 20


@pytest.mark.slow
def test_dead_actor_is_replaced(tmp_path: Path, ray_session: None) -> None:
    """With no Ray restart allowed, the killed actor is dead for good and a fresh one takes over."""
    settings = Settings(
        home=tmp_path / "home",
        actors=1,
        actor_max_restarts=0,
        actor_max_replacements=1,
        retry_backoff_s=0.1,
    )
    backends, run_id = start_run(tmp_path, settings, variants=12)
    killer = KillAfter(3)
    runner = Runner(
        settings, backends.catalog, backends.store, generator_cls=SlowGenerator, listener=killer
    )
    try:
        killer.pid = actor_pid(runner)
        summary = runner.run(run_id)
        pool = runner.generator_pool("tiny", TINY_MODEL)
        dead = pool.dead
    finally:
        runner.shutdown()

    assert killer.killed
    assert dead == 1
    assert summary.state == RunState.COMPLETED
    assert summary.accepted == 12
    assert len(backends.catalog.list_assets(run_id=run_id)) == 12


def test_dead_pool_fails_remaining_frames(tmp_path: Path, ray_session: None) -> None:
    """No restart and no replacement: the frames left fail with a clear error, and the run ends."""
    settings = Settings(
        home=tmp_path / "home",
        actors=1,
        actor_max_restarts=0,
        actor_max_replacements=0,
        retry_backoff_s=0.1,
    )
    backends, run_id = start_run(tmp_path, settings, variants=12)
    killer = KillAfter(3)
    runner = Runner(
        settings, backends.catalog, backends.store, generator_cls=SlowGenerator, listener=killer
    )
    started = time.monotonic()
    try:
        killer.pid = actor_pid(runner)
        summary = runner.run(run_id)
    finally:
        runner.shutdown()

    assert time.monotonic() - started < 60
    assert summary.state == RunState.COMPLETED
    assert summary.accepted >= 3
    assert summary.failed == 12 - summary.accepted
    assert summary.failed > 0
    failed = backends.catalog.list_frames(run_id, states=[FrameState.FAILED])
    for frame in failed:
        assert frame.error is not None
        assert "no generator tiny/tiny-random-kontext actor left" in frame.error
        assert "actor_max_restarts" in frame.error


def test_frame_that_keeps_raising_ends_failed(tmp_path: Path, ray_session: None) -> None:
    settings = Settings(home=tmp_path / "home", actors=1, retry_backoff_s=0.05)
    bad_scene = {"id": "bad", "prompt": "Ana waves", "characters": ["ana"], "width": BAD_SIZE}
    backends, run_id = start_run(tmp_path, settings, variants=3, extra_scenes=[bad_scene])
    runner = Runner(settings, backends.catalog, backends.store, generator_cls=FailingGenerator)
    try:
        summary = runner.run(run_id)
    finally:
        runner.shutdown()

    assert summary.state == RunState.COMPLETED
    assert summary.accepted == 3
    assert summary.failed == 1
    (frame,) = backends.catalog.list_frames(run_id, states=[FrameState.FAILED])
    assert frame.scene_id == "bad"
    assert frame.error == f"ValueError: cannot generate {BAD_SIZE}x64"
    attempts = backends.catalog.list_attempts(run_id, frame.key)
    assert len(attempts) == settings.frame_max_errors + 1
    assert {attempt.state for attempt in attempts} == {AttemptState.FAILED}


@pytest.mark.slow
def test_hung_frame_times_out_and_actor_restarts(tmp_path: Path, ray_session: None) -> None:
    """Ray kills the hung actor and restarts it; the hung frame fails, the others are accepted."""
    settings = Settings(
        home=tmp_path / "home",
        actors=1,
        frame_timeout_s=2.0,
        frame_max_errors=1,
        retry_backoff_s=0.05,
    )
    bad_scene = {"id": "bad", "prompt": "Ana waves", "characters": ["ana"], "width": BAD_SIZE}
    backends, run_id = start_run(tmp_path, settings, variants=3, extra_scenes=[bad_scene])
    runner = Runner(settings, backends.catalog, backends.store, generator_cls=HangingGenerator)
    try:
        first_pid = actor_pid(runner)
        summary = runner.run(run_id)
        last_pid = actor_pid(runner)
    finally:
        runner.shutdown()

    assert last_pid != first_pid
    assert summary.state == RunState.COMPLETED
    assert summary.accepted == 3
    assert summary.failed == 1
    (frame,) = backends.catalog.list_frames(run_id, states=[FrameState.FAILED])
    assert frame.scene_id == "bad"
    assert frame.error is not None
    assert "timed out after 2 s" in frame.error
    attempts = backends.catalog.list_attempts(run_id, frame.key)
    assert [attempt.state for attempt in attempts] == [AttemptState.FAILED] * 2
