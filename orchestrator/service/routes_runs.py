"""`/v1/storyboards` and `/v1/runs`: submit a storyboard, follow and cancel its run."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from orchestrator.recovery import cancel_run
from orchestrator.service.models import CancelResult, RunStatus, SubmittedRun
from orchestrator.service.state import SERVICE_ORIGIN, ServiceState, service_state
from orchestrator.service.submission import SpecText, load_submission, receive_submission
from orchestrator.submit import submit
from schemas.errors import NotFoundError, OnModelError, StorageError
from schemas.records import RunState

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/v1", tags=["runs"])
State = Annotated[ServiceState, Depends(service_state)]

# The request body as /docs shows it. The route reads the body itself.
SUBMIT_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/Storyboard"}},
            "application/yaml": {"schema": {"type": "string"}},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["spec"],
                    "properties": {
                        "spec": {"type": "string", "description": "The spec, YAML or JSON."},
                        "files": {
                            "type": "array",
                            "items": {"type": "string", "format": "binary"},
                            "description": "Reference images, named as the spec names them.",
                        },
                    },
                }
            },
        },
    }
}


def _submit(state: ServiceState, spec: SpecText, folder: Path) -> str:
    loaded = load_submission(spec, folder, state.store, state.settings)
    run_id = submit(state.catalog, state.store, loaded, origin=SERVICE_ORIGIN)
    state.launcher.start(run_id)
    return run_id


@router.post(
    "/storyboards",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=SubmittedRun,
    openapi_extra=SUBMIT_BODY,
)
async def submit_storyboard(request: Request, state: State) -> JSONResponse:
    """Validate a storyboard spec, store it and start its run; returns the run id at once."""
    with tempfile.TemporaryDirectory(prefix="onmodel-submit-") as folder:
        spec = await receive_submission(request, Path(folder))
        run_id = await run_in_threadpool(_submit, state, spec, Path(folder))
    status_url = f"/v1/runs/{run_id}"
    logger.info("run=%s submitted over HTTP", run_id)
    return JSONResponse(
        SubmittedRun(run_id=run_id, status_url=status_url).model_dump(),
        status_code=status.HTTP_202_ACCEPTED,
        headers={"Location": status_url},
    )


@router.get("/runs", response_model=list[RunStatus])
def list_runs(state: State, limit: Annotated[int, Query(ge=1, le=500)] = 50) -> list[RunStatus]:
    """Return the newest runs first, with their frame counts."""
    runs = state.catalog.list_runs(limit)
    return [RunStatus.build(run, state.catalog.run_summary(run.id)) for run in runs]


@router.get("/runs/{run_id}", response_model=RunStatus)
def get_run(run_id: str, state: State) -> RunStatus:
    """Return a run's state, frame counts and progress (full id or unique prefix)."""
    run = state.catalog.get_run(run_id)
    return RunStatus.build(run, state.catalog.run_summary(run.id))


@router.post(
    "/runs/{run_id}/cancel", status_code=status.HTTP_202_ACCEPTED, response_model=CancelResult
)
def cancel(run_id: str, state: State) -> CancelResult:
    """Cancel a run: no new frames start; frames in flight finish, then the run ends cancelled."""
    run = state.catalog.get_run(run_id)
    try:
        outcome = cancel_run(state.catalog, run.id)
    except OnModelError as exc:
        if isinstance(exc, NotFoundError | StorageError):
            raise
        # The run has ended already, or kept changing state while being cancelled.
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(exc)) from None
    return CancelResult(
        run_id=outcome.run_id,
        state=RunState.CANCELLED,
        driver_notified=outcome.driver_notified,
        frames_cancelled=outcome.frames_cancelled,
    )
