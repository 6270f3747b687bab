"""A pool of Ray actors of one kind that notices dead actors and replaces them.

Ray restarts a crashed actor by itself (`max_restarts`), but calls made
while it restarts fail at once with ActorUnavailableError, and once its
restarts are used up every call fails with ActorDiedError. The pool keeps
work away from such an actor. An actor whose call failed is taken out of
service and probed with `info()` until one of three things happens:

- a probe succeeds, and the actor is back in service;
- Ray reports it dead for good, and it is replaced while the budget lasts;
- no probe succeeds within `actor_start_timeout_s`, and it is killed and
  replaced.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from orchestrator.settings import Settings

logger = logging.getLogger(__name__)

# Seconds between probes of an actor that Ray is restarting. A restart
# reloads the model, which takes seconds to minutes, and a probe is one
# cheap call, so half a second costs nothing and notices the return quickly.
PROBE_INTERVAL_S = 0.5


@dataclass
class _Check:
    """The health check of one out-of-service actor."""

    # Monotonic time after which the actor counts as dead.
    deadline: float
    # Monotonic time of the next probe when none is outstanding.
    next_probe: float
    probe: Any = None


class ActorPool:
    """A fixed number of actors created by `create`, each healthy, being checked, or replaced."""

    def __init__(
        self, label: str, create: Callable[[], Any], size: int, settings: Settings
    ) -> None:
        self.label = label
        self.size = size
        self._create = create
        self._start_timeout_s = settings.actor_start_timeout_s
        self._max_restarts = settings.actor_max_restarts
        self._max_replacements = settings.actor_max_replacements
        self._replacements_left = settings.actor_max_replacements
        self.healthy: list[Any] = []
        self._checking: dict[Any, _Check] = {}
        self.dead = 0
        self.last_error = ""

    def __repr__(self) -> str:
        return (
            f"ActorPool({self.label!r}, healthy={len(self.healthy)}, "
            f"checking={len(self._checking)}, dead={self.dead})"
        )

    @property
    def exhausted(self) -> bool:
        """True when no actor is left and none may be started: the pool's work must fail."""
        return not self.healthy and not self._checking

    @property
    def actors(self) -> list[Any]:
        """Every live actor handle, healthy or being checked."""
        return [*self.healthy, *self._checking]

    def start(self) -> list[dict[str, Any]]:
        """Create the actors, wait until each has loaded its model, and return their `info()`.

        Raises Ray's RayActorError when an actor fails to start and
        GetTimeoutError when they take longer than `actor_start_timeout_s`.
        The actors are killed before either is raised.
        """
        import ray

        actors = [self._create() for _ in range(self.size)]
        try:
            infos: list[dict[str, Any]] = ray.get(
                [actor.info.remote() for actor in actors], timeout=self._start_timeout_s
            )
        except BaseException:
            for actor in actors:
                ray.kill(actor)
            raise
        self.healthy = actors
        return infos

    def reset_budget(self) -> None:
        """Allow `actor_max_replacements` fresh actors again; called at the start of each run."""
        self._replacements_left = self._max_replacements

    def report_failure(self, actor: Any, error: str) -> None:
        """Take an actor whose call failed with RayActorError out of service and check it."""
        if actor not in self.healthy:
            return
        self.healthy.remove(actor)
        self.last_error = error
        now = time.monotonic()
        self._checking[actor] = _Check(deadline=now + self._start_timeout_s, next_probe=now)
        logger.warning(
            "%s actor out of service, checking whether Ray restarts it: %s", self.label, error
        )

    def poll(self) -> None:
        """Advance the health checks: read finished probes, send due ones, enforce deadlines."""
        if not self._checking:
            return
        import ray

        now = time.monotonic()
        for actor, check in list(self._checking.items()):
            if check.probe is not None:
                ready, _ = ray.wait([check.probe], timeout=0)
                if ready:
                    self._read_probe(actor, check, now)
                    continue
            if now > check.deadline:
                self._replace(
                    actor,
                    f"did not answer within {self._start_timeout_s:.0f} s "
                    "(actor_start_timeout_s) after it failed",
                )
            elif check.probe is None and now >= check.next_probe:
                check.probe = actor.info.remote()

    def _read_probe(self, actor: Any, check: _Check, now: float) -> None:
        import ray

        try:
            ray.get(check.probe)
        except ray.exceptions.ActorUnavailableError:
            # Ray is restarting the actor: calls fail until its model is loaded again.
            check.probe = None
            check.next_probe = now + PROBE_INTERVAL_S
            return
        except ray.exceptions.RayActorError as exc:
            self._replace(actor, describe_actor_error(exc))
            return
        except ray.exceptions.RayTaskError:
            pass  # info() itself raised, so the actor process is alive and serving calls.
        del self._checking[actor]
        self.healthy.append(actor)
        logger.info("%s actor back in service", self.label)

    def _replace(self, actor: Any, reason: str) -> None:
        """Kill a dead or silent actor for good and start a fresh one while the budget lasts."""
        import ray

        del self._checking[actor]
        ray.kill(actor, no_restart=True)
        self.dead += 1
        self.last_error = reason
        if self._replacements_left <= 0:
            logger.error(
                "%s actor dead for good and no replacement left (%d healthy, %d being checked): %s",
                self.label,
                len(self.healthy),
                len(self._checking),
                reason,
            )
            return
        self._replacements_left -= 1
        fresh = self._create()
        now = time.monotonic()
        self._checking[fresh] = _Check(deadline=now + self._start_timeout_s, next_probe=now)
        logger.warning(
            "%s actor dead for good (%s); started a replacement, %d more allowed this run",
            self.label,
            reason,
            self._replacements_left,
        )

    def exhausted_error(self) -> str:
        """Return the message that frames left without an actor fail with."""
        return (
            f"no {self.label} actor left: {self.dead} died for good after their "
            f"{self._max_restarts} restarts (actor_max_restarts) and the "
            f"{self._max_replacements} replacements per run (actor_max_replacements) are used up; "
            f"last error: {self.last_error}"
        )

    def shutdown(self) -> None:
        """Kill every actor of the pool."""
        import ray

        for actor in self.actors:
            ray.kill(actor)
        self.healthy.clear()
        self._checking.clear()


# Markers of the line in a Ray actor error that gives the cause of death, most specific first.
_CAUSE_MARKERS = ("BackendLoadError: ", "ValueError: ", "OSError: ", "The actor is dead because")
# Maximum length of the text kept from a Ray error, whose full text repeats the worker's log.
MAX_ERROR_CHARS = 300


def describe_actor_error(exc: BaseException) -> str:
    """Return the line of a Ray actor error that gives the cause of death, shortened."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    chosen = lines[0]
    for marker in _CAUSE_MARKERS:
        found = next((line for line in lines if marker in line), None)
        if found is not None:
            chosen = found[found.index(marker) :]
            break
    return f"{type(exc).__name__}: {chosen}"[:MAX_ERROR_CHARS]
