"""HTTP route that serves a run's review page with working approve and reject buttons.

The service includes the router that `report_router` returns. The page it
serves POSTs review marks to the same service's
`/v1/assets/{asset_id}/rating`, with a Bearer token that the reviewer
enters on the page when the service requires one.

A browser that opens the page by its URL cannot send a Bearer token, so a
service may include this router without its token check. The route
therefore takes only a full run id, never a prefix. A full id is a random
128-bit value that cannot be guessed or enumerated, so only someone who was
given the id sees the page. Changing a review mark still needs the token.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.params import Depends as DependsParam
from fastapi.responses import HTMLResponse

from orchestrator.report.data import RunReport, load_report
from orchestrator.report.images import ImageSource
from orchestrator.report.page import render_page
from schemas.errors import NotFoundError
from storage.catalog import Catalog
from storage.objects import ObjectStore

logger = logging.getLogger(__name__)

REPORT_PATH = "/runs/{run_id}/report"
# Run ids are uuid4 hex strings.
FULL_RUN_ID = re.compile(r"^[0-9a-f]{32}$")
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    # The URL contains the run id, which the page must not pass on to other sites.
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}


class ReportBackends(Protocol):
    """The service's catalog and object store, which the route reads."""

    catalog: Catalog
    store: ObjectStore


def report_router(
    get_backends: Callable[..., ReportBackends],
    *,
    dependencies: Sequence[DependsParam] = (),
) -> APIRouter:
    """Return a router with `GET /runs/{run_id}/report`.

    `get_backends` is a FastAPI dependency that returns the service's
    catalog and object store; `dependencies` run before the route, for
    example an authentication check.
    """
    router = APIRouter(dependencies=list(dependencies))

    @router.get(REPORT_PATH, response_class=HTMLResponse, summary="Review page of a run")
    # The dependency is a default value, not an Annotated hint: with postponed
    # annotations FastAPI would look `get_backends` up in the module's globals.
    def run_report(
        run_id: str, request: Request, backends: Any = Depends(get_backends)
    ) -> HTMLResponse:
        """Render the review page of the run with this full 32-character id."""
        if not FULL_RUN_ID.match(run_id):
            raise HTTPException(
                status_code=404,
                detail=f"run {run_id!r} not found; the review page needs the full "
                "32-character run id, as `onmodel run` and the API return it",
            )
        try:
            report = load_report(backends.catalog, backends.store, run_id)
        except NotFoundError as exc:
            raise HTTPException(status_code=404, detail=str(exc)) from None

        # The page calls the API under the same prefix the service is mounted at.
        api_base = str(request.scope.get("root_path", ""))
        ratings = current_ratings(backends.catalog, report)
        page = render_page(report, ImageSource(backends.store), api_base=api_base, ratings=ratings)
        logger.info("run %s: review page served (%d bytes)", report.run.id, len(page))
        return HTMLResponse(page, headers=PAGE_HEADERS)

    return router


def current_ratings(catalog: Catalog, report: RunReport) -> dict[str, str]:
    """Return asset id -> newest rating for the run's rated assets."""
    return catalog.run_ratings(report.run.id)
