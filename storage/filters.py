"""Asset filters: what `onmodel assets list` options and `GET /v1/assets` parameters select.

`AssetFilters` validates raw values, such as strings from a command line or
a query string, so that every filter that reaches SQL has the type and range
of its column. `storage.queries` turns the filters into WHERE terms.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from schemas.errors import OnModelError
from schemas.records import FrameState, Verdict
from storage.reviews import MAX_TAG_LENGTH, UNRATED, Rating

# Seeds are stored as signed 64-bit integers (BIGINT).
MAX_SEED = 2**63 - 1
# `verdict=needs_review` selects by the asset's state: its attempts ran out
# and the best one was kept for a person to judge.
NEEDS_REVIEW = FrameState.NEEDS_REVIEW.value
VERDICT_FILTERS = (*(verdict.value for verdict in Verdict), NEEDS_REVIEW)


class InvalidQueryError(OnModelError, ValueError):
    """A filter, sort key, page size or cursor that is invalid; names the field and value."""

    def __init__(self, field: str, value: object, message: str) -> None:
        self.field = field
        self.value = value
        self.message = message
        super().__init__(f"{field}: {message}")


# Filters


def _reject_control_characters(value: str | None) -> str | None:
    # PostgreSQL rejects NUL in text, which would surface as a server error.
    if value is not None and any(ord(char) < 32 or ord(char) == 127 for char in value):
        raise ValueError("must not contain control characters")
    return value


Name = Annotated[str, Field(min_length=1, max_length=255)]


class AssetFilters(BaseModel):
    """Asset filters; every field left as None matches all assets."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    run: Name | None = Field(default=None, description="Run id or unique id prefix.")
    storyboard: Name | None = Field(default=None, description="Storyboard id, id prefix or name.")
    scene: Name | None = Field(default=None, description="Scene id from the spec.")
    character: Name | None = Field(default=None, description="Character id from the spec.")
    verdict: str | None = Field(
        default=None,
        description="Identity verdict (on_model, drifted, no_face, missing, copy, unscored) "
        "or needs_review.",
    )
    min_score: float | None = Field(default=None, allow_inf_nan=False)
    max_score: float | None = Field(default=None, allow_inf_nan=False)
    backend: Name | None = None
    model: Annotated[str, Field(min_length=1, max_length=1024)] | None = None
    seed: int | None = Field(default=None, ge=0, le=MAX_SEED)
    tag: Annotated[str, Field(min_length=1, max_length=MAX_TAG_LENGTH)] | None = None
    rating: str | None = Field(
        default=None, description="Latest rating: approve, reject or unrated."
    )
    since: datetime | None = Field(
        default=None, description="Created at or after (ISO 8601; UTC if no zone)."
    )
    until: datetime | None = Field(
        default=None, description="Created before (ISO 8601; UTC if no zone)."
    )
    q: Annotated[str, Field(min_length=1, max_length=200)] | None = Field(
        default=None, description="Text the prompt contains, case-insensitive."
    )

    _no_control = field_validator(
        "run", "storyboard", "scene", "character", "backend", "model", "tag", "q"
    )(_reject_control_characters)

    @field_validator("verdict")
    @classmethod
    def _check_verdict(cls, value: str | None) -> str | None:
        if value is not None and value not in VERDICT_FILTERS:
            raise ValueError(f"must be one of: {', '.join(VERDICT_FILTERS)}")
        return value

    @field_validator("rating")
    @classmethod
    def _check_rating(cls, value: str | None) -> str | None:
        valid = (*(rating.value for rating in Rating), UNRATED)
        if value is not None and value not in valid:
            raise ValueError(f"must be one of: {', '.join(valid)}")
        return value

    @field_validator("since", "until")
    @classmethod
    def _as_utc(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    def digest(self) -> str:
        """Return a short hash of the filters, which ties a cursor to its query."""
        text = self.model_dump_json(exclude_none=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def parse_filters(values: dict[str, Any]) -> AssetFilters:
    """Validate raw filter values (CLI options, query parameters) into AssetFilters.

    Raises InvalidQueryError naming the first invalid field and its value.
    """
    try:
        return AssetFilters.model_validate({k: v for k, v in values.items() if v is not None})
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        field = ".".join(str(part) for part in first["loc"]) or "filters"
        value = first.get("input")
        if first["type"] == "extra_forbidden":
            valid = ", ".join(AssetFilters.model_fields)
            message = f"unknown filter; valid filters are: {valid}"
        else:
            message = f"{str(first['msg']).removeprefix('Value error, ')}, got {value!r}"
        raise InvalidQueryError(field, value, message) from None
