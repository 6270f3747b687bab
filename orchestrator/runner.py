"""Drive one run: frames to generator actors, images to scorers, verdicts to the catalog.

The runner is the only writer of a run's state. It reads the run back from
the catalog at start, so a fresh run and a resumed one take the same path:
final frames are skipped, attempts left running by a dead driver are marked
abandoned and their frames start a new attempt.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from actors.compose import bind_prompt, compose_canvas
from orchestrator.cluster import actor_options, ensure_ray, gpus_per_actor, pool_size
from orchestrator.consistency import DEFAULT_THRESHOLDS, Action, decide, rank, thresholds_for
from orchestrator.planner import attempt_seed
from orchestrator.settings import Settings
from orchestrator.submit import RunContext, load_context
from schemas.catalog import FrameRow
from schemas.errors import BackendLoadError, ModerationError, StorageError
from schemas.records import (
    AttemptState,
    FrameScore,
    FrameState,
    GenerationRequest,
    GenerationResult,
    ReferenceImage,
    RunState,
    RunSummary,
    Verdict,
)
from schemas.storyboard import Backend, ScorerName
from storage.catalog import Catalog
from storage.objects import ObjectStore

logger = logging.getLogger(__name__)

# Seconds between checks of the catalog for a cancel request.
CANCEL_POLL_S = 1.0
# Requests queued per generator actor: one running and one waiting, so the
# actor never idles while the driver stores and scores the previous frame.
QUEUE_DEPTH = 2


class RunListener(Protocol):
    """Progress callbacks; the CLI draws a progress bar from them."""

    def started(self, run_id: str, total: int, done: int) -> None: ...

    def frame_finished(self, frame: FrameRow, state: FrameState, verdict: Verdict | None) -> None: ...


@dataclass
class _Frame:
    row: FrameRow
    # (attempt id, score) of every attempt that produced a scored image.
    scored: list[tuple[int, FrameScore]] = field(default_factory=list)
    next_number: int = 1
    errors: int = 0
    state: FrameState = FrameState.PENDING
    asset_id: str | None = None
    object_key: str | None = None


@dataclass
class _InFlight:
    frame: _Frame
    attempt_id: int
    number: int
    seed: int
    actor: Any
    started: float
    result: GenerationResult | None = None
    object_key: str | None = None
    timed_out: bool = False


class UserFacingRunError(RuntimeError):
    """A run that cannot start for a reason the user must fix (model not found, ...)."""


class Runner:
    """Run runs on a Ray cluster with one pool of generator actors per (backend, model)."""

    def __init__(
        self,
        settings: Settings,
        catalog: Catalog,
        store: ObjectStore,
        *,
        generator_cls: type | None = None,
        scorer_cls: type | None = None,
        listener: RunListener | None = None,
    ) -> None:
        self.settings = settings
        self.catalog = catalog
        self.store = store
        self.generator_cls = generator_cls
        self.scorer_cls = scorer_cls
        self.listener = listener
        self._pools: dict[tuple[str, str], list[Any]] = {}
        self._scorable: dict[tuple[str, str], bool] = {}
        self._scorers: list[Any] = []

    # Public API

    def run(self, run_id: str, should_stop: Callable[[], bool] | None = None) -> RunSummary:
        """Run (or resume) a run to its end and return its summary."""
        run_id = self.catalog.get_run(run_id).id
        context = load_context(self.catalog, self.store, run_id)
        ensure_ray(self.settings)
        abandoned = self.catalog.abandon_in_flight(run_id)
        if abandoned:
            logger.info("run=%s requeued %d frames left in flight by an earlier driver", run_id, abandoned)
        driver = f"{socket.gethostname()}:{os.getpid()}"
        self.catalog.set_run_state(run_id, RunState.RUNNING, driver=driver)
        logger.info("run=%s started by %s", run_id, driver)
        try:
            cancelled = _RunLoop(self, context, should_stop).execute()
        except (KeyboardInterrupt, SystemExit):
            self.catalog.abandon_in_flight(run_id)
            self.catalog.set_run_state(run_id, RunState.INTERRUPTED, error="driver interrupted")
            logger.warning("run=%s interrupted; continue it with `onmodel resume %s`", run_id, run_id)
            raise
        except Exception as exc:
            self.catalog.abandon_in_flight(run_id)
            self.catalog.set_run_state(run_id, RunState.FAILED, error=str(exc))
            logger.exception("run=%s failed", run_id)
            raise
        final = RunState.CANCELLED if cancelled else RunState.COMPLETED
        self.catalog.set_run_state(run_id, final)
        logger.info("run=%s %s", run_id, final.value)
        return self.catalog.run_summary(run_id)

    def shutdown(self) -> None:
        """Kill the actors this runner created."""
        import ray

        for pool in self._pools.values():
            for actor in pool:
                ray.kill(actor)
        for actor in self._scorers:
            ray.kill(actor)
        self._pools.clear()
        self._scorers.clear()

    # Actor pools

    def generator_pool(self, backend: str, model: str) -> list[Any]:
        key = (backend, model)
        if key in self._pools:
            return self._pools[key]
        import ray

        cls = self.generator_cls
        if cls is None:
            from actors.generator import GeneratorWorker

            cls = GeneratorWorker
        num_gpus = 0.0 if backend == Backend.TINY else gpus_per_actor(self.settings)
        remote = ray.remote(cls).options(**actor_options(self.settings, num_gpus))
        options = {"torch_threads": self.settings.torch_threads}
        pool = [remote.remote(backend, model, options) for _ in range(pool_size(self.settings, backend))]
        try:
            infos = ray.get([actor.info.remote() for actor in pool])
        except ray.exceptions.RayActorError as exc:
            for actor in pool:
                ray.kill(actor)
            raise UserFacingRunError(_init_error_message(exc, backend, model)) from None
        self._scorable[key] = bool(infos[0].get("scorable", backend != Backend.TINY))
        logger.info(
            "generator pool ready: backend=%s model=%s actors=%d device=%s",
            backend, model, len(pool), infos[0].get("device"),
        )
        self._pools[key] = pool
        return pool

    def scorable(self, backend: str, model: str) -> bool:
        return self._scorable.get((backend, model), backend != Backend.TINY)

    def scorer_pool(self, scorer: str, model: str | None) -> list[Any]:
        if self._scorers:
            return self._scorers
        import ray

        cls = self.scorer_cls
        if cls is None:
            from actors.identity import IdentityWorker

            cls = IdentityWorker
        options = actor_options(self.settings, 0.0)
        remote = ray.remote(cls).options(**options)
        self._scorers = [remote.remote(scorer, model) for _ in range(self.settings.scorer_actors)]
        return self._scorers


def _init_error_message(exc: Exception, backend: str, model: str) -> str:
    text = str(exc)
    for marker in ("BackendLoadError: ", "ValueError: ", "OSError: "):
        if marker in text:
            return text.rsplit(marker, 1)[1].strip().splitlines()[0]
    return f"generator backend {backend!r} with model {model!r} failed to start: {text.splitlines()[-1]}"


class _RunLoop:
    """The scheduling loop of one run; separate from Runner so its state dies with the run."""

    def __init__(self, runner: Runner, context: RunContext, should_stop: Callable[[], bool] | None) -> None:
        import ray

        self.ray = ray
        self.runner = runner
        self.catalog = runner.catalog
        self.store = runner.store
        self.settings = runner.settings
        self.context = context
        self.run_id = context.run.id
        self.should_stop = should_stop
        consistency = context.storyboard.consistency
        self.scorer_name = consistency.scorer
        self.max_attempts = consistency.max_attempts
        self.frames: dict[str, _Frame] = {}
        self.ready: deque[str] = deque()
        self.delayed: list[tuple[float, str]] = []
        self.children: dict[str, list[str]] = {}
        self.generating: dict[Any, _InFlight] = {}
        self.scoring: dict[Any, _InFlight] = {}
        self.load: dict[Any, deque[_InFlight]] = {}
        self.reference_refs: dict[tuple[str, ...], Any] = {}
        self.cancelled = False

    # Setup

    def _restore(self) -> None:
        rows = self.catalog.list_frames(self.run_id)
        for row in rows:
            frame = _Frame(row=row, state=row.state, asset_id=row.asset_id)
            self.frames[row.key] = frame
        for attempt in self.catalog.list_attempts(self.run_id):
            frame = self.frames[attempt.frame_key]
            frame.next_number = max(frame.next_number, attempt.number + 1)
            if attempt.state == AttemptState.DONE and attempt.verdict is not None:
                score = FrameScore(verdict=attempt.verdict, scorer="catalog", characters=attempt.scores)
                frame.scored.append((attempt.id, score))
            elif attempt.state == AttemptState.FAILED:
                frame.errors += 1
        for frame in self.frames.values():
            if frame.asset_id is not None:
                frame.object_key = self.catalog.get_asset(frame.asset_id).object_key
        for row in rows:
            frame = self.frames[row.key]
            if frame.state.is_final:
                continue
            parent = self.frames.get(row.parent_key) if row.parent_key else None
            if parent is None:
                self.ready.append(row.key)
            elif parent.state in (FrameState.ACCEPTED, FrameState.NEEDS_REVIEW):
                self.ready.append(row.key)
            elif parent.state.is_final:
                self._finish_without_asset(frame, FrameState.FAILED, f"parent frame {parent.row.key} {parent.state.value}")
            else:
                self.children.setdefault(parent.row.key, []).append(row.key)

    # Main loop

    def execute(self) -> bool:
        self._restore()
        total = len(self.frames)
        done = sum(1 for f in self.frames.values() if f.state.is_final)
        if self.runner.listener:
            self.runner.listener.started(self.run_id, total, done)
        last_cancel_check = 0.0
        while self.ready or self.delayed or self.generating or self.scoring:
            now = time.monotonic()
            if now - last_cancel_check >= CANCEL_POLL_S:
                last_cancel_check = now
                self._check_cancel()
            self._release_delayed(now)
            if not self.cancelled:
                self._dispatch()
            self._collect(timeout=0.2)
            self._check_timeouts()
        return self.cancelled

    def _check_cancel(self) -> None:
        if self.cancelled:
            return
        requested = self.should_stop() if self.should_stop else False
        if not requested:
            requested = self.catalog.get_run(self.run_id).state == RunState.CANCELLED
        if not requested:
            return
        logger.info("run=%s cancel requested; finishing %d frames in flight", self.run_id, len(self.generating) + len(self.scoring))
        self.cancelled = True
        pending = list(self.ready) + [key for _, key in self.delayed]
        for children in self.children.values():
            pending.extend(children)
        self.ready.clear()
        self.delayed.clear()
        self.children.clear()
        for key in pending:
            self._finish_without_asset(self.frames[key], FrameState.CANCELLED, "run cancelled")

    def _release_delayed(self, now: float) -> None:
        due = [item for item in self.delayed if item[0] <= now]
        for item in due:
            self.delayed.remove(item)
            self.ready.append(item[1])

    def _dispatch(self) -> None:
        while self.ready:
            key = self.ready[0]
            frame = self.frames[key]
            pool = self.runner.generator_pool(frame.row.backend, frame.row.model)
            actor = min(pool, key=lambda a: len(self.load.get(a, ())))
            if len(self.load.get(actor, ())) >= QUEUE_DEPTH:
                return
            self.ready.popleft()
            self._start_attempt(frame, actor)

    def _start_attempt(self, frame: _Frame, actor: Any) -> None:
        row = frame.row
        number = frame.next_number
        frame.next_number += 1
        seed = attempt_seed(row.seed, len(frame.scored) + 1)
        attempt_id = self.catalog.start_attempt(self.run_id, row.key, number, seed)
        frame.state = FrameState.RUNNING
        request = GenerationRequest(
            frame_key=row.key,
            attempt=number,
            prompt=self._prompt(row),
            backend=Backend(row.backend),
            model=row.model,
            width=row.width,
            height=row.height,
            steps=row.steps,
            guidance=row.guidance,
            seed=seed,
            conditioning_png=self._conditioning(row),
        )
        flight = _InFlight(frame, attempt_id, number, seed, actor, time.monotonic())
        ref = actor.generate.remote(request)
        self.generating[ref] = flight
        queue = self.load.setdefault(actor, deque())
        if not queue:
            flight.started = time.monotonic()
        queue.append(flight)
        logger.debug("run=%s frame=%s attempt=%d seed=%d dispatched", self.run_id, row.key, number, seed)

    def _prompt(self, row: FrameRow) -> str:
        storyboard = self.context.storyboard
        if row.edit_step > 0:
            return row.prompt
        names = [storyboard.character(c).name or c for c in row.characters]
        prompt = bind_prompt(row.prompt, names)
        if storyboard.style is not None and storyboard.style.description:
            prompt = f"{prompt} Style: {storyboard.style.description}."
        return prompt

    def _conditioning(self, row: FrameRow) -> bytes | None:
        source = self._source_asset(row)
        if source is not None:
            return self.store.get(self.catalog.get_asset(source).object_key)
        if row.parent_key:
            parent = self.frames[row.parent_key]
            assert parent.object_key is not None, "a child frame is only dispatched after its parent"
            return self.store.get(parent.object_key)
        references = [self.context.references[c][0].png for c in row.characters]
        style = self.context.style.png if self.context.style is not None else None
        if not references and style is None:
            return None
        return compose_canvas(references, row.width, row.height, style)

    def _source_asset(self, row: FrameRow) -> str | None:
        """Return the cataloged asset a frame edits, for runs made by `onmodel edit`."""
        sources: dict[str, str] = self.context.run.options.get("sources", {})
        return sources.get(row.key)

    # Results

    def _collect(self, timeout: float) -> None:
        refs = list(self.generating) + list(self.scoring)
        if not refs:
            time.sleep(min(timeout, 0.05))
            return
        done, _ = self.ray.wait(refs, num_returns=len(refs), timeout=timeout, fetch_local=False)
        for ref in done:
            if ref in self.generating:
                self._on_generated(ref, self.generating.pop(ref))
            else:
                self._on_scored(ref, self.scoring.pop(ref))

    def _pop_load(self, flight: _InFlight) -> None:
        queue = self.load.get(flight.actor)
        if queue and flight in queue:
            queue.remove(flight)
            if queue:
                queue[0].started = max(queue[0].started, time.monotonic())

    def _on_generated(self, ref: Any, flight: _InFlight) -> None:
        self._pop_load(flight)
        try:
            result: GenerationResult = self.ray.get(ref)
        except self.ray.exceptions.RayTaskError as exc:
            cause = exc.cause if hasattr(exc, "cause") else None
            if isinstance(cause, ModerationError):
                self._moderated(flight, str(cause))
            else:
                self._attempt_error(flight, _task_error_text(exc, cause))
            return
        except self.ray.exceptions.RayActorError as exc:
            reason = f"timed out after {self.settings.frame_timeout_s:.0f} s" if flight.timed_out else "generator actor died"
            self._attempt_error(flight, f"{reason}: {str(exc).splitlines()[0]}")
            return

        # Object first, then row: a crash after the put leaves an orphan object, never a dangling row.
        try:
            flight.object_key = self.store.put(result.png)
        except StorageError as exc:
            self._attempt_error(flight, f"object store write failed: {exc}")
            return
        flight.result = result
        row = flight.frame.row
        if self.scorer_name == ScorerName.NONE or not self.runner.scorable(row.backend, row.model):
            detail = "identity gate off" if self.scorer_name == ScorerName.NONE else f"{row.backend} backend output has no faces to score"
            self._on_score(flight, FrameScore(verdict=Verdict.UNSCORED, scorer="none", detail=detail))
            return
        self._submit_score(flight)

    def _submit_score(self, flight: _InFlight) -> None:
        assert flight.result is not None
        row = flight.frame.row
        consistency = self.context.storyboard.consistency
        scorers = self.runner.scorer_pool(consistency.scorer.value, consistency.model)
        scorer = scorers[flight.number % len(scorers)]
        characters = tuple(row.characters)
        if characters not in self.reference_refs:
            subset: dict[str, list[ReferenceImage]] = {c: self.context.references[c] for c in characters}
            self.reference_refs[characters] = self.ray.put(subset)
        default = DEFAULT_THRESHOLDS.get(self.scorer_name)
        thresholds = thresholds_for(self.context.storyboard, list(characters), default)
        ref = scorer.score.remote(flight.result.png, self.reference_refs[characters], thresholds)
        self.scoring[ref] = flight

    def _on_scored(self, ref: Any, flight: _InFlight) -> None:
        try:
            score: FrameScore = self.ray.get(ref)
        except (self.ray.exceptions.RayTaskError, self.ray.exceptions.RayActorError) as exc:
            self._attempt_error(flight, f"identity scoring failed: {str(exc).splitlines()[0]}")
            return
        self._on_score(flight, score)

    def _on_score(self, flight: _InFlight, score: FrameScore) -> None:
        frame = flight.frame
        row = frame.row
        assert flight.result is not None and flight.object_key is not None
        sha256 = flight.object_key.rsplit("/", 1)[-1].split(".")[0]
        self.catalog.finish_attempt(
            flight.attempt_id,
            AttemptState.DONE,
            result=flight.result,
            object_key=flight.object_key,
            sha256=sha256,
            score=score,
        )
        frame.scored.append((flight.attempt_id, score))
        logger.info(
            "run=%s frame=%s attempt=%d verdict=%s score=%s",
            self.run_id, row.key, flight.number, score.verdict.value,
            f"{score.score:.3f}" if score.score is not None else "-",
        )
        decision = decide(score.verdict, len(frame.scored), self.max_attempts)
        if decision.action == Action.RETRY and not self.cancelled:
            self.ready.appendleft(row.key)
            return
        if decision.action == Action.ACCEPT:
            self._accept(frame, flight.attempt_id, FrameState.ACCEPTED, score.verdict)
            return
        best_id, best = max(frame.scored, key=lambda item: rank(item[1]))
        self._accept(frame, best_id, FrameState.NEEDS_REVIEW, best.verdict)

    def _accept(self, frame: _Frame, attempt_id: int, state: FrameState, verdict: Verdict) -> None:
        row = frame.row
        hashes = {c: [image.sha256 for image in self.context.references[c]] for c in row.characters}
        if self.context.style is not None:
            hashes["style"] = [self.context.style.sha256]
        parent_asset = self.frames[row.parent_key].asset_id if row.parent_key else self._source_asset(row)
        frame.asset_id = self.catalog.accept_frame(self.run_id, row.key, attempt_id, state, hashes, parent_asset)
        frame.object_key = self.catalog.get_asset(frame.asset_id).object_key
        frame.state = state
        self._notify(frame, verdict)
        for child in self.children.pop(row.key, []):
            if not self.cancelled:
                self.ready.append(child)

    def _finish_without_asset(self, frame: _Frame, state: FrameState, error: str) -> None:
        frame.state = state
        self.catalog.set_frame_state(self.run_id, frame.row.key, state, error=error)
        self._notify(frame, None)
        for child in self.children.pop(frame.row.key, []):
            self._finish_without_asset(self.frames[child], state if state == FrameState.CANCELLED else FrameState.FAILED, f"parent frame {frame.row.key} {state.value}")

    def _notify(self, frame: _Frame, verdict: Verdict | None) -> None:
        if self.runner.listener:
            self.runner.listener.frame_finished(frame.row, frame.state, verdict)

    # Failures

    def _moderated(self, flight: _InFlight, text: str) -> None:
        self.catalog.finish_attempt(flight.attempt_id, AttemptState.FAILED, error=text)
        logger.warning("run=%s frame=%s attempt=%d moderated: %s", self.run_id, flight.frame.row.key, flight.number, text)
        self._finish_without_asset(flight.frame, FrameState.MODERATED, text)

    def _attempt_error(self, flight: _InFlight, text: str) -> None:
        frame = flight.frame
        frame.errors += 1
        self.catalog.finish_attempt(flight.attempt_id, AttemptState.FAILED, error=text)
        if frame.errors > self.settings.frame_max_errors or self.cancelled:
            logger.error("run=%s frame=%s attempt=%d failed for good: %s", self.run_id, frame.row.key, flight.number, text)
            self._finish_without_asset(frame, FrameState.FAILED, text)
            return
        backoff = self.settings.retry_backoff_s * 2 ** (frame.errors - 1)
        logger.warning(
            "run=%s frame=%s attempt=%d failed (%s); retrying in %.1f s",
            self.run_id, frame.row.key, flight.number, text, backoff,
        )
        self.delayed.append((time.monotonic() + backoff, frame.row.key))

    def _check_timeouts(self) -> None:
        now = time.monotonic()
        for actor, queue in self.load.items():
            if not queue:
                continue
            head = queue[0]
            if not head.timed_out and now - head.started > self.settings.frame_timeout_s:
                head.timed_out = True
                logger.error(
                    "run=%s frame=%s attempt=%d timed out after %.0f s; restarting its actor",
                    self.run_id, head.frame.row.key, head.number, self.settings.frame_timeout_s,
                )
                # Killing with restart lets Ray bring the actor back with a fresh model.
                self.ray.kill(actor, no_restart=False)


def _task_error_text(exc: Exception, cause: BaseException | None) -> str:
    if cause is not None:
        return f"{type(cause).__name__}: {cause}"
    return str(exc).strip().splitlines()[-1]


def is_user_error(exc: BaseException) -> bool:
    return isinstance(exc, UserFacingRunError | BackendLoadError)
