"""The asset catalog: runs, frames, attempts and assets in one SQL database.

Every method runs in its own short transaction and returns detached pydantic
rows, so one `Catalog` can be shared by threads and several processes can
open the same database. Read methods accept a unique id prefix (at least
`MIN_ID_PREFIX` characters) wherever they take a run or asset id; write
methods need the full id.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from enum import StrEnum
from typing import Any, TypeVar, cast

from sqlalchemy import CursorResult, Engine, func, insert, select, union, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError
from sqlalchemy.orm import Session, sessionmaker

from schemas.catalog import AssetRow, AttemptRow, FrameRow, RunRow, StoryboardRow
from schemas.errors import NotFoundError, StorageError
from schemas.records import (
    AttemptState,
    FrameScore,
    FrameState,
    FrameTask,
    GenerationResult,
    RunState,
    RunSummary,
    Verdict,
)
from storage import migrate, queries
from storage.engine import READ_ONLY, SQLITE_BUSY_TIMEOUT_MS, create_catalog_engine
from storage.errors import AmbiguousIdError, DuplicateRowError
from storage.filters import AssetFilters
from storage.models import (
    Asset,
    AssetCharacter,
    Attempt,
    Frame,
    ReviewMark,
    Run,
    Storyboard,
    utcnow,
)
from storage.objects import check_key
from storage.queries import DEFAULT_PAGE_SIZE, DEFAULT_SORT, AssetPage
from storage.reviews import MarkKind, ReviewMarkRow, check_mark, review_mark_row
from storage.rows import (
    asset_row,
    attempt_row,
    dump_json,
    frame_row,
    load_scores,
    run_row,
    storyboard_row,
)

logger = logging.getLogger(__name__)

# Shortest id prefix that the read methods resolve. Four hex digits give
# 65,536 values: among 2,000 runs, a 4-digit prefix matches another run about
# 3% of the time, and AmbiguousIdError then asks for more characters.
MIN_ID_PREFIX = 4
# Seeds are stored as signed 64-bit integers (BIGINT).
MAX_SEED = 2**63 - 1
FINAL_RUN_STATES = frozenset({RunState.COMPLETED, RunState.FAILED, RunState.CANCELLED})
ASSET_STATES = frozenset({FrameState.ACCEPTED, FrameState.NEEDS_REVIEW})
# What to do when an id is not found, by kind of row.
NOT_FOUND_ADVICE = {
    "run": "list runs with `onmodel runs list`",
    "asset": "list assets with `onmodel assets list`",
    "storyboard": "check the id against the runs in `onmodel runs list`",
}
ABANDONED_ERROR = "abandoned: the run's driver stopped while this attempt was running"

E = TypeVar("E", bound=StrEnum)


def _new_id() -> str:
    return uuid.uuid4().hex


def _rowcount(result: Any) -> int:
    # UPDATE statements return a CursorResult, which has the row count.
    return int(cast(CursorResult[Any], result).rowcount)


def _hint(exc: Exception) -> str:
    """Return advice for the database errors that users run into, else ''."""
    detail = str(exc).lower()
    if "no such table" in detail or "undefinedtable" in detail or "does not exist" in detail:
        return "; apply the migrations with `onmodel db upgrade` (Catalog.upgrade())"
    if "database is locked" in detail:
        return (
            f"; another process held the write lock longer than "
            f"{SQLITE_BUSY_TIMEOUT_MS // 1000} s, so check for stuck onmodel processes"
        )
    return ""


def _parse_enum(enum_type: type[E], value: str, field: str) -> E:
    try:
        return enum_type(value)
    except ValueError:
        valid = ", ".join(member.value for member in enum_type)
        raise ValueError(f"{field}: {value!r} is invalid; valid values are: {valid}") from None


class Catalog:
    """Thread-safe catalog over one SQLAlchemy engine (SQLite file or PostgreSQL)."""

    def __init__(self, url: str) -> None:
        """Connect; SQLite gets WAL mode, a busy timeout and foreign keys on."""
        self.url = url
        self._engine = create_catalog_engine(url)
        self._write_sessions = sessionmaker(self._engine, expire_on_commit=False)
        self._read_sessions = sessionmaker(
            self._engine.execution_options(**{READ_ONLY: True}), expire_on_commit=False
        )

    def __repr__(self) -> str:
        return f"Catalog({self.safe_url!r})"

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def safe_url(self) -> str:
        """The URL with any password masked, for messages and logs."""
        return make_url(self.url).render_as_string(hide_password=True)

    @property
    def engine(self) -> Engine:
        return self._engine

    def upgrade(self) -> tuple[str | None, str | None]:
        """Apply Alembic migrations up to head (idempotent); return the revisions before and after.

        None means an empty database.
        """
        try:
            return migrate.upgrade(self._engine)
        except OperationalError as exc:
            raise StorageError(f"catalog {self.safe_url}: migration failed: {exc.orig}") from exc

    def close(self) -> None:
        """Close pooled connections; the catalog can still reconnect if used again."""
        self._engine.dispose()

    # Sessions

    @contextmanager
    def _session(self, *, write: bool) -> Iterator[Session]:
        factory = self._write_sessions if write else self._read_sessions
        try:
            with factory.begin() as session:
                yield session
        except (OperationalError, ProgrammingError) as exc:
            raise StorageError(f"catalog {self.safe_url}: {exc.orig}{_hint(exc)}") from exc

    def _resolve_id(self, session: Session, kind: str, column: Any, value: str) -> str:
        """Return the full id that equals `value` or uniquely starts with it."""
        value = value.strip().lower()
        not_found = NotFoundError(f"{kind} {value!r} not found; {NOT_FOUND_ADVICE[kind]}")
        if not value:
            raise not_found
        if session.scalar(select(column).where(column == value)) is not None:
            return value
        if len(value) < MIN_ID_PREFIX:
            raise not_found

        # Up to six matches are enough to show the user what the prefix hits.
        matches = session.scalars(
            select(column)
            .where(column.startswith(value, autoescape=True))
            .order_by(column)
            .limit(6)
        ).all()
        if not matches:
            raise not_found
        if len(matches) > 1:
            listed_ids = ", ".join(matches[:5]) + (", ..." if len(matches) > 5 else "")
            raise AmbiguousIdError(
                f"{kind} id prefix {value!r} matches several {kind}s ({listed_ids}); "
                "give more characters"
            )
        return str(matches[0])

    def _require_run(self, session: Session, run_id: str) -> Run:
        run = session.get(Run, run_id)
        if run is None:
            raise NotFoundError(f"run {run_id!r} not found; {NOT_FOUND_ADVICE['run']}")
        return run

    def _frame(self, session: Session, run_id: str, frame_key: str) -> Frame:
        frame = session.scalar(select(Frame).where(Frame.run_id == run_id, Frame.key == frame_key))
        if frame is None:
            self._require_run(session, run_id)
            raise NotFoundError(
                f"frame {frame_key!r} not found in run {run_id!r}; check the frame key against "
                "the run's frame list"
            )
        return frame

    # Storyboards

    def put_storyboard(self, name: str, spec: dict[str, Any], spec_sha256: str) -> str:
        """Store a spec once per content hash; return its id (existing or new)."""
        spec_json = dump_json(spec, "spec")
        existing = self._storyboard_id_by_hash(spec_sha256)
        if existing is not None:
            return existing

        storyboard_id = _new_id()
        try:
            with self._session(write=True) as session:
                session.add(
                    Storyboard(
                        id=storyboard_id, name=name, spec_sha256=spec_sha256, spec_json=spec_json
                    )
                )
        except IntegrityError:
            # Another process stored the same spec between the lookup and the insert.
            existing = self._storyboard_id_by_hash(spec_sha256)
            if existing is None:
                raise
            return existing
        logger.info("storyboard %s stored: %r (spec sha256 %s)", storyboard_id, name, spec_sha256)
        return storyboard_id

    def _storyboard_id_by_hash(self, spec_sha256: str) -> str | None:
        with self._session(write=False) as session:
            return session.scalar(
                select(Storyboard.id).where(Storyboard.spec_sha256 == spec_sha256)
            )

    def get_storyboard(self, storyboard_id: str) -> StoryboardRow:
        with self._session(write=False) as session:
            full_id = self._resolve_id(session, "storyboard", Storyboard.id, storyboard_id)
            storyboard = session.get_one(Storyboard, full_id)
            return storyboard_row(storyboard)

    # Runs

    def create_run(
        self, storyboard_id: str, frames: Iterable[FrameTask], options: dict[str, Any]
    ) -> str:
        """Insert a run in state pending and all its frames, in one transaction."""
        tasks = list(frames)
        self._check_tasks(storyboard_id, tasks)
        options_json = dump_json(options, "options")
        run_id = _new_id()

        with self._session(write=True) as session:
            if session.get(Storyboard, storyboard_id) is None:
                raise NotFoundError(
                    f"storyboard {storyboard_id!r} not found; "
                    "store the spec with put_storyboard first"
                )
            session.add(
                Run(
                    id=run_id,
                    storyboard_id=storyboard_id,
                    state=RunState.PENDING.value,
                    options_json=options_json,
                    frames_total=len(tasks),
                )
            )
            session.flush()
            if tasks:
                session.execute(
                    insert(Frame),
                    [
                        self._frame_values(run_id, position, task)
                        for position, task in enumerate(tasks)
                    ],
                )
        logger.info(
            "run %s created for storyboard %s with %d frames", run_id, storyboard_id, len(tasks)
        )
        return run_id

    @staticmethod
    def _check_tasks(storyboard_id: str, tasks: list[FrameTask]) -> None:
        seen: set[str] = set()
        for index, task in enumerate(tasks):
            Catalog._check_streamed_task(storyboard_id, index, task, seen)

    @staticmethod
    def _frame_values(run_id: str, position: int, task: FrameTask) -> dict[str, Any]:
        return {
            "run_id": run_id,
            "key": task.key,
            "position": position,
            "scene_id": task.scene_id,
            "edit_step": task.edit_step,
            "variant": task.variant,
            "parent_key": task.parent_key,
            "prompt": task.prompt,
            "characters_json": dump_json(task.characters, f"frames[{position}].characters"),
            "backend": task.backend.value,
            "model": task.model,
            "width": task.width,
            "height": task.height,
            "steps": task.steps,
            "guidance": task.guidance,
            "seed": task.seed,
            "state": FrameState.PENDING.value,
            "error": None,
        }

    def get_run(self, run_id: str) -> RunRow:
        """Raise NotFoundError naming the id when absent. Accepts a unique id prefix."""
        with self._session(write=False) as session:
            full_id = self._resolve_id(session, "run", Run.id, run_id)
            run, name = session.execute(
                select(Run, Storyboard.name).join(Storyboard).where(Run.id == full_id)
            ).one()
            return run_row(run, name)

    def list_runs(self, limit: int = 50) -> list[RunRow]:
        """Newest first."""
        if limit < 1:
            raise ValueError(f"limit must be an integer >= 1, got {limit}")
        with self._session(write=False) as session:
            result = session.execute(
                select(Run, Storyboard.name)
                .join(Storyboard)
                .order_by(Run.created_at.desc(), Run.id)
                .limit(limit)
            )
            return [run_row(run, name) for run, name in result]

    def set_run_state(
        self, run_id: str, state: RunState, error: str | None = None, driver: str | None = None
    ) -> None:
        """Set started_at on the first RUNNING and finished_at on a final state.

        The final states are completed, failed and cancelled; any other state,
        interrupted included, clears finished_at. `error` replaces the stored
        error, so a run that is resumed after a failure loses the old message.
        """
        state = _parse_enum(RunState, state, "state")
        with self._session(write=True) as session:
            run = self._require_run(session, run_id)
            now = utcnow()
            run.state = state.value
            run.error = error
            if state is RunState.RUNNING and run.started_at is None:
                run.started_at = now
            run.finished_at = now if state in FINAL_RUN_STATES else None
            if driver is not None:
                run.driver = driver
        logger.info("run %s: state %s%s", run_id, state.value, f" ({error})" if error else "")

    def run_summary(self, run_id: str) -> RunSummary:
        """Count the run's frames by state.

        `pending` counts pending, running and cancelled frames (not produced
        yet); `failed` counts failed and moderated frames; `unscored` counts
        frames whose asset has the verdict unscored.
        """
        with self._session(write=False) as session:
            full_id = self._resolve_id(session, "run", Run.id, run_id)
            run, name = session.execute(
                select(Run, Storyboard.name).join(Storyboard).where(Run.id == full_id)
            ).one()
            counts: dict[str, int] = {
                state: count
                for state, count in session.execute(
                    select(Frame.state, func.count())
                    .where(Frame.run_id == full_id)
                    .group_by(Frame.state)
                )
            }
            unscored = session.scalar(
                select(func.count())
                .select_from(Asset)
                .where(Asset.run_id == full_id, Asset.verdict == Verdict.UNSCORED.value)
            )

        def count(*states: FrameState) -> int:
            return sum(counts.get(state.value, 0) for state in states)

        return RunSummary(
            run_id=run.id,
            storyboard=name,
            state=RunState(run.state),
            frames=sum(counts.values()),
            accepted=count(FrameState.ACCEPTED),
            needs_review=count(FrameState.NEEDS_REVIEW),
            failed=count(FrameState.FAILED, FrameState.MODERATED),
            pending=count(FrameState.PENDING, FrameState.RUNNING, FrameState.CANCELLED),
            unscored=unscored or 0,
            created_at=run.created_at,
            finished_at=run.finished_at,
        )

    # Frames and attempts

    def list_frames(
        self, run_id: str, states: Iterable[FrameState] | None = None
    ) -> list[FrameRow]:
        """Frames in plan order (insertion order)."""
        attempts = (
            select(func.count(Attempt.id))
            .where(Attempt.frame_id == Frame.id)
            .correlate(Frame)
            .scalar_subquery()
        )
        with self._session(write=False) as session:
            full_id = self._resolve_id(session, "run", Run.id, run_id)
            query = (
                select(Frame, attempts, Asset.id)
                .outerjoin(Asset, Asset.frame_id == Frame.id)
                .where(Frame.run_id == full_id)
                .order_by(Frame.position)
            )
            if states is not None:
                values = [_parse_enum(FrameState, state, "states").value for state in states]
                query = query.where(Frame.state.in_(values))
            return [
                frame_row(frame, count, asset_id)
                for frame, count, asset_id in session.execute(query)
            ]

    def set_frame_state(
        self, run_id: str, frame_key: str, state: FrameState, error: str | None = None
    ) -> None:
        """Set the frame's state; `error` replaces the stored error."""
        state = _parse_enum(FrameState, state, "state")
        with self._session(write=True) as session:
            frame = self._frame(session, run_id, frame_key)
            frame.state = state.value
            frame.error = error
        logger.debug("run %s frame %s: state %s", run_id, frame_key, state.value)

    def start_attempt(self, run_id: str, frame_key: str, number: int, seed: int) -> int:
        """Insert attempt `number` (unique per frame) as running; the frame becomes running.

        Raises DuplicateRowError when the frame already has an attempt with
        this number.
        """
        if number < 0:
            raise ValueError(f"number must be an integer >= 0, got {number}")
        if not 0 <= seed <= MAX_SEED:
            raise ValueError(f"seed {seed} is outside 0..{MAX_SEED}; derive seeds modulo 2**63")
        try:
            with self._session(write=True) as session:
                frame = self._frame(session, run_id, frame_key)
                attempt = Attempt(
                    frame_id=frame.id, number=number, seed=seed, state=AttemptState.RUNNING.value
                )
                session.add(attempt)
                frame.state = FrameState.RUNNING.value
                session.flush()
                attempt_id = attempt.id
        except IntegrityError as exc:
            raise DuplicateRowError(
                f"attempt {number} of frame {frame_key!r} in run {run_id!r} already exists; "
                "start the next attempt number"
            ) from exc
        logger.debug(
            "run %s frame %s: attempt %d started (seed %d)", run_id, frame_key, number, seed
        )
        return attempt_id

    def finish_attempt(
        self,
        attempt_id: int,
        state: AttemptState,
        *,
        result: GenerationResult | None = None,
        object_key: str | None = None,
        sha256: str | None = None,
        score: FrameScore | None = None,
        error: str | None = None,
    ) -> None:
        """Record an attempt's outcome. Arguments left as None keep the stored values.

        A second call can therefore add the score to an attempt whose image
        was recorded first.
        """
        state = _parse_enum(AttemptState, state, "state")
        if state is AttemptState.RUNNING:
            raise ValueError("state: 'running' is not an outcome; use done, failed or abandoned")
        if object_key is not None:
            check_key(object_key)

        with self._session(write=True) as session:
            row = session.execute(
                select(Attempt, Frame.key, Frame.run_id).join(Frame).where(Attempt.id == attempt_id)
            ).one_or_none()
            if row is None:
                raise NotFoundError(
                    f"attempt id {attempt_id} not found; start_attempt returns the id"
                )
            attempt, frame_key, run_id = row
            if result is not None and (result.frame_key, result.attempt) != (
                frame_key,
                attempt.number,
            ):
                raise ValueError(
                    f"result is for frame {result.frame_key!r} attempt {result.attempt}, "
                    f"but attempt id {attempt_id} is frame {frame_key!r} attempt {attempt.number}"
                )

            attempt.state = state.value
            attempt.finished_at = utcnow()
            if result is not None:
                attempt.seconds_generate = result.seconds
                attempt.node = result.node
                attempt.device = result.device
            if object_key is not None:
                attempt.object_key = object_key
            if sha256 is not None:
                attempt.sha256 = sha256
            if score is not None:
                attempt.verdict = score.verdict.value
                attempt.score = score.score
                attempt.scores_json = json.dumps(
                    [c.model_dump(mode="json") for c in score.characters]
                )
                attempt.seconds_score = score.seconds
                attempt.style_similarity = score.style_similarity
            if error is not None:
                attempt.error = error
        logger.debug(
            "run %s frame %s: attempt %d %s%s",
            run_id,
            frame_key,
            attempt.number,
            state.value,
            f" ({error})" if error else "",
        )

    def list_attempts(self, run_id: str, frame_key: str | None = None) -> list[AttemptRow]:
        """Attempts of the run, or of one frame, in plan order and then by number."""
        with self._session(write=False) as session:
            full_id = self._resolve_id(session, "run", Run.id, run_id)
            query = (
                select(Attempt, Frame.key)
                .join(Frame)
                .where(Frame.run_id == full_id)
                .order_by(Frame.position, Attempt.number)
            )
            if frame_key is not None:
                query = query.where(Frame.key == frame_key)
            return [attempt_row(attempt, full_id, key) for attempt, key in session.execute(query)]

    def abandon_in_flight(self, run_id: str) -> int:
        """Mark running attempts abandoned and running frames pending; return the count.

        The count is the number of attempts marked abandoned. A driver calls
        this when it resumes a run whose previous driver died.
        """
        with self._session(write=True) as session:
            self._require_run(session, run_id)
            run_frames = select(Frame.id).where(Frame.run_id == run_id)
            abandoned = _rowcount(
                session.execute(
                    update(Attempt)
                    .where(
                        Attempt.state == AttemptState.RUNNING.value,
                        Attempt.frame_id.in_(run_frames),
                    )
                    .values(
                        state=AttemptState.ABANDONED.value,
                        finished_at=utcnow(),
                        error=func.coalesce(Attempt.error, ABANDONED_ERROR),
                    )
                    .execution_options(synchronize_session=False)
                )
            )
            requeued = _rowcount(
                session.execute(
                    update(Frame)
                    .where(Frame.run_id == run_id, Frame.state == FrameState.RUNNING.value)
                    .values(state=FrameState.PENDING.value)
                    .execution_options(synchronize_session=False)
                )
            )
        if abandoned or requeued:
            logger.info(
                "run %s: %d in-flight attempts abandoned, %d frames back to pending",
                run_id,
                abandoned,
                requeued,
            )
        return abandoned

    def accept_frame(
        self,
        run_id: str,
        frame_key: str,
        attempt_id: int,
        state: FrameState,
        reference_hashes: dict[str, list[str]],
        parent_asset_id: str | None = None,
    ) -> str:
        """Create the frame's asset from an attempt and set the frame's final state.

        One transaction. Idempotent: a frame has at most one asset, and a second
        call returns the existing asset id.
        """
        state = _parse_enum(FrameState, state, "state")
        if state not in ASSET_STATES:
            raise ValueError(
                f"state: {state.value!r} is invalid for an asset; use accepted or needs_review"
            )
        reference_hashes_json = dump_json(reference_hashes, "reference_hashes")

        try:
            with self._session(write=True) as session:
                frame = self._frame(session, run_id, frame_key)
                existing = session.scalar(select(Asset.id).where(Asset.frame_id == frame.id))
                if existing is not None:
                    return existing
                asset = self._new_asset(session, frame, attempt_id, state, parent_asset_id)
                asset.reference_hashes_json = reference_hashes_json
                session.add(asset)
                frame.state = state.value
                frame.error = None
                session.flush()
                asset_id = asset.id
        except IntegrityError:
            # Another process accepted this frame between our check and insert.
            existing = self._asset_id_of_frame(run_id, frame_key)
            if existing is None:
                raise
            return existing
        logger.info(
            "run %s frame %s: asset %s stored (%s)", run_id, frame_key, asset_id, state.value
        )
        return asset_id

    def _asset_id_of_frame(self, run_id: str, frame_key: str) -> str | None:
        with self._session(write=False) as session:
            return session.scalar(
                select(Asset.id)
                .join(Frame, Asset.frame_id == Frame.id)
                .where(Frame.run_id == run_id, Frame.key == frame_key)
            )

    def _new_asset(
        self,
        session: Session,
        frame: Frame,
        attempt_id: int,
        state: FrameState,
        parent_asset_id: str | None,
    ) -> Asset:
        attempt = session.get(Attempt, attempt_id)
        if attempt is None or attempt.frame_id != frame.id:
            raise NotFoundError(
                f"attempt id {attempt_id} not found for frame {frame.key!r} "
                f"in run {frame.run_id!r}; pass an id that start_attempt returned for this frame"
            )
        if attempt.object_key is None or attempt.sha256 is None:
            raise ValueError(
                f"attempt {attempt.number} of frame {frame.key!r} has no stored image; "
                "record object_key and sha256 with finish_attempt first"
            )
        if parent_asset_id is not None and session.get(Asset, parent_asset_id) is None:
            raise NotFoundError(
                f"parent asset {parent_asset_id!r} not found; accept the parent frame first"
            )
        run = session.get_one(Run, frame.run_id)

        created_at = utcnow()
        asset = Asset(
            id=_new_id(),
            run_id=frame.run_id,
            storyboard_id=run.storyboard_id,
            frame_id=frame.id,
            attempt_id=attempt.id,
            scene_id=frame.scene_id,
            edit_step=frame.edit_step,
            variant=frame.variant,
            state=state.value,
            verdict=attempt.verdict or Verdict.UNSCORED.value,
            score=attempt.score,
            characters_json=frame.characters_json,
            prompt=frame.prompt,
            backend=frame.backend,
            model=frame.model,
            seed=attempt.seed,
            width=frame.width,
            height=frame.height,
            steps=frame.steps,
            guidance=frame.guidance,
            object_key=attempt.object_key,
            sha256=attempt.sha256,
            seconds_generate=attempt.seconds_generate,
            seconds_score=attempt.seconds_score,
            style_similarity=attempt.style_similarity,
            node=attempt.node,
            device=attempt.device,
            parent_asset_id=parent_asset_id,
            created_at=created_at,
        )

        # Every character of the frame gets a row, scored or not, so that a
        # filter by character finds unscored assets too.
        scores = {score.character_id: score for score in load_scores(attempt.scores_json)}
        character_ids = list(dict.fromkeys([*json.loads(frame.characters_json), *scores]))
        asset.characters = [
            AssetCharacter(
                character_id=character_id,
                verdict=(
                    scores[character_id].verdict.value
                    if character_id in scores
                    else Verdict.UNSCORED.value
                ),
                score=scores[character_id].score if character_id in scores else None,
                created_at=created_at,
            )
            for character_id in character_ids
        ]
        return asset

    # Assets

    def list_assets(
        self,
        *,
        run_id: str | None = None,
        verdict: str | None = None,
        limit: int | None = None,
        character: str | None = None,
        scene_id: str | None = None,
    ) -> list[AssetRow]:
        """Assets newest first, filtered by every argument that is not None."""
        if limit is not None and limit < 1:
            raise ValueError(f"limit must be an integer >= 1, got {limit}")
        with self._session(write=False) as session:
            query = self._asset_query().order_by(Asset.created_at.desc(), Asset.id)
            if run_id is not None:
                query = query.where(
                    Asset.run_id == self._resolve_id(session, "run", Run.id, run_id)
                )
            if verdict is not None:
                query = query.where(Asset.verdict == _parse_enum(Verdict, verdict, "verdict").value)
            if character is not None:
                query = query.where(
                    Asset.id.in_(
                        select(AssetCharacter.asset_id).where(
                            AssetCharacter.character_id == character
                        )
                    )
                )
            if scene_id is not None:
                query = query.where(Asset.scene_id == scene_id)
            if limit is not None:
                query = query.limit(limit)
            return [self._asset_row(row) for row in session.execute(query)]

    @staticmethod
    def _asset_query() -> Any:
        return (
            select(Asset, Storyboard.name, Frame.key, Attempt.number, Attempt.scores_json)
            .join(Storyboard, Asset.storyboard_id == Storyboard.id)
            .join(Frame, Asset.frame_id == Frame.id)
            .join(Attempt, Asset.attempt_id == Attempt.id)
        )

    @staticmethod
    def _asset_row(row: Any) -> AssetRow:
        asset, storyboard_name, frame_key, attempt_number, scores_json = row
        return asset_row(
            asset,
            storyboard_name=storyboard_name,
            frame_key=frame_key,
            attempt_number=attempt_number,
            scores_json=scores_json,
        )

    def get_asset(self, asset_id: str) -> AssetRow:
        """Raise NotFoundError naming the id when absent. Accepts a unique id prefix."""
        with self._session(write=False) as session:
            full_id = self._resolve_id(session, "asset", Asset.id, asset_id)
            return self._asset_row(
                session.execute(self._asset_query().where(Asset.id == full_id)).one()
            )

    def referenced_object_keys(self) -> set[str]:
        """Every object key a row points to (assets and attempts), for garbage collection."""
        with self._session(write=False) as session:
            keys = session.scalars(
                union(
                    select(Asset.object_key),
                    select(Attempt.object_key).where(Attempt.object_key.is_not(None)),
                )
            )
            return {key for key in keys if key is not None}

    # Runs planned in batches, for plans too large to hold in memory

    # Frames per INSERT statement when a plan is streamed in. A batch of
    # planned frames takes about 1 MB of memory.
    FRAME_INSERT_BATCH = 1000

    def create_run_batched(
        self, storyboard_id: str, frames: Iterable[FrameTask], options: dict[str, Any]
    ) -> str:
        """Insert a pending run and its frames in one transaction, consuming `frames` lazily.

        Behaves as `create_run`, but keeps at most `FRAME_INSERT_BATCH`
        planned frames and the set of frame keys in memory.
        """
        with self._session(write=True) as session:
            run_id, count = self.add_run(session, storyboard_id, frames, options)
        logger.info("run %s created for storyboard %s with %d frames", run_id, storyboard_id, count)
        return run_id

    def add_run(
        self,
        session: Session,
        storyboard_id: str,
        frames: Iterable[FrameTask],
        options: dict[str, Any],
    ) -> tuple[str, int]:
        """Add a pending run and its frames to an open write session; return (run id, frames).

        The caller commits. Storage code that must commit other rows in the
        same transaction as the run, such as a schedule's fire, uses this.
        """
        options_json = dump_json(options, "options")
        if session.get(Storyboard, storyboard_id) is None:
            raise NotFoundError(
                f"storyboard {storyboard_id!r} not found; store the spec with put_storyboard first"
            )
        run_id = _new_id()
        run = Run(
            id=run_id,
            storyboard_id=storyboard_id,
            state=RunState.PENDING.value,
            options_json=options_json,
            frames_total=0,
        )
        session.add(run)
        session.flush()

        seen: set[str] = set()
        batch: list[dict[str, Any]] = []
        for position, task in enumerate(frames):
            self._check_streamed_task(storyboard_id, position, task, seen)
            batch.append(self._frame_values(run_id, position, task))
            if len(batch) >= self.FRAME_INSERT_BATCH:
                session.execute(insert(Frame), batch)
                batch = []
        if batch:
            session.execute(insert(Frame), batch)
        run.frames_total = len(seen)
        return run_id, len(seen)

    @staticmethod
    def _check_streamed_task(
        storyboard_id: str, index: int, task: FrameTask, seen: set[str]
    ) -> None:
        if task.key in seen:
            raise ValueError(
                f"frames[{index}].key: duplicate frame key {task.key!r}; every frame of a run "
                "needs its own key"
            )
        seen.add(task.key)
        if task.storyboard_id != storyboard_id:
            raise ValueError(
                f"frames[{index}].storyboard_id: {task.storyboard_id!r} differs from the run's "
                f"storyboard {storyboard_id!r}; plan the frames from the same storyboard"
            )
        if not 0 <= task.seed <= MAX_SEED:
            raise ValueError(f"frames[{index}].seed: {task.seed} is outside 0..{MAX_SEED}")

    # Asset queries and review marks

    def query_assets(
        self,
        filters: AssetFilters | None = None,
        *,
        sort: str = DEFAULT_SORT,
        limit: int = DEFAULT_PAGE_SIZE,
        cursor: str | None = None,
    ) -> AssetPage:
        """Return one page of the assets that match `filters`, in `sort` order.

        Raises InvalidQueryError for an unknown sort key, a page size outside
        1..MAX_PAGE_SIZE, or a cursor that is not the next_cursor of the same
        filters and sort.
        """
        filters = filters or AssetFilters()
        order = queries.parse_sort(sort)
        queries.check_page_size(limit)
        after = queries.decode_page_cursor(cursor, order, filters) if cursor else None
        with self._session(write=False) as session:
            # One row more than the page tells whether another page follows.
            positions = queries.fetch_page_keys(session, filters, order, after, limit + 1)
            page = positions[:limit]
            rows: dict[str, AssetRow] = {}
            if page:
                query = self._asset_query().where(Asset.id.in_([p.asset_id for p in page]))
                rows = {row[0].id: self._asset_row(row) for row in session.execute(query)}
        next_cursor = None
        if len(positions) > limit:
            next_cursor = queries.encode_page_cursor(order, filters, page[-1])
        return AssetPage(
            items=[rows[p.asset_id] for p in page],
            next_cursor=next_cursor,
            sort=order.text,
            limit=limit,
        )

    def add_review_mark(self, asset_id: str, kind: str, value: str, author: str) -> ReviewMarkRow:
        """Add a tag, rating or comment to an asset (full id or unique prefix).

        A tag the asset already has is not added again: the existing mark is
        returned. Raises InvalidMarkError for an invalid kind, value or author.
        """
        mark_kind, value, author = check_mark(kind, value, author)
        with self._session(write=True) as session:
            full_id = self._resolve_id(session, "asset", Asset.id, asset_id)
            if mark_kind is MarkKind.TAG:
                existing = session.scalar(
                    select(ReviewMark)
                    .where(
                        ReviewMark.asset_id == full_id,
                        ReviewMark.kind == mark_kind.value,
                        ReviewMark.value == value,
                    )
                    .order_by(ReviewMark.id)
                    .limit(1)
                )
                if existing is not None:
                    return review_mark_row(existing)
            mark = ReviewMark(asset_id=full_id, kind=mark_kind.value, value=value, author=author)
            session.add(mark)
            session.flush()
            row = review_mark_row(mark)
        logger.info("asset %s: %s mark %d added by %r", full_id, mark_kind.value, row.id, author)
        return row

    def list_review_marks(self, asset_id: str) -> list[ReviewMarkRow]:
        """Return the marks of an asset (full id or unique prefix), oldest first."""
        with self._session(write=False) as session:
            full_id = self._resolve_id(session, "asset", Asset.id, asset_id)
            marks = session.scalars(
                select(ReviewMark).where(ReviewMark.asset_id == full_id).order_by(ReviewMark.id)
            )
            return [review_mark_row(mark) for mark in marks]

    def run_ratings(self, run_id: str) -> dict[str, str]:
        """Return asset id -> newest rating (approve or reject) of the run's rated assets."""
        with self._session(write=False) as session:
            full_id = self._resolve_id(session, "run", Run.id, run_id)
            # Ordered by mark id, so the newest rating of an asset is written last.
            marks = session.execute(
                select(ReviewMark.asset_id, ReviewMark.value)
                .join(Asset, Asset.id == ReviewMark.asset_id)
                .where(Asset.run_id == full_id, ReviewMark.kind == MarkKind.RATING.value)
                .order_by(ReviewMark.id)
            )
            return {asset_id: value for asset_id, value in marks}

    # Recovery and garbage collection

    def list_runs_in_states(self, states: Iterable[RunState]) -> list[RunRow]:
        """Runs in any of `states`, oldest first, with no limit."""
        values = [_parse_enum(RunState, state, "states").value for state in states]
        with self._session(write=False) as session:
            result = session.execute(
                select(Run, Storyboard.name)
                .join(Storyboard)
                .where(Run.state.in_(values))
                .order_by(Run.created_at, Run.id)
            )
            return [run_row(run, name) for run, name in result]

    def set_run_state_if(
        self,
        run_id: str,
        state: RunState,
        *,
        expected_state: RunState,
        expected_driver: str | None,
        driver: str | None = None,
        error: str | None = None,
    ) -> bool:
        """Set the run's state as `set_run_state` does, if its state and driver are as expected.

        Of several processes that race to claim, cancel or fail one run,
        exactly one gets True, because the row is locked while it is
        compared and changed. `expected_driver=None` matches a run with no driver recorded;
        `driver=None` keeps the stored driver.
        """
        state = _parse_enum(RunState, state, "state")
        expected = _parse_enum(RunState, expected_state, "expected_state")
        with self._session(write=True) as session:
            run = session.scalar(select(Run).where(Run.id == run_id).with_for_update())
            if run is None:
                raise NotFoundError(f"run {run_id!r} not found; {NOT_FOUND_ADVICE['run']}")
            if run.state != expected.value or run.driver != expected_driver:
                return False
            now = utcnow()
            run.state = state.value
            run.error = error
            if state is RunState.RUNNING and run.started_at is None:
                run.started_at = now
            run.finished_at = now if state in FINAL_RUN_STATES else None
            if driver is not None:
                run.driver = driver
        logger.info(
            "run %s: state %s -> %s%s",
            run_id,
            expected.value,
            state.value,
            f" (driver {driver})" if driver else "",
        )
        return True

    def cancel_unfinished_frames(self, run_id: str, error: str) -> int:
        """Mark the run's pending and running frames cancelled with `error`; return the count.

        Call `abandon_in_flight` first, so that no attempt stays running.
        """
        unfinished = [FrameState.PENDING.value, FrameState.RUNNING.value]
        with self._session(write=True) as session:
            self._require_run(session, run_id)
            count = _rowcount(
                session.execute(
                    update(Frame)
                    .where(Frame.run_id == run_id, Frame.state.in_(unfinished))
                    .values(state=FrameState.CANCELLED.value, error=error)
                    .execution_options(synchronize_session=False)
                )
            )
        logger.info("run %s: %d unfinished frames cancelled", run_id, count)
        return count

    def option_object_keys(self) -> set[str]:
        """Object keys that stored run options refer to, for garbage collection.

        `submit` stores reference and style images in the object store and
        records their keys only in the run's options. This reads every
        `options_json` column of the catalog (runs, and tables that keep run
        options for later, such as schedules) and collects each string under
        a "key" field that has the form of an object key.
        """
        from sqlalchemy import inspect

        with self._session(write=False) as session:
            # A table of a newer schema that this database lacks refers to nothing.
            existing = set(inspect(session.connection()).get_table_names())
        tables = [
            table
            for table in Run.metadata.sorted_tables
            if "options_json" in table.c and table.name in existing
        ]
        keys: set[str] = set()
        with self._session(write=False) as session:
            for table in tables:
                for (options_json,) in session.execute(select(table.c.options_json)):
                    if options_json:
                        self._collect_object_keys(json.loads(options_json), keys)
        return keys

    @staticmethod
    def _collect_object_keys(document: Any, keys: set[str]) -> None:
        stack = [document]
        while stack:
            node = stack.pop()
            if isinstance(node, dict):
                for name, value in node.items():
                    if name == "key" and isinstance(value, str):
                        with suppress(ValueError):
                            keys.add(check_key(value))
                    else:
                        stack.append(value)
            elif isinstance(node, list):
                stack.extend(node)
