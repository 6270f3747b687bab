"""Schedules and their fires in the catalog database.

A schedule stores a storyboard (already in the catalog) with a cron
expression, a time zone and two policies. Each handled fire time gets one
row in `schedule_fires`. The unique constraint on (schedule_id, fire_time)
makes the insert of that row the claim on the fire. So a fire is recorded,
and its run created, at most once, however many schedulers tick at the same
time. The fire row and the run are committed in one transaction.

Every method runs in its own short transaction, as the catalog's do, and
returns detached pydantic rows.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict
from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError
from sqlalchemy.orm import Session, sessionmaker

from schemas.errors import NotFoundError, StorageError
from schemas.records import FrameTask, RunState
from storage.catalog import MIN_ID_PREFIX, Catalog
from storage.engine import READ_ONLY
from storage.errors import AmbiguousIdError
from storage.models import Run, Schedule, ScheduleFire, Storyboard, utcnow

logger = logging.getLogger(__name__)

# Run states in which a run counts as still going for the overlap policy.
# An interrupted run is not going: it waits for `onmodel resume`, and
# counting it would block its schedule until someone resumes it.
ACTIVE_RUN_STATES = (RunState.PENDING.value, RunState.RUNNING.value)


class ScheduleState(StrEnum):
    ACTIVE = "active"
    PAUSED = "paused"


class MissedPolicy(StrEnum):
    # Fire only a fire time that is at most the grace period late; drop the backlog.
    SKIP = "skip"
    # Fire once for the whole backlog, at its latest fire time.
    RUN_ONCE = "run_once"


class OverlapPolicy(StrEnum):
    # Do not start a run while an earlier run of the schedule is pending or running.
    SKIP = "skip"
    ALLOW = "allow"


class FireStatus(StrEnum):
    STARTED = "started"
    SKIPPED_OVERLAP = "skipped_overlap"
    SKIPPED_MISSED = "skipped_missed"
    # The stored storyboard could not be planned; `detail` contains the reason.
    FAILED = "failed"


class _Row(BaseModel):
    model_config = ConfigDict(frozen=True)


class ScheduleRow(_Row):
    id: str
    name: str
    cron: str
    timezone: str
    storyboard_id: str
    storyboard_name: str
    options: dict[str, Any]
    source: str | None
    state: ScheduleState
    missed_policy: MissedPolicy
    overlap_policy: OverlapPolicy
    evaluated_until: datetime
    created_at: datetime
    updated_at: datetime


class FireRow(_Row):
    id: int
    schedule_id: str
    fire_time: datetime
    status: FireStatus
    run_id: str | None
    detail: str | None
    created_at: datetime


def _schedule_row(schedule: Schedule, storyboard_name: str) -> ScheduleRow:
    return ScheduleRow(
        id=schedule.id,
        name=schedule.name,
        cron=schedule.cron,
        timezone=schedule.timezone,
        storyboard_id=schedule.storyboard_id,
        storyboard_name=storyboard_name,
        options=json.loads(schedule.options_json),
        source=schedule.source,
        state=ScheduleState(schedule.state),
        missed_policy=MissedPolicy(schedule.missed_policy),
        overlap_policy=OverlapPolicy(schedule.overlap_policy),
        evaluated_until=schedule.evaluated_until,
        created_at=schedule.created_at,
        updated_at=schedule.updated_at,
    )


def _fire_row(fire: ScheduleFire) -> FireRow:
    return FireRow(
        id=fire.id,
        schedule_id=fire.schedule_id,
        fire_time=fire.fire_time,
        status=FireStatus(fire.status),
        run_id=fire.run_id,
        detail=fire.detail,
        created_at=fire.created_at,
    )


class ScheduleStore:
    """Schedule rows over the engine of a `Catalog`; safe to share between threads."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self._write_sessions = sessionmaker(catalog.engine, expire_on_commit=False)
        self._read_sessions = sessionmaker(
            catalog.engine.execution_options(**{READ_ONLY: True}), expire_on_commit=False
        )

    @contextmanager
    def _session(self, *, write: bool) -> Iterator[Session]:
        factory = self._write_sessions if write else self._read_sessions
        try:
            with factory.begin() as session:
                yield session
        except (OperationalError, ProgrammingError) as exc:
            detail = str(exc.orig)
            if "no such table" in detail or "does not exist" in detail:
                detail += "; apply the migrations with `onmodel db upgrade`"
            raise StorageError(f"catalog {self.catalog.safe_url}: {detail}") from exc

    def _resolve(self, session: Session, schedule_id: str) -> Schedule:
        """Return the schedule whose id equals `schedule_id` or uniquely starts with it."""
        value = schedule_id.strip().lower()
        not_found = NotFoundError(
            f"schedule {value!r} not found; list schedules with `onmodel schedule list`"
        )
        schedule = session.get(Schedule, value) if value else None
        if schedule is not None:
            return schedule
        if len(value) < MIN_ID_PREFIX:
            raise not_found
        matches = session.scalars(
            select(Schedule).where(Schedule.id.startswith(value, autoescape=True)).limit(2)
        ).all()
        if not matches:
            raise not_found
        if len(matches) > 1:
            raise AmbiguousIdError(
                f"schedule id prefix {value!r} matches several schedules; give more characters"
            )
        return matches[0]

    def _row(self, session: Session, schedule: Schedule) -> ScheduleRow:
        storyboard_name = select(Storyboard.name).where(Storyboard.id == schedule.storyboard_id)
        name = session.scalar(storyboard_name)
        return _schedule_row(schedule, name or "")

    # Schedules

    def create(
        self,
        *,
        name: str,
        cron: str,
        timezone: str,
        storyboard_id: str,
        options: dict[str, Any],
        missed_policy: MissedPolicy,
        overlap_policy: OverlapPolicy,
        source: str | None = None,
        now: datetime | None = None,
    ) -> ScheduleRow:
        """Insert an active schedule; fire times after `now` (default: the current time) are due."""
        now = now or utcnow()
        schedule = Schedule(
            id=uuid.uuid4().hex,
            name=name,
            cron=cron,
            timezone=timezone,
            storyboard_id=storyboard_id,
            options_json=json.dumps(options, sort_keys=True),
            source=source,
            state=ScheduleState.ACTIVE.value,
            missed_policy=MissedPolicy(missed_policy).value,
            overlap_policy=OverlapPolicy(overlap_policy).value,
            evaluated_until=now,
            created_at=now,
            updated_at=now,
        )
        with self._session(write=True) as session:
            if session.get(Storyboard, storyboard_id) is None:
                raise NotFoundError(
                    f"storyboard {storyboard_id!r} not found; "
                    "store the spec with put_storyboard first"
                )
            session.add(schedule)
            session.flush()
            row = self._row(session, schedule)
        logger.info(
            "schedule %s created: %r cron %r in %s (missed=%s, overlap=%s)",
            row.id,
            name,
            cron,
            timezone,
            row.missed_policy.value,
            row.overlap_policy.value,
        )
        return row

    def get(self, schedule_id: str) -> ScheduleRow:
        """Raise NotFoundError naming the id when absent. Accepts a unique id prefix."""
        with self._session(write=False) as session:
            return self._row(session, self._resolve(session, schedule_id))

    def list_schedules(self, state: ScheduleState | None = None) -> list[ScheduleRow]:
        """Schedules oldest first, optionally only those in `state`."""
        with self._session(write=False) as session:
            query = (
                select(Schedule, Storyboard.name)
                .join(Storyboard, Schedule.storyboard_id == Storyboard.id)
                .order_by(Schedule.created_at, Schedule.id)
            )
            if state is not None:
                query = query.where(Schedule.state == ScheduleState(state).value)
            return [_schedule_row(schedule, name) for schedule, name in session.execute(query)]

    def update(
        self,
        schedule_id: str,
        *,
        name: str | None = None,
        cron: str | None = None,
        timezone: str | None = None,
        storyboard_id: str | None = None,
        options: dict[str, Any] | None = None,
        source: str | None = None,
        missed_policy: MissedPolicy | None = None,
        overlap_policy: OverlapPolicy | None = None,
    ) -> ScheduleRow:
        """Change the given fields; None keeps a field. Past fires and runs are not touched."""
        with self._session(write=True) as session:
            schedule = self._resolve(session, schedule_id)
            if storyboard_id is not None:
                if session.get(Storyboard, storyboard_id) is None:
                    raise NotFoundError(f"storyboard {storyboard_id!r} not found")
                schedule.storyboard_id = storyboard_id
            if options is not None:
                schedule.options_json = json.dumps(options, sort_keys=True)
            if name is not None:
                schedule.name = name
            if cron is not None:
                schedule.cron = cron
            if timezone is not None:
                schedule.timezone = timezone
            if source is not None:
                schedule.source = source
            if missed_policy is not None:
                schedule.missed_policy = MissedPolicy(missed_policy).value
            if overlap_policy is not None:
                schedule.overlap_policy = OverlapPolicy(overlap_policy).value
            schedule.updated_at = utcnow()
            session.flush()
            row = self._row(session, schedule)
        logger.info("schedule %s updated", row.id)
        return row

    def pause(self, schedule_id: str) -> ScheduleRow:
        """Stop firing the schedule until `resume`."""
        with self._session(write=True) as session:
            schedule = self._resolve(session, schedule_id)
            schedule.state = ScheduleState.PAUSED.value
            schedule.updated_at = utcnow()
            row = self._row(session, schedule)
        logger.info("schedule %s paused", row.id)
        return row

    def resume(self, schedule_id: str, now: datetime | None = None) -> ScheduleRow:
        """Fire the schedule again from `now` on; fire times while it was paused are not missed."""
        now = now or utcnow()
        with self._session(write=True) as session:
            schedule = self._resolve(session, schedule_id)
            if schedule.state != ScheduleState.ACTIVE.value:
                schedule.state = ScheduleState.ACTIVE.value
                schedule.evaluated_until = max(schedule.evaluated_until, now)
                schedule.updated_at = utcnow()
            row = self._row(session, schedule)
        logger.info("schedule %s resumed", row.id)
        return row

    def delete(self, schedule_id: str) -> str:
        """Delete the schedule and its fire rows; its runs stay. Return the full id."""
        with self._session(write=True) as session:
            full_id = self._resolve(session, schedule_id).id
            session.execute(delete(ScheduleFire).where(ScheduleFire.schedule_id == full_id))
            session.execute(delete(Schedule).where(Schedule.id == full_id))
        logger.info("schedule %s removed", full_id)
        return full_id

    def advance(self, schedule_id: str, until: datetime) -> None:
        """Mark fire times up to `until` handled; never moves the mark backwards."""
        with self._session(write=True) as session:
            session.execute(
                update(Schedule)
                .where(Schedule.id == schedule_id, Schedule.evaluated_until < until)
                .values(evaluated_until=until)
                .execution_options(synchronize_session=False)
            )

    # Fires

    def list_fires(self, schedule_id: str, limit: int = 20) -> list[FireRow]:
        """Fires of one schedule, latest fire time first."""
        if limit < 1:
            raise ValueError(f"limit must be an integer >= 1, got {limit}")
        with self._session(write=False) as session:
            full_id = self._resolve(session, schedule_id).id
            fires = session.scalars(
                select(ScheduleFire)
                .where(ScheduleFire.schedule_id == full_id)
                .order_by(ScheduleFire.fire_time.desc())
                .limit(limit)
            )
            return [_fire_row(fire) for fire in fires]

    def record_no_run(
        self, schedule_id: str, fire_time: datetime, status: FireStatus, detail: str
    ) -> FireRow | None:
        """Record a fire that starts no run; return None when it was already recorded."""
        status = FireStatus(status)
        if status is FireStatus.STARTED:
            raise ValueError("status: 'started' needs a run; use fire() for it")
        try:
            with self._session(write=True) as session:
                fire = ScheduleFire(
                    schedule_id=schedule_id, fire_time=fire_time, status=status.value, detail=detail
                )
                session.add(fire)
                session.flush()
                row = _fire_row(fire)
        except IntegrityError:
            if not self._is_lost_claim(schedule_id, fire_time):
                raise
            return None
        logger.info(
            "schedule %s fire %s: %s (%s)", schedule_id, fire_time.isoformat(), status.value, detail
        )
        return row

    def fire(
        self,
        schedule_id: str,
        fire_time: datetime,
        *,
        storyboard_id: str,
        frames: Iterable[FrameTask],
        options: dict[str, Any],
        overlap_policy: OverlapPolicy,
        detail: str | None = None,
    ) -> FireRow | None:
        """Claim a fire time and create its run, or skip it for overlap, in one transaction.

        Returns the recorded fire (started, or skipped_overlap), or None when
        the fire time was already claimed by another scheduler. `frames` is
        consumed only when a run is created.
        """
        count = 0
        try:
            with self._session(write=True) as session:
                # The insert comes first: on a lost race it fails before any
                # run row is written.
                fire = ScheduleFire(
                    schedule_id=schedule_id,
                    fire_time=fire_time,
                    status=FireStatus.STARTED.value,
                    detail=detail,
                )
                session.add(fire)
                session.flush()

                active = self._active_run_ids(session, schedule_id)
                if OverlapPolicy(overlap_policy) is OverlapPolicy.SKIP and active:
                    fire.status = FireStatus.SKIPPED_OVERLAP.value
                    state = _state_of(session, active[0])
                    fire.detail = f"run {active[0]} of this schedule is still {state}"
                else:
                    run_id, count = self.catalog.add_run(session, storyboard_id, frames, options)
                    fire.run_id = run_id
                    session.flush()
                row = _fire_row(fire)
        except IntegrityError:
            if not self._is_lost_claim(schedule_id, fire_time):
                raise
            return None
        logger.info(
            "schedule %s fire %s: %s%s%s",
            schedule_id,
            fire_time.isoformat(),
            row.status.value,
            f" run {row.run_id} with {count} frames" if row.run_id else "",
            f" ({row.detail})" if row.detail else "",
        )
        return row

    def _is_lost_claim(self, schedule_id: str, fire_time: datetime) -> bool:
        """Log and return True when an integrity error means another claim won, or no schedule.

        Returns False for an integrity error with another cause, which the
        caller re-raises.
        """
        with self._session(write=False) as session:
            exists = session.get(Schedule, schedule_id) is not None
            recorded = session.scalar(
                select(ScheduleFire.id).where(
                    ScheduleFire.schedule_id == schedule_id, ScheduleFire.fire_time == fire_time
                )
            )
        if not exists:
            logger.warning(
                "schedule %s fire %s: the schedule was removed while it fired; skipped",
                schedule_id,
                fire_time.isoformat(),
            )
            return True
        if recorded is not None:
            logger.info(
                "schedule %s fire %s: already recorded by another scheduler; skipped",
                schedule_id,
                fire_time.isoformat(),
            )
            return True
        return False

    @staticmethod
    def _active_run_ids(session: Session, schedule_id: str) -> list[str]:
        return list(
            session.scalars(
                select(Run.id)
                .join(ScheduleFire, ScheduleFire.run_id == Run.id)
                .where(ScheduleFire.schedule_id == schedule_id, Run.state.in_(ACTIVE_RUN_STATES))
                .order_by(ScheduleFire.fire_time)
            )
        )

    def active_run_ids(self, schedule_id: str) -> list[str]:
        """Runs of the schedule that are pending or running, oldest fire first."""
        with self._session(write=False) as session:
            return self._active_run_ids(session, self._resolve(session, schedule_id).id)

    # Runs started by fires

    def unfinished_runs(self) -> list[tuple[str, str, str | None]]:
        """(run id, state, driver) of fired runs that are pending, running or interrupted."""
        states = (*ACTIVE_RUN_STATES, RunState.INTERRUPTED.value)
        with self._session(write=False) as session:
            rows = session.execute(
                select(Run.id, Run.state, Run.driver)
                .join(ScheduleFire, ScheduleFire.run_id == Run.id)
                .where(Run.state.in_(states))
                .order_by(ScheduleFire.fire_time)
            )
            return [(run_id, state, driver) for run_id, state, driver in rows]


def _state_of(session: Session, run_id: str) -> str:
    return session.scalar(select(Run.state).where(Run.id == run_id)) or "unknown"
