"""Request and response bodies of the HTTP API."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from schemas.catalog import AssetRow, RunRow
from schemas.records import RunState, RunSummary
from storage.cursors import MAX_CURSOR_LENGTH
from storage.filters import AssetFilters
from storage.objects import ObjectStore
from storage.queries import DEFAULT_PAGE_SIZE, DEFAULT_SORT, MAX_PAGE_SIZE
from storage.reviews import MAX_AUTHOR_LENGTH, ReviewMarkRow, ReviewSummary

# Marks made through the API without an author name.
DEFAULT_API_AUTHOR = "api"


class AssetListParams(AssetFilters):
    """Query parameters of `GET /v1/assets`: the filters plus sort, page size and cursor."""

    sort: str = Field(
        default=DEFAULT_SORT,
        max_length=32,
        description="created_at, score, seed, scene or id; prefix '-' for descending.",
    )
    limit: int = Field(default=DEFAULT_PAGE_SIZE, ge=1, le=MAX_PAGE_SIZE)
    cursor: str | None = Field(
        default=None, max_length=MAX_CURSOR_LENGTH, description="next_cursor of the last page."
    )

    def filters(self) -> AssetFilters:
        return AssetFilters.model_validate(
            self.model_dump(exclude={"sort", "limit", "cursor"}, exclude_none=True)
        )


class SubmittedRun(BaseModel):
    run_id: str
    status_url: str


class RunStatus(BaseModel):
    """A run's state with its frame counts; `progress` is the share of frames that ended."""

    run_id: str
    storyboard_id: str
    storyboard: str
    state: RunState
    error: str | None
    frames: int
    accepted: int
    needs_review: int
    failed: int
    unscored: int
    pending: int
    progress: float
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None

    @classmethod
    def build(cls, run: RunRow, summary: RunSummary) -> RunStatus:
        done = summary.frames - summary.pending
        return cls(
            run_id=run.id,
            storyboard_id=run.storyboard_id,
            storyboard=run.storyboard_name,
            state=summary.state,
            error=run.error,
            frames=summary.frames,
            accepted=summary.accepted,
            needs_review=summary.needs_review,
            failed=summary.failed,
            unscored=summary.unscored,
            pending=summary.pending,
            progress=round(done / summary.frames, 4) if summary.frames else 1.0,
            created_at=run.created_at,
            started_at=run.started_at,
            finished_at=run.finished_at,
        )


class CancelResult(BaseModel):
    run_id: str
    state: RunState
    # True: a live driver finishes its frames in flight and then stops the run.
    driver_notified: bool
    frames_cancelled: int


class AssetOut(AssetRow):
    """An asset with the URL of its image and the object store location (`uri`)."""

    image_url: str
    uri: str

    @classmethod
    def build(cls, asset: AssetRow, store: ObjectStore) -> AssetOut:
        return cls(
            **asset.model_dump(),
            image_url=f"/v1/assets/{asset.id}/image",
            uri=store.uri(asset.object_key),
        )


class AssetPageOut(BaseModel):
    items: list[AssetOut]
    # None on the last page; pass it as `cursor` to get the next one.
    next_cursor: str | None
    sort: str
    limit: int


class MarksOut(BaseModel):
    review: ReviewSummary
    marks: list[ReviewMarkRow]


class AssetDetail(AssetOut):
    review: ReviewSummary
    marks: list[ReviewMarkRow]


class _MarkRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    author: str | None = Field(
        default=None,
        max_length=MAX_AUTHOR_LENGTH,
        description=f"Who makes the mark; {DEFAULT_API_AUTHOR!r} when left out.",
    )


class TagRequest(_MarkRequest):
    tag: str = Field(max_length=1000)


class RatingRequest(_MarkRequest):
    rating: str = Field(max_length=1000, description="approve or reject")


class CommentRequest(_MarkRequest):
    text: str = Field(max_length=100_000)
