"""The scheduling loop of one run: frames to generators, images to scorers, verdicts to the catalog.

What a failure costs (the limits are in `Settings`):

- The generator raises, or the image cannot be stored: the attempt fails and
  the frame is retried after a backoff, up to `frame_max_errors` times. After
  that the frame ends `failed` with the error text, and the run goes on.
- An actor process dies, or hangs past its timeout and is killed: the call
  it was running counts as such an error; calls queued behind it go back to
  the queue without counting. The actor stays out of service until Ray has
  restarted it, and a dead one is replaced (`orchestrator.actor_pool`).
- A scorer actor dies: the stored image is scored again on a healthy scorer,
  up to `frame_max_errors` times.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from actors.compose import bind_prompt, compose_canvas
from orchestrator.actor_pool import ActorPool, describe_actor_error
from orchestrator.affinity import LOOKAHEAD_WINDOW, Size, pick_actor, pick_frame
from orchestrator.calls import GENERATE, SCORE, Call, CallTracker
from orchestrator.consistency import (
    Action,
    Decision,
    decide,
    rank,
    thresholds_for,
)
from orchestrator.planner import attempt_seed
from orchestrator.style import record_style, submit_style_score
from orchestrator.submit import RunContext
from schemas.catalog import FrameRow
from schemas.errors import ModerationError, NotFoundError, StorageError
from schemas.records import (
    AttemptState,
    FrameScore,
    FrameState,
    GenerationRequest,
    GenerationResult,
    ReferenceImage,
    RunState,
    Verdict,
)
from schemas.storyboard import Backend, ScorerName
from storage.errors import DuplicateRowError

if TYPE_CHECKING:
    from orchestrator.runner import Runner

logger = logging.getLogger(__name__)

# Seconds between checks of the catalog for a cancel request.
CANCEL_POLL_S = 1.0
# Requests queued per generator actor: one running and one waiting, so the
# actor never idles while the driver stores and scores the previous frame.
QUEUE_DEPTH = 2
# Seconds one turn of the scheduling loop waits for a result. It bounds how
# late the loop notices a cancel request, a due retry or a timeout.
WAIT_S = 0.2


@dataclass(eq=False)
class _Frame:
    row: FrameRow
    # (attempt id, score) of every attempt that produced a scored image.
    scored: list[tuple[int, FrameScore]] = field(default_factory=list)
    next_number: int = 1
    errors: int = 0
    state: FrameState = FrameState.PENDING
    asset_id: str | None = None
    object_key: str | None = None


@dataclass(eq=False)
class _InFlight:
    """One attempt of a frame, from dispatch to verdict."""

    frame: _Frame
    attempt_id: int
    number: int
    seed: int
    result: GenerationResult | None = None
    object_key: str | None = None
    # Ray ref of the style similarity call, when the scorer can measure style.
    style_ref: Any = None
    # Scorer calls of this attempt that were lost with their actor.
    score_failures: int = 0


class RunLoop:
    """The scheduling loop of one run, apart from Runner so that its state dies with the run."""

    def __init__(
        self, runner: Runner, context: RunContext, should_stop: Callable[[], bool] | None
    ) -> None:
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
        # Frames whose last attempt was scored before an earlier driver stopped.
        self.scored_before: list[str] = []
        self.calls = CallTracker()
        # (width, height) of the last frame sent to each generator actor.
        self.last_size: dict[Any, tuple[int, int]] = {}
        # Generated attempts waiting for a scorer to come back into service.
        self.unscored: deque[_InFlight] = deque()
        self.reference_refs: dict[tuple[str, ...], Any] = {}
        self.cancelled = False
        runner.prepare_pools()

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
                score = FrameScore(
                    verdict=attempt.verdict, scorer="catalog", characters=attempt.scores
                )
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
            if parent is None or parent.state in (FrameState.ACCEPTED, FrameState.NEEDS_REVIEW):
                self._queue_restored(frame)
            elif parent.state.is_final:
                self._finish_without_asset(
                    frame, FrameState.FAILED, f"parent frame {parent.row.key} {parent.state.value}"
                )
            else:
                self.children.setdefault(parent.row.key, []).append(row.key)

    def _queue_restored(self, frame: _Frame) -> None:
        if frame.scored and self._decision(frame).action != Action.RETRY:
            self.scored_before.append(frame.row.key)
        else:
            self.ready.append(frame.row.key)

    def _decision(self, frame: _Frame) -> Decision:
        return decide(frame.scored[-1][1].verdict, len(frame.scored), self.max_attempts)

    def _conclude_scored_before(self) -> None:
        """Accept frames whose deciding attempt was scored before an earlier driver stopped.

        Generating them again would cost a frame and change its image.
        """
        for key in self.scored_before:
            frame = self.frames[key]
            logger.info(
                "run=%s frame=%s concluded from an attempt scored by an earlier driver",
                self.run_id,
                key,
            )
            self._conclude(frame)
        self.scored_before.clear()

    # Main loop

    def execute(self) -> bool:
        self._restore()
        total = len(self.frames)
        done = sum(1 for f in self.frames.values() if f.state.is_final)
        if self.runner.listener:
            self.runner.listener.started(self.run_id, total, done)
        self._conclude_scored_before()
        last_cancel_check = float("-inf")
        while self.ready or self.delayed or len(self.calls) or self.unscored:
            if self.runner.stop_signal is not None:
                logger.warning("run=%s stopping on signal %d", self.run_id, self.runner.stop_signal)
                raise SystemExit(128 + self.runner.stop_signal)
            now = time.monotonic()
            if now - last_cancel_check >= CANCEL_POLL_S:
                last_cancel_check = now
                self._check_cancel()
            self._release_delayed(now)
            for pool in self.runner.pools():
                pool.poll()
            if not self.cancelled:
                self._dispatch()
            self._dispatch_scores()
            for call in self.calls.wait(WAIT_S):
                if call.lost:
                    continue  # handled when an earlier call of its actor reported the death
                if call.kind == GENERATE:
                    self._on_generated(call)
                else:
                    self._on_scored(call)
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
        logger.info(
            "run=%s cancel requested; finishing %d calls in flight", self.run_id, len(self.calls)
        )
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
            head = self.frames[self.ready[0]]
            pool = self.runner.generator_pool(head.row.backend, head.row.model)
            if pool.exhausted:
                self.ready.popleft()
                logger.error(
                    "run=%s frame=%s failed: %s", self.run_id, head.row.key, pool.exhausted_error()
                )
                self._finish_without_asset(head, FrameState.FAILED, pool.exhausted_error())
                continue
            # Size affinity: an actor keeps the frame size it last ran when it can,
            # because a new size costs a recompile on GPU actors using torch.compile.
            actor = pick_actor(
                {a: self.last_size.get(a) for a in pool.healthy},
                {a: self.calls.load(a) for a in pool.healthy},
                (head.row.width, head.row.height),
                QUEUE_DEPTH,
            )
            if actor is None:
                return
            # When every queue was full, the actor that freed a slot may have
            # last run another size than the head frame: a frame of its own
            # size a few places back goes first.
            last_size = self.last_size.get(actor)
            index = pick_frame(self._ready_sizes(head.row), last_size, LOOKAHEAD_WINDOW)
            frame = self.frames[self.ready[index]]
            del self.ready[index]
            self.last_size[actor] = (frame.row.width, frame.row.height)
            self._start_attempt(frame, actor, pool)

    def _ready_sizes(self, head: FrameRow) -> list[Size | None]:
        """Return the sizes of the first ready frames, None for those of another generator pool."""
        sizes: list[Size | None] = []
        for key in itertools.islice(self.ready, LOOKAHEAD_WINDOW):
            row = self.frames[key].row
            same_pool = (row.backend, row.model) == (head.backend, head.model)
            sizes.append((row.width, row.height) if same_pool else None)
        return sizes

    def _start_attempt(self, frame: _Frame, actor: Any, pool: ActorPool) -> None:
        row = frame.row
        number = frame.next_number
        frame.next_number += 1
        seed = attempt_seed(row.seed, len(frame.scored) + 1)
        attempt_id = self._begin_attempt(row.key, number, seed)
        frame.state = FrameState.RUNNING
        flight = _InFlight(frame, attempt_id, number, seed)
        try:
            conditioning = self._conditioning(row)
        except (StorageError, NotFoundError) as exc:
            self._attempt_error(flight, f"reading the conditioning image failed: {exc}")
            return
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
            conditioning_png=conditioning,
            options=self._request_options(row),
        )
        self.calls.submit(GENERATE, flight, actor, pool, actor.generate.remote(request))
        logger.debug(
            "run=%s frame=%s attempt=%d seed=%d dispatched", self.run_id, row.key, number, seed
        )

    def _begin_attempt(self, frame_key: str, number: int, seed: int) -> int:
        try:
            return self.catalog.start_attempt(self.run_id, frame_key, number, seed)
        except DuplicateRowError:
            # A retried insert whose first try was committed: take that row.
            for attempt in self.catalog.list_attempts(self.run_id, frame_key):
                if (
                    attempt.number == number
                    and attempt.state == AttemptState.RUNNING
                    and attempt.seed == seed
                ):
                    return attempt.id
            raise

    def _request_options(self, row: FrameRow) -> dict[str, Any]:
        if row.backend != Backend.BFL:
            return {}
        return self.context.storyboard.defaults.bfl.model_dump(exclude_none=True)

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
            assert parent.object_key is not None, (
                "a child frame is only dispatched after its parent"
            )
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

    def _on_generated(self, call: Call) -> None:
        flight = call.flight
        exceptions = self.ray.exceptions
        try:
            result: GenerationResult = self.ray.get(call.ref)
        except exceptions.RayActorError as exc:
            self._on_actor_error(call, exc)
            return
        except exceptions.RayTaskError as exc:
            self.calls.finish(call)
            cause = getattr(exc, "cause", None)
            if isinstance(cause, ModerationError):
                self._moderated(flight, str(cause))
            else:
                self._attempt_error(flight, _task_error_text(exc, cause))
            return
        except exceptions.RayError as exc:
            self.calls.finish(call)
            self._attempt_error(flight, f"generation failed: {describe_actor_error(exc)}")
            return
        self.calls.finish(call)

        # Object first, then row: a crash in between leaves an orphan object, never a dangling row.
        try:
            flight.object_key = self.store.put(result.png)
        except StorageError as exc:
            self._attempt_error(flight, f"object store write failed: {exc}")
            return
        flight.result = result
        row = flight.frame.row
        if self.scorer_name == ScorerName.NONE or not self.runner.scorable(row.backend, row.model):
            detail = (
                "identity gate off"
                if self.scorer_name == ScorerName.NONE
                else f"{row.backend} backend output has no faces to score"
            )
            self._on_score(
                flight, FrameScore(verdict=Verdict.UNSCORED, scorer="none", detail=detail)
            )
            return
        self._submit_score(flight)

    def _submit_score(self, flight: _InFlight) -> None:
        assert flight.result is not None
        row = flight.frame.row
        consistency = self.context.storyboard.consistency
        pool = self.runner.scorer_pool(consistency.scorer.value, consistency.model)
        if pool.exhausted:
            self._fail_attempt(flight, f"identity scoring failed: {pool.exhausted_error()}")
            return
        scorer = self.calls.least_loaded(pool, None)
        if scorer is None:
            self.unscored.append(flight)
            return
        characters = tuple(row.characters)
        if characters not in self.reference_refs:
            subset: dict[str, list[ReferenceImage]] = {
                c: self.context.references[c] for c in characters
            }
            self.reference_refs[characters] = self.ray.put(subset)
        # Characters without a threshold of their own get the scorer backend's default.
        thresholds = thresholds_for(self.context.storyboard, list(characters))
        ref = scorer.score.remote(flight.result.png, self.reference_refs[characters], thresholds)
        self.calls.submit(SCORE, flight, scorer, pool, ref)
        flight.style_ref = submit_style_score(
            scorer, self.scorer_name, flight.result.png, self.context.style
        )

    def _dispatch_scores(self) -> None:
        if not self.unscored:
            return
        consistency = self.context.storyboard.consistency
        pool = self.runner.scorer_pool(consistency.scorer.value, consistency.model)
        while self.unscored and (pool.healthy or pool.exhausted):
            self._submit_score(self.unscored.popleft())

    def _on_scored(self, call: Call) -> None:
        flight = call.flight
        try:
            score: FrameScore = self.ray.get(call.ref)
        except self.ray.exceptions.RayActorError as exc:
            self._on_actor_error(call, exc)
            return
        except self.ray.exceptions.RayError as exc:
            self.calls.finish(call)
            self._attempt_error(
                flight, f"identity scoring failed: {str(exc).strip().splitlines()[0]}"
            )
            return
        self.calls.finish(call)
        self._on_score(flight, score)

    def _on_score(self, flight: _InFlight, score: FrameScore) -> None:
        frame = flight.frame
        row = frame.row
        assert flight.result is not None and flight.object_key is not None
        score = record_style(score, flight.style_ref, self.scorer_name, self.context.style)
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
            "run=%s frame=%s attempt=%d verdict=%s score=%s style=%s",
            self.run_id,
            row.key,
            flight.number,
            score.verdict.value,
            f"{score.score:.3f}" if score.score is not None else "-",
            f"{score.style_similarity:.3f}" if score.style_similarity is not None else "-",
        )
        if self._decision(frame).action == Action.RETRY and not self.cancelled:
            self.ready.appendleft(row.key)
            return
        self._conclude(frame)

    def _conclude(self, frame: _Frame) -> None:
        """Accept the frame's last attempt, or send its best one to review, with no retry."""
        attempt_id, score = frame.scored[-1]
        if self._decision(frame).action == Action.ACCEPT:
            self._accept(frame, attempt_id, FrameState.ACCEPTED, score.verdict)
            return
        best_id, best = max(frame.scored, key=lambda item: rank(item[1]))
        self._accept(frame, best_id, FrameState.NEEDS_REVIEW, best.verdict)

    def _accept(self, frame: _Frame, attempt_id: int, state: FrameState, verdict: Verdict) -> None:
        row = frame.row
        hashes = {c: [image.sha256 for image in self.context.references[c]] for c in row.characters}
        if self.context.style is not None:
            hashes["style"] = [self.context.style.sha256]
        parent_asset = (
            self.frames[row.parent_key].asset_id if row.parent_key else self._source_asset(row)
        )
        frame.asset_id = self.catalog.accept_frame(
            self.run_id, row.key, attempt_id, state, hashes, parent_asset
        )
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
            self._finish_without_asset(
                self.frames[child],
                state if state == FrameState.CANCELLED else FrameState.FAILED,
                f"parent frame {frame.row.key} {state.value}",
            )

    def _notify(self, frame: _Frame, verdict: Verdict | None) -> None:
        if self.runner.listener:
            self.runner.listener.frame_finished(frame.row, frame.state, verdict)

    # Failures

    def _moderated(self, flight: _InFlight, text: str) -> None:
        self.catalog.finish_attempt(flight.attempt_id, AttemptState.FAILED, error=text)
        logger.warning(
            "run=%s frame=%s attempt=%d moderated: %s",
            self.run_id,
            flight.frame.row.key,
            flight.number,
            text,
        )
        self._finish_without_asset(flight.frame, FrameState.MODERATED, text)

    def _attempt_error(self, flight: _InFlight, text: str) -> None:
        """Fail the attempt, then retry the frame after a backoff or, past the limit, fail it."""
        frame = flight.frame
        frame.errors += 1
        self.catalog.finish_attempt(flight.attempt_id, AttemptState.FAILED, error=text)
        if self.cancelled:
            self._finish_without_asset(
                frame, FrameState.CANCELLED, f"run cancelled; its last attempt failed: {text}"
            )
            return
        if frame.errors > self.settings.frame_max_errors:
            logger.error(
                "run=%s frame=%s attempt=%d failed for good: %s",
                self.run_id,
                frame.row.key,
                flight.number,
                text,
            )
            self._finish_without_asset(frame, FrameState.FAILED, text)
            return
        backoff = self.settings.retry_backoff_s * 2 ** (frame.errors - 1)
        logger.warning(
            "run=%s frame=%s attempt=%d failed (%s); retrying in %.1f s",
            self.run_id,
            frame.row.key,
            flight.number,
            text,
            backoff,
        )
        frame.state = FrameState.PENDING
        self.delayed.append((time.monotonic() + backoff, frame.row.key))

    def _fail_attempt(self, flight: _InFlight, text: str) -> None:
        """Fail the attempt and its frame with no retry: a retry cannot help."""
        self.catalog.finish_attempt(flight.attempt_id, AttemptState.FAILED, error=text)
        logger.error(
            "run=%s frame=%s attempt=%d failed: %s",
            self.run_id,
            flight.frame.row.key,
            flight.number,
            text,
        )
        self._finish_without_asset(flight.frame, FrameState.FAILED, text)

    def _requeue(self, flight: _InFlight, text: str) -> None:
        """Abandon an attempt that never started, through no fault of its frame, and requeue it."""
        frame = flight.frame
        self.catalog.finish_attempt(flight.attempt_id, AttemptState.ABANDONED, error=text)
        if self.cancelled:
            self._finish_without_asset(frame, FrameState.CANCELLED, "run cancelled")
            return
        logger.info(
            "run=%s frame=%s attempt=%d requeued: %s",
            self.run_id,
            frame.row.key,
            flight.number,
            text,
        )
        frame.state = FrameState.PENDING
        self.ready.appendleft(frame.row.key)

    def _on_actor_error(self, call: Call, exc: Exception) -> None:
        """Handle the loss of an actor: its running call is charged, its queued calls are not."""
        detail = describe_actor_error(exc)
        call.pool.report_failure(call.actor, detail)
        for position, lost in enumerate(self.calls.lose_actor(call)):
            self._on_call_lost(lost, detail, charged=position == 0)

    def _on_call_lost(self, call: Call, detail: str, *, charged: bool) -> None:
        flight = call.flight
        if call.kind == GENERATE:
            if not charged:
                self._requeue(flight, f"generator actor died before this attempt started: {detail}")
            elif call.timed_out:
                self._attempt_error(
                    flight,
                    f"timed out after {self.settings.frame_timeout_s:.0f} s (frame_timeout_s)",
                )
            else:
                self._attempt_error(flight, f"generator actor died during this attempt: {detail}")
            return

        # The image is stored already, so only the scoring is repeated.
        if charged:
            flight.score_failures += 1
            if flight.score_failures > self.settings.frame_max_errors:
                reason = "timed out" if call.timed_out else "its scorer actor died"
                self._fail_attempt(
                    flight, f"identity scoring {reason} {flight.score_failures} times: {detail}"
                )
                return
        self.unscored.append(flight)

    def _check_timeouts(self) -> None:
        def limit_s(call: Call) -> float:
            if call.kind == GENERATE:
                return self.settings.frame_timeout_s
            return self.settings.score_timeout_s

        for call in self.calls.overdue(limit_s):
            logger.error(
                "run=%s frame=%s attempt=%d: %s call timed out after %.0f s; restarting its actor",
                self.run_id,
                call.flight.frame.row.key,
                call.flight.number,
                call.kind,
                limit_s(call),
            )
            # Killing with restart lets Ray bring the actor back with a fresh model.
            self.ray.kill(call.actor, no_restart=False)


def _task_error_text(exc: Exception, cause: BaseException | None) -> str:
    if cause is not None:
        return f"{type(cause).__name__}: {cause}"
    return str(exc).strip().splitlines()[-1]
