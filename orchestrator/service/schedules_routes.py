"""`/v1/schedules`: create, list, inspect, pause, resume, change and delete schedules.

A schedule is created from a spec sent as `POST /v1/storyboards` takes it
(JSON, YAML, or a multipart form with reference images), with the cron
expression, time zone and policies as query parameters. Firing is the
scheduler's job (`onmodel scheduler`); these routes only manage schedules.
"""

from __future__ import annotations

import logging
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from orchestrator.scheduler import (
    ScheduleError,
    create_schedule,
    next_fire_time,
    parse_cron,
    parse_missed_policy,
    parse_overlap_policy,
    parse_timezone,
    update_schedule,
)
from orchestrator.service.routes_runs import SUBMIT_BODY
from orchestrator.service.state import ServiceState, service_state
from orchestrator.service.submission import load_submission, receive_submission
from storage.schedules import (
    FireRow,
    MissedPolicy,
    OverlapPolicy,
    ScheduleRow,
    ScheduleState,
    ScheduleStore,
)

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/v1", tags=["schedules"])
State = Annotated[ServiceState, Depends(service_state)]
MAX_FIRES = 500


class ScheduleOut(BaseModel):
    """A schedule as the API returns it, with its next fire time (None while paused)."""

    id: str
    name: str
    cron: str
    timezone: str
    storyboard_id: str
    storyboard_name: str
    state: ScheduleState
    missed_policy: MissedPolicy
    overlap_policy: OverlapPolicy
    created_at: datetime
    updated_at: datetime
    next_fire: datetime | None

    @classmethod
    def build(cls, schedule: ScheduleRow) -> ScheduleOut:
        next_fire = None
        if schedule.state is ScheduleState.ACTIVE:
            zone = parse_timezone(schedule.timezone)
            after = max(schedule.evaluated_until, datetime.now(UTC))
            upcoming = next_fire_time(schedule.cron, zone, after)
            next_fire = upcoming.astimezone(zone) if upcoming else None
        return cls(
            **schedule.model_dump(include=set(cls.model_fields) - {"next_fire"}),
            next_fire=next_fire,
        )


class ScheduleDetail(ScheduleOut):
    fires: list[FireRow]


class ScheduleChanges(BaseModel):
    """Fields of `PATCH /v1/schedules/{id}`; a field left out keeps its value."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=255)
    cron: str | None = Field(default=None, max_length=255)
    timezone: str | None = Field(default=None, max_length=255)
    missed_policy: str | None = None
    overlap_policy: str | None = None


def _invalid(exc: ScheduleError) -> JSONResponse:
    value = exc.value if isinstance(exc.value, str | int | float | bool | None) else str(exc.value)
    return JSONResponse(
        {"detail": str(exc), "field": exc.field, "value": value},
        status_code=422,
    )


@router.post(
    "/schedules",
    status_code=status.HTTP_201_CREATED,
    response_model=ScheduleOut,
    openapi_extra=SUBMIT_BODY,
)
async def create(
    request: Request,
    state: State,
    cron: Annotated[str, Query(max_length=255, description="Cron expression, e.g. 30 2 * * *.")],
    timezone: Annotated[str, Query(max_length=255, description="IANA time zone, e.g. UTC.")],
    missed: Annotated[str, Query(description="skip or run_once")] = MissedPolicy.SKIP.value,
    overlap: Annotated[str, Query(description="skip or allow")] = OverlapPolicy.SKIP.value,
    name: Annotated[str | None, Query(min_length=1, max_length=255)] = None,
) -> JSONResponse:
    """Store the spec and its references and create an active schedule."""
    try:
        # The options are checked before the body is read, so a typo costs no upload.
        parse_cron(cron)
        parse_timezone(timezone)
        parse_missed_policy(missed)
        parse_overlap_policy(overlap)
    except ScheduleError as exc:
        return _invalid(exc)

    with tempfile.TemporaryDirectory(prefix="onmodel-schedule-") as folder:
        spec = await receive_submission(request, Path(folder))

        def store() -> ScheduleRow:
            loaded = load_submission(spec, Path(folder), state.store, state.settings)
            return create_schedule(
                state.catalog,
                state.store,
                loaded,
                cron=cron,
                timezone=timezone,
                missed_policy=missed,
                overlap_policy=overlap,
                name=name,
            )

        schedule = await run_in_threadpool(store)
    logger.info("schedule %s created over HTTP", schedule.id)
    body = ScheduleOut.build(schedule).model_dump(mode="json")
    return JSONResponse(
        body,
        status_code=status.HTTP_201_CREATED,
        headers={"Location": f"/v1/schedules/{schedule.id}"},
    )


@router.get("/schedules", response_model=list[ScheduleOut])
def list_schedules(state: State) -> list[ScheduleOut]:
    """Return every schedule, oldest first."""
    return [ScheduleOut.build(s) for s in ScheduleStore(state.catalog).list_schedules()]


@router.get("/schedules/{schedule_id}", response_model=ScheduleDetail)
def get_schedule(
    schedule_id: str,
    state: State,
    fires: Annotated[int, Query(ge=1, le=MAX_FIRES, description="Recent fires to return.")] = 20,
) -> ScheduleDetail:
    """Return a schedule (full id or unique prefix) and its recent fires, latest first."""
    schedules = ScheduleStore(state.catalog)
    schedule = schedules.get(schedule_id)
    history = schedules.list_fires(schedule.id, limit=fires)
    return ScheduleDetail(**ScheduleOut.build(schedule).model_dump(), fires=history)


@router.post("/schedules/{schedule_id}/pause", response_model=ScheduleOut)
def pause(schedule_id: str, state: State) -> ScheduleOut:
    """Stop firing the schedule; fire times while paused are not caught up."""
    return ScheduleOut.build(ScheduleStore(state.catalog).pause(schedule_id))


@router.post("/schedules/{schedule_id}/resume", response_model=ScheduleOut)
def resume(schedule_id: str, state: State) -> ScheduleOut:
    """Fire the schedule again from now on."""
    return ScheduleOut.build(ScheduleStore(state.catalog).resume(schedule_id))


@router.patch("/schedules/{schedule_id}", response_model=ScheduleOut)
def change(schedule_id: str, changes: ScheduleChanges, state: State) -> ScheduleOut | JSONResponse:
    """Change the schedule's name, cron expression, time zone or policies."""
    try:
        schedule = update_schedule(
            state.catalog,
            state.store,
            schedule_id,
            cron=changes.cron,
            timezone=changes.timezone,
            missed_policy=changes.missed_policy,
            overlap_policy=changes.overlap_policy,
            name=changes.name,
        )
    except ScheduleError as exc:
        return _invalid(exc)
    return ScheduleOut.build(schedule)


@router.put("/schedules/{schedule_id}/spec", response_model=ScheduleOut, openapi_extra=SUBMIT_BODY)
async def replace_spec(schedule_id: str, request: Request, state: State) -> ScheduleOut:
    """Store a new version of the spec; later fires use it, past runs keep theirs."""
    schedules = ScheduleStore(state.catalog)
    full_id = (await run_in_threadpool(schedules.get, schedule_id)).id
    with tempfile.TemporaryDirectory(prefix="onmodel-schedule-") as folder:
        spec = await receive_submission(request, Path(folder))

        def store() -> ScheduleRow:
            loaded = load_submission(spec, Path(folder), state.store, state.settings)
            return update_schedule(state.catalog, state.store, full_id, loaded=loaded)

        schedule = await run_in_threadpool(store)
    return ScheduleOut.build(schedule)


@router.delete("/schedules/{schedule_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete(schedule_id: str, state: State) -> Response:
    """Delete the schedule and its fire history; the runs it started stay."""
    ScheduleStore(state.catalog).delete(schedule_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
