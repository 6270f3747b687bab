"""Size affinity of frame dispatch: pick_actor and pick_frame alone and in a simulated run."""

from __future__ import annotations

from collections import deque

import pytest

from orchestrator.affinity import Size, pick_actor, pick_frame

SQUARE = (1024, 1024)
TALL = (768, 1344)


def test_same_size_beats_idle_other_size() -> None:
    actor = pick_actor({"a": TALL, "b": SQUARE}, {"a": 0, "b": 1}, SQUARE, depth=2)

    assert actor == "b"


def test_fresh_actor_counts_as_same_size() -> None:
    actor = pick_actor({"a": TALL, "b": None}, {"a": 0, "b": 0}, SQUARE, depth=2)

    assert actor == "b"


def test_least_loaded_matching_actor_wins() -> None:
    actors = {"a": SQUARE, "b": SQUARE, "c": SQUARE}

    assert pick_actor(actors, {"a": 1, "b": 0, "c": 1}, SQUARE, depth=2) == "b"


def test_tie_keeps_mapping_order() -> None:
    actors = {"a": SQUARE, "b": SQUARE}

    assert pick_actor(actors, {}, SQUARE, depth=2) == "a"


def test_other_size_used_when_matching_full() -> None:
    actor = pick_actor({"a": SQUARE, "b": TALL}, {"a": 2, "b": 1}, SQUARE, depth=2)

    assert actor == "b"


def test_all_queues_full_returns_none() -> None:
    actors = {"a": SQUARE, "b": TALL}

    assert pick_actor(actors, {"a": 2, "b": 3}, SQUARE, depth=2) is None


def test_no_actors_returns_none() -> None:
    assert pick_actor({}, {}, SQUARE, depth=2) is None


def test_size_compares_lists_and_tuples() -> None:
    # Sizes read back from JSON arrive as lists.
    actors: dict[str, Size | None] = {"a": [1024, 1024], "b": TALL}  # type: ignore[dict-item]

    assert pick_actor(actors, {"a": 1, "b": 0}, SQUARE, depth=2) == "a"


def test_depth_below_one_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"depth: must be at least 1, got 0"):
        pick_actor({"a": None}, {}, SQUARE, depth=0)


def _simulate(
    sizes: list[Size], actors: int, depth: int, affinity: bool, arrivals: int | None = None
) -> tuple[int, int]:
    """Dispatch frames in plan order; each round every busy actor finishes one frame.

    `arrivals` frames become ready per round (None: all at once). Returns
    (size switches, rounds): how often an actor ran a frame of another size
    than its previous one, and how many rounds the run took.
    """
    names = [f"actor-{i}" for i in range(actors)]
    queues: dict[str, deque[Size]] = {name: deque() for name in names}
    last_sent: dict[str, Size | None] = dict.fromkeys(names)
    last_run: dict[str, Size | None] = dict.fromkeys(names)
    future = deque(sizes)
    ready: deque[Size] = deque()
    switches = rounds = 0
    while future or ready or any(queues.values()):
        for _ in range(len(future) if arrivals is None else min(arrivals, len(future))):
            ready.append(future.popleft())
        while ready:
            loads = {name: len(queue) for name, queue in queues.items()}
            if affinity:
                actor = pick_actor(last_sent, loads, ready[0], depth)
                index = 0 if actor is None else pick_frame(list(ready), last_sent[actor], 8)
            else:
                actor = min(names, key=lambda name: loads[name])
                actor = actor if loads[actor] < depth else None
                index = 0
            if actor is None:
                break
            size = ready[index]
            del ready[index]
            queues[actor].append(size)
            last_sent[actor] = size
        rounds += 1
        for name, queue in queues.items():
            if not queue:
                continue
            size = queue.popleft()
            if last_run[name] is not None and last_run[name] != size:
                switches += 1
            last_run[name] = size
    return switches, rounds


@pytest.mark.parametrize("arrivals", [None, 1])
@pytest.mark.parametrize("actors", [2, 4])
def test_affinity_cuts_size_switches(arrivals: int | None, actors: int) -> None:
    # Scenes alternate between two sizes in plan order, three frames each.
    sizes = ([SQUARE] * 3 + [TALL] * 3) * 8

    switches, rounds = _simulate(sizes, actors, depth=2, affinity=True, arrivals=arrivals)
    plain_switches, plain_rounds = _simulate(sizes, actors, 2, affinity=False, arrivals=arrivals)

    assert switches * 3 <= plain_switches
    # No actor idles while frames wait: the run takes no more rounds.
    assert rounds == plain_rounds


def test_affinity_keeps_every_actor_busy_on_one_size() -> None:
    loads = dict.fromkeys(["a", "b", "c"], 0)
    last: dict[str, Size | None] = dict.fromkeys(loads)
    chosen = []
    for _ in range(6):
        actor = pick_actor(last, loads, SQUARE, depth=2)
        assert actor is not None
        loads[actor] += 1
        last[actor] = SQUARE
        chosen.append(actor)

    assert sorted(loads.values()) == [2, 2, 2]
    assert chosen[:3] == ["a", "b", "c"]


# --- pick_frame ----------------------------------------------------------------


def test_pick_frame_finds_actor_size_in_window() -> None:
    assert pick_frame([TALL, TALL, SQUARE, TALL], SQUARE, window=8) == 2


def test_pick_frame_takes_head_without_match() -> None:
    assert pick_frame([TALL, TALL], SQUARE, window=8) == 0


def test_pick_frame_looks_only_inside_window() -> None:
    assert pick_frame([TALL, TALL, SQUARE], SQUARE, window=2) == 0


def test_pick_frame_skips_frames_of_other_pools() -> None:
    # None marks a frame for another backend or model, even of the same size.
    assert pick_frame([TALL, None, SQUARE], SQUARE, window=8) == 2


def test_pick_frame_fresh_actor_takes_head() -> None:
    assert pick_frame([TALL, SQUARE], None, window=8) == 0


def test_pick_frame_window_below_one_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"window: must be at least 1, got 0"):
        pick_frame([SQUARE], SQUARE, window=0)
