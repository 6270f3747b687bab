"""Size affinity: send frames to actors that last ran a frame of the same size.

A generator actor with a compiled transformer keeps one compiled graph per
frame size. Its first frame of a new size compiles again (minutes for the
full FLUX.1 model), and without compilation a size change still costs new
kernel selections and allocator growth. Keeping each size on the same
actors avoids most of those switches, while every actor with room in its
queue still gets work, so no actor sits idle while frames wait.

Two pure functions make the policy. `pick_actor` chooses the actor for the
frame at the head of the ready queue; it helps while queues have room.
When every frame is ready at once all queues fill up and the head frame
takes whatever slot frees first, so `pick_frame` then looks a few frames
ahead for one of the chosen actor's size.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import TypeVar

Size = tuple[int, int]
# Ready frames `pick_frame` looks through: a frame is passed over by at most
# seven later frames per dispatch, so plan order changes only locally.
LOOKAHEAD_WINDOW = 8
ActorT = TypeVar("ActorT", bound=Hashable)


def pick_actor(
    actors_with_last_size: Mapping[ActorT, Size | None],
    loads: Mapping[ActorT, int],
    size: Size,
    depth: int,
) -> ActorT | None:
    """Return the actor for a frame of `size` (width, height), or None when all queues are full.

    actors_with_last_size maps each healthy actor to the (width, height) of
    the last frame sent to it, or None if it has had none. loads maps an
    actor to its queued calls (missing means 0); an actor with `depth` or
    more has no room.

    Among actors with room, an actor whose last size equals `size` or that
    has had no frame is preferred to one that last ran another size. Within
    each group the fewest queued calls wins, then the mapping's order. So a
    frame waits behind one running frame of its size instead of switching
    an idle actor to a new size, but when the matching actors are full the
    other actors take frames. Raises ValueError when depth < 1.
    """
    if depth < 1:
        raise ValueError(f"depth: must be at least 1, got {depth}")

    best: ActorT | None = None
    best_rank: tuple[int, int] | None = None
    for actor, last_size in actors_with_last_size.items():
        load = loads.get(actor, 0)
        if load >= depth:
            continue
        switches_size = 0 if last_size is None or tuple(last_size) == tuple(size) else 1
        rank = (switches_size, load)
        # Strictly smaller, so ties keep the earlier actor in the mapping.
        if best_rank is None or rank < best_rank:
            best, best_rank = actor, rank
    return best


def pick_frame(ready_sizes: Sequence[Size | None], last_size: Size | None, window: int) -> int:
    """Return the index of the ready frame to send to an actor whose last frame had `last_size`.

    ready_sizes lists the (width, height) of the ready frames in queue order,
    with None for a frame that this actor cannot run (another backend or
    model). The first frame among the first `window` whose size equals
    `last_size` is chosen. Without such a frame, or when the actor has had
    no frame, the head of the queue (index 0) is chosen. A frame is passed over by at most
    `window` - 1 later frames each time, so none waits long. Raises
    ValueError when window < 1.
    """
    if window < 1:
        raise ValueError(f"window: must be at least 1, got {window}")
    if last_size is None:
        return 0
    target = tuple(last_size)
    for index, size in enumerate(ready_sizes[:window]):
        if size is not None and tuple(size) == target:
            return index
    return 0
