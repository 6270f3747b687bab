"""The FastAPI application of the HTTP service: routers, token check, error responses."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from orchestrator.report.routes import report_router
from orchestrator.service import routes_assets, routes_runs
from orchestrator.service.state import ServiceState, service_state
from orchestrator.service.submission import PayloadError
from orchestrator.spec import field_path
from schemas.errors import NotFoundError, SpecError, StorageError
from schemas.storyboard import Storyboard
from storage.filters import InvalidQueryError
from storage.reviews import InvalidMarkError

logger = logging.getLogger(__name__)

SCHEMA_REF = "#/components/schemas/{model}"
# Request parts that FastAPI puts first in a validation error's location.
REQUEST_PARTS = ("query", "path", "body", "header", "cookie")
# Maximum length of the value text that an error response repeats.
MAX_ERROR_VALUE_LENGTH = 200
# The 422 body of `_validation_error_body`, in place of FastAPI's default
# in the OpenAPI document.
VALIDATION_ERROR_SCHEMA: dict[str, Any] = {
    "title": "HTTPValidationError",
    "type": "object",
    "required": ["detail"],
    "properties": {
        "detail": {"type": "string", "title": "Detail"},
        "field": {"type": "string", "title": "Field"},
        "value": {"title": "Value"},
        "errors": {
            "type": "array",
            "title": "Errors",
            "items": {"$ref": SCHEMA_REF.format(model="ValidationError")},
        },
    },
}
API_DESCRIPTION = """
Submit storyboards, follow their runs, and query, download and review the
cataloged assets. Every `/v1` endpoint except `/v1/health` needs
`Authorization: Bearer <token>` when the service has an API token.
"""


def _error_body(message: str, field: str | None = None, value: Any = None) -> dict[str, Any]:
    body: dict[str, Any] = {"detail": message}
    if field is not None:
        body["field"] = field
        # Values of any type end up here; their text form is always JSON-safe.
        body["value"] = value if isinstance(value, str | int | float | bool | None) else str(value)
    return body


def _validation_error_body(exc: RequestValidationError) -> dict[str, Any]:
    """Describe the first invalid value as {detail, field, value}, with every error in `errors`."""
    errors = list(exc.errors())
    first = errors[0]
    location = tuple(first.get("loc", ()))
    if location and location[0] in REQUEST_PARTS:
        location = location[1:]
    field = field_path(location) or None
    message = str(first.get("msg", "invalid value")).removeprefix("Value error, ")

    if first.get("type") == "missing":
        value_text = None
        detail = f"{field}: missing; add it to the request" if field else message
    else:
        value = first.get("input")
        value_text = value if isinstance(value, str) else repr(value)
        if len(value_text) > MAX_ERROR_VALUE_LENGTH:
            value_text = value_text[: MAX_ERROR_VALUE_LENGTH - 3] + "..."
        detail = f"{field}: {message}, got {value_text!r}" if field else message
    if len(errors) > 1:
        detail += f" ({len(errors) - 1} more in errors)"

    body = _error_body(detail, field, value_text)
    body["errors"] = jsonable_encoder(errors, custom_encoder={Exception: str})
    return body


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(_validation_error_body(exc), status_code=422)

    @app.exception_handler(SpecError)
    @app.exception_handler(InvalidQueryError)
    @app.exception_handler(InvalidMarkError)
    async def invalid_input(_: Request, exc: Exception) -> JSONResponse:
        field = getattr(exc, "field", None)
        return JSONResponse(
            _error_body(str(exc), field or None, getattr(exc, "value", None)), status_code=422
        )

    @app.exception_handler(PayloadError)
    async def invalid_payload(_: Request, exc: PayloadError) -> JSONResponse:
        return JSONResponse(_error_body(str(exc)), status_code=exc.status_code)

    @app.exception_handler(NotFoundError)
    async def not_found(_: Request, exc: NotFoundError) -> JSONResponse:
        return JSONResponse(_error_body(str(exc)), status_code=404)

    @app.exception_handler(StorageError)
    async def storage_unavailable(request: Request, exc: StorageError) -> JSONResponse:
        logger.error("%s %s failed: %s", request.method, request.url.path, exc)
        return JSONResponse(_error_body(str(exc)), status_code=503)


def create_app(state: ServiceState) -> FastAPI:
    """Build the API over `state`; Ray Serve runs it, tests call it with a TestClient."""
    app = FastAPI(
        title="OnModel",
        version="1",
        description=API_DESCRIPTION,
        docs_url="/docs",
        openapi_url="/openapi.json",
    )
    app.state.service = state
    _add_error_handlers(app)

    @app.get("/v1/health", tags=["service"])
    def health() -> dict[str, str]:
        """Return ok while the service is up; needs no token."""
        return {"status": "ok"}

    protected = [Depends(state.auth)]
    app.include_router(routes_runs.router, dependencies=protected)
    app.include_router(routes_assets.router, dependencies=protected)
    # A browser opens the review page by its URL and cannot send a bearer
    # token, so the page has no token check. It takes only full run ids, and
    # its approve and reject buttons send the token the reviewer enters.
    app.include_router(report_router(service_state))

    # The submit endpoint reads its body itself, so the spec's schema is
    # registered here for its documentation.
    original_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = original_openapi()
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            spec_schema = Storyboard.model_json_schema(ref_template=SCHEMA_REF)
            for name, definition in spec_schema.pop("$defs", {}).items():
                components.setdefault(name, jsonable_encoder(definition))
            components["Storyboard"] = jsonable_encoder(spec_schema)
            if "HTTPValidationError" in components:
                components["HTTPValidationError"] = VALIDATION_ERROR_SCHEMA
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
