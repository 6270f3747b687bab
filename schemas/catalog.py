"""Rows the catalog returns: plain pydantic copies, detached from any session."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from schemas.records import AttemptState, CharacterScore, FrameState, RunState, Verdict


class _Row(BaseModel):
    model_config = ConfigDict(frozen=True)


class StoryboardRow(_Row):
    id: str
    name: str
    spec_sha256: str
    spec: dict[str, Any]
    created_at: datetime


class RunRow(_Row):
    id: str
    storyboard_id: str
    storyboard_name: str
    state: RunState
    options: dict[str, Any] = Field(default_factory=dict)
    frames_total: int
    error: str | None = None
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    # Host and process id of the driver that last ran it, for resume decisions.
    driver: str | None = None


class FrameRow(_Row):
    id: int
    run_id: str
    key: str
    scene_id: str
    edit_step: int
    variant: int
    parent_key: str | None
    prompt: str
    characters: list[str]
    backend: str
    model: str
    width: int
    height: int
    steps: int
    guidance: float
    seed: int
    state: FrameState
    error: str | None = None
    attempts: int = 0
    asset_id: str | None = None


class AttemptRow(_Row):
    id: int
    run_id: str
    frame_key: str
    number: int
    seed: int
    state: AttemptState
    verdict: Verdict | None = None
    score: float | None = None
    scores: list[CharacterScore] = Field(default_factory=list)
    object_key: str | None = None
    error: str | None = None
    seconds_generate: float | None = None
    seconds_score: float | None = None
    # Similarity to the storyboard's style image; None when not measured.
    style_similarity: float | None = None
    node: str | None = None
    device: str | None = None
    started_at: datetime
    finished_at: datetime | None = None


class AssetRow(_Row):
    """An image the catalog keeps, with its full provenance."""

    id: str
    run_id: str
    storyboard_id: str
    storyboard_name: str
    frame_key: str
    scene_id: str
    edit_step: int
    variant: int
    attempt: int
    # accepted, or needs_review when the best of exhausted attempts was kept.
    state: FrameState
    verdict: Verdict
    score: float | None
    scores: list[CharacterScore] = Field(default_factory=list)
    characters: list[str]
    prompt: str
    backend: str
    model: str
    seed: int
    width: int
    height: int
    steps: int
    guidance: float
    reference_hashes: dict[str, list[str]] = Field(default_factory=dict)
    object_key: str
    sha256: str
    seconds_generate: float | None = None
    seconds_score: float | None = None
    # Similarity to the storyboard's style image; None when not measured.
    style_similarity: float | None = None
    node: str | None = None
    device: str | None = None
    parent_asset_id: str | None = None
    created_at: datetime
