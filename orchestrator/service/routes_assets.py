"""`/v1/assets`: query assets, read one, get its image, and put review marks on it."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, status
from fastapi.responses import FileResponse, RedirectResponse, Response

from orchestrator.service.models import (
    DEFAULT_API_AUTHOR,
    AssetDetail,
    AssetListParams,
    AssetOut,
    AssetPageOut,
    CommentRequest,
    MarksOut,
    RatingRequest,
    TagRequest,
)
from orchestrator.service.state import ServiceState, service_state
from schemas.errors import NotFoundError
from storage.reviews import MarkKind, ReviewMarkRow, summarize_marks

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/v1/assets", tags=["assets"])
State = Annotated[ServiceState, Depends(service_state)]

# Lifetime of the presigned URL that the image endpoint redirects to: long
# enough for a slow client to start the download, short enough that a leaked
# URL soon stops working.
IMAGE_URL_EXPIRES_S = 900


@router.get("", response_model=AssetPageOut)
def list_assets(params: Annotated[AssetListParams, Query()], state: State) -> AssetPageOut:
    """Return one page of assets; pass `next_cursor` back as `cursor` for the next."""
    page = state.catalog.query_assets(
        params.filters(), sort=params.sort, limit=params.limit, cursor=params.cursor
    )
    return AssetPageOut(
        items=[AssetOut.build(asset, state.store) for asset in page.items],
        next_cursor=page.next_cursor,
        sort=page.sort,
        limit=page.limit,
    )


@router.get("/{asset_id}", response_model=AssetDetail)
def get_asset(asset_id: str, state: State) -> AssetDetail:
    """Return one asset (full id or unique prefix) with its provenance and review marks."""
    asset = state.catalog.get_asset(asset_id)
    marks = state.catalog.list_review_marks(asset.id)
    out = AssetOut.build(asset, state.store)
    return AssetDetail(**out.model_dump(), review=summarize_marks(marks), marks=marks)


@router.get(
    "/{asset_id}/image",
    response_class=Response,
    responses={
        200: {"content": {"image/png": {}}, "description": "The PNG, from a local store."},
        307: {"description": "Redirect to a presigned URL, from an S3 store."},
    },
)
def get_image(asset_id: str, state: State) -> Response:
    """Stream the asset's PNG, or redirect to a short-lived presigned S3 URL."""
    asset = state.catalog.get_asset(asset_id)
    local_path = state.store.local_path(asset.object_key)
    if local_path is not None:
        if not Path(local_path).is_file():
            raise NotFoundError(
                f"image of asset {asset.id} is missing from the object store "
                f"({asset.object_key}); check the store location"
            )
        return FileResponse(
            local_path,
            media_type="image/png",
            filename=f"{asset.id}.png",
            content_disposition_type="inline",
        )
    presign = getattr(state.store, "presigned_url", None)
    if presign is not None:
        url = presign(asset.object_key, expires_s=IMAGE_URL_EXPIRES_S)
        return RedirectResponse(url, status_code=status.HTTP_307_TEMPORARY_REDIRECT)
    return Response(state.store.get(asset.object_key), media_type="image/png")


# Review marks


@router.get("/{asset_id}/marks", response_model=MarksOut, tags=["reviews"])
def list_marks(asset_id: str, state: State) -> MarksOut:
    """Return the asset's tags, ratings and comments, oldest first, with a summary."""
    marks = state.catalog.list_review_marks(asset_id)
    return MarksOut(review=summarize_marks(marks), marks=marks)


def _add(
    state: ServiceState, asset_id: str, kind: MarkKind, value: str, author: str | None
) -> ReviewMarkRow:
    return state.catalog.add_review_mark(asset_id, kind, value, author or DEFAULT_API_AUTHOR)


MARK_ROUTE: dict[str, Any] = {
    "status_code": 201,
    "response_model": ReviewMarkRow,
    "tags": ["reviews"],
}


@router.post("/{asset_id}/tags", **MARK_ROUTE)
def add_tag(asset_id: str, body: TagRequest, state: State) -> ReviewMarkRow:
    """Tag the asset; a tag it already has returns the existing mark."""
    return _add(state, asset_id, MarkKind.TAG, body.tag, body.author)


@router.post("/{asset_id}/rating", **MARK_ROUTE)
def rate(asset_id: str, body: RatingRequest, state: State) -> ReviewMarkRow:
    """Approve or reject the asset; the latest rating is the one filters use."""
    return _add(state, asset_id, MarkKind.RATING, body.rating, body.author)


@router.post("/{asset_id}/comments", **MARK_ROUTE)
def comment(asset_id: str, body: CommentRequest, state: State) -> ReviewMarkRow:
    """Comment on the asset."""
    return _add(state, asset_id, MarkKind.COMMENT, body.text, body.author)
