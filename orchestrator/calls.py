"""Remote calls in flight on actors, per actor in submission order.

An actor runs one call at a time (`max_concurrency=1`), in the order its
calls were submitted, so the head of an actor's queue is the call that is
running. That is the call a timeout measures and the call that an actor's
death is charged to; the calls queued behind it never started.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from orchestrator.actor_pool import ActorPool

GENERATE = "generate"
SCORE = "score"


@dataclass(eq=False)
class Call:
    """One remote call on an actor: generating or scoring one attempt."""

    kind: str
    # The in-flight attempt that the call works on.
    flight: Any
    actor: Any
    pool: ActorPool
    ref: Any
    # Monotonic time at which the call reached the head of its actor's queue.
    started: float
    timed_out: bool = False
    # Set when the call's actor died: the call has been handled and its result is void.
    lost: bool = False


class CallTracker:
    """The calls in flight of one run, with one queue per actor."""

    def __init__(self) -> None:
        import ray

        self._ray = ray
        self._calls: dict[Any, Call] = {}
        self._queues: dict[Any, deque[Call]] = {}

    def __len__(self) -> int:
        return len(self._calls)

    def load(self, actor: Any) -> int:
        """Return how many calls the actor has queued, the running one included."""
        return len(self._queues.get(actor, ()))

    def least_loaded(self, pool: ActorPool, depth: int | None) -> Any | None:
        """Return the healthy actor with the fewest calls, if it has fewer than `depth`."""
        if not pool.healthy:
            return None
        actor = min(pool.healthy, key=self.load)
        if depth is not None and self.load(actor) >= depth:
            return None
        return actor

    def submit(self, kind: str, flight: Any, actor: Any, pool: ActorPool, ref: Any) -> Call:
        call = Call(kind, flight, actor, pool, ref, started=time.monotonic())
        self._queues.setdefault(actor, deque()).append(call)
        self._calls[ref] = call
        return call

    def finish(self, call: Call) -> None:
        """Remove a call whose result has been read; the next one of its actor starts now."""
        queue = self._queues.get(call.actor)
        if queue and call in queue:
            queue.remove(call)
            if queue:
                queue[0].started = max(queue[0].started, time.monotonic())

    def wait(self, timeout: float) -> list[Call]:
        """Wait up to `timeout` seconds for a result, then return the finished calls in order.

        The returned calls are no longer tracked as in flight, but stay in
        their actor's queue until `finish` or `lose_actor`.
        """
        if not self._calls:
            time.sleep(min(timeout, 0.05))
            return []
        refs = list(self._calls)
        first, _ = self._ray.wait(refs, num_returns=1, timeout=timeout, fetch_local=False)
        if not first:
            return []
        ready, _ = self._ray.wait(refs, num_returns=len(refs), timeout=0, fetch_local=False)
        ready_set = set(ready)
        # Submission order, so that a call ahead in an actor's queue is handled first.
        return [self._calls.pop(ref) for ref in refs if ref in ready_set]

    def lose_actor(self, call: Call) -> list[Call]:
        """Drop every call of `call.actor`, which died, and return them, the running one first.

        The results of the other calls fail too. Each is marked `lost` and is
        no longer tracked, so a caller that got it from `wait` must skip it.
        """
        queue = self._queues.pop(call.actor, deque())
        if call not in queue:
            queue.appendleft(call)
        for lost in queue:
            lost.lost = True
            self._calls.pop(lost.ref, None)
        return list(queue)

    def overdue(self, limit_s: Callable[[Call], float]) -> list[Call]:
        """Mark and return the running calls that have run longer than `limit_s(call)` seconds."""
        now = time.monotonic()
        found = []
        for queue in self._queues.values():
            if not queue:
                continue
            head = queue[0]
            if not head.timed_out and now - head.started > limit_s(head):
                head.timed_out = True
                found.append(head)
        return found
