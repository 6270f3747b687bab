"""Size affinity inside RunLoop._dispatch: which ready frame goes to which actor.

The actors and their pool are test doubles that only record what they are
sent. The dispatch code under test is the run loop's own.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from orchestrator.run_loop import QUEUE_DEPTH, RunLoop, _Frame
from schemas.catalog import FrameRow
from schemas.records import FrameState

SQUARE = (1024, 1024)
TALL = (768, 1344)


@dataclass
class Pool:
    healthy: list[str]
    exhausted: bool = False


@dataclass
class Loads:
    queued: dict[str, int] = field(default_factory=dict)

    def load(self, actor: str) -> int:
        return self.queued.get(actor, 0)


@dataclass
class Runner:
    pool: Pool

    def generator_pool(self, backend: str, model: str) -> Pool:
        return self.pool


def frame(key: str, size: tuple[int, int], model: str = "kontext-dev") -> _Frame:
    width, height = size
    row = FrameRow(
        id=0,
        run_id="r" * 32,
        key=key,
        scene_id="s1",
        edit_step=0,
        variant=0,
        parent_key=None,
        prompt="ana waves",
        characters=["ana"],
        backend="diffusers",
        model=model,
        width=width,
        height=height,
        steps=28,
        guidance=2.5,
        seed=1,
        state=FrameState.PENDING,
    )
    return _Frame(row=row)


def dispatch_loop(frames: list[_Frame], last_size: dict[str, Any], loads: dict[str, int]) -> Any:
    """Return a RunLoop with only the state that `_dispatch` reads, recording what it sends."""
    loop = RunLoop.__new__(RunLoop)
    loop.run_id = "r" * 32
    loop.frames = {item.row.key: item for item in frames}
    loop.ready = deque(item.row.key for item in frames)
    loop.last_size = dict(last_size)
    loop.calls = Loads(dict(loads))  # type: ignore[assignment]
    loop.runner = Runner(Pool(healthy=list(last_size)))  # type: ignore[assignment]
    sent: list[tuple[str, str]] = []

    def start_attempt(item: _Frame, actor: str, pool: Pool) -> None:
        sent.append((item.row.key, actor))
        loop.calls.queued[actor] = loop.calls.load(actor) + 1  # type: ignore[attr-defined]

    loop._start_attempt = start_attempt  # type: ignore[method-assign,assignment]
    loop.sent = sent  # type: ignore[attr-defined]
    return loop


def test_freed_actor_takes_its_own_size() -> None:
    # Both actors are busy except one slot on the square actor, and the
    # head of the queue is tall: the square frame behind it goes first.
    frames = [frame("t1", TALL), frame("t2", TALL), frame("q1", SQUARE)]
    loop = dispatch_loop(
        frames, {"square": SQUARE, "tall": TALL}, {"square": QUEUE_DEPTH - 1, "tall": QUEUE_DEPTH}
    )

    loop._dispatch()

    assert loop.sent == [("q1", "square")]
    assert list(loop.ready) == ["t1", "t2"]
    assert loop.last_size["square"] == SQUARE


def test_head_goes_when_no_size_matches() -> None:
    frames = [frame("t1", TALL), frame("t2", TALL)]
    loop = dispatch_loop(
        frames, {"square": SQUARE, "tall": TALL}, {"square": QUEUE_DEPTH - 1, "tall": QUEUE_DEPTH}
    )

    loop._dispatch()

    assert loop.sent == [("t1", "square")]
    assert loop.last_size["square"] == TALL


def test_frames_of_other_models_are_skipped() -> None:
    # The second frame is square but needs another model, so another pool.
    frames = [frame("t1", TALL), frame("q-other", SQUARE, model="other"), frame("q1", SQUARE)]
    loop = dispatch_loop(
        frames, {"square": SQUARE, "tall": TALL}, {"square": QUEUE_DEPTH - 1, "tall": QUEUE_DEPTH}
    )

    loop._dispatch()

    assert loop.sent == [("q1", "square")]
    assert list(loop.ready) == ["t1", "q-other"]


def test_idle_actors_fill_by_size() -> None:
    frames = [frame("q1", SQUARE), frame("t1", TALL), frame("q2", SQUARE), frame("t2", TALL)]
    loop = dispatch_loop(frames, {"a": SQUARE, "b": TALL}, {})

    loop._dispatch()

    assert sorted(loop.sent) == [("q1", "a"), ("q2", "a"), ("t1", "b"), ("t2", "b")]
    assert not loop.ready
