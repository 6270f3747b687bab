"""Conversion of ORM objects into the detached pydantic rows of `schemas.catalog`."""

from __future__ import annotations

import json
from typing import Any

from schemas.catalog import AssetRow, AttemptRow, FrameRow, RunRow, StoryboardRow
from schemas.records import AttemptState, CharacterScore, FrameState, RunState, Verdict
from storage.models import Asset, Attempt, Frame, Run, Storyboard


def dump_json(value: Any, field: str) -> str:
    """Serialize `value` for a JSON text column; raise ValueError naming `field` if it cannot be."""
    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"{field}: value is not JSON-serializable ({exc}); use str, number, bool, list, dict"
        ) from exc


def load_scores(scores_json: str | None) -> list[CharacterScore]:
    if not scores_json:
        return []
    return [CharacterScore.model_validate(item) for item in json.loads(scores_json)]


def storyboard_row(storyboard: Storyboard) -> StoryboardRow:
    return StoryboardRow(
        id=storyboard.id,
        name=storyboard.name,
        spec_sha256=storyboard.spec_sha256,
        spec=json.loads(storyboard.spec_json),
        created_at=storyboard.created_at,
    )


def run_row(run: Run, storyboard_name: str) -> RunRow:
    return RunRow(
        id=run.id,
        storyboard_id=run.storyboard_id,
        storyboard_name=storyboard_name,
        state=RunState(run.state),
        options=json.loads(run.options_json),
        frames_total=run.frames_total,
        error=run.error,
        created_at=run.created_at,
        started_at=run.started_at,
        finished_at=run.finished_at,
        driver=run.driver,
    )


def frame_row(frame: Frame, attempts: int, asset_id: str | None) -> FrameRow:
    return FrameRow(
        id=frame.id,
        run_id=frame.run_id,
        key=frame.key,
        scene_id=frame.scene_id,
        edit_step=frame.edit_step,
        variant=frame.variant,
        parent_key=frame.parent_key,
        prompt=frame.prompt,
        characters=json.loads(frame.characters_json),
        backend=frame.backend,
        model=frame.model,
        width=frame.width,
        height=frame.height,
        steps=frame.steps,
        guidance=frame.guidance,
        seed=frame.seed,
        state=FrameState(frame.state),
        error=frame.error,
        attempts=attempts,
        asset_id=asset_id,
    )


def attempt_row(attempt: Attempt, run_id: str, frame_key: str) -> AttemptRow:
    return AttemptRow(
        id=attempt.id,
        run_id=run_id,
        frame_key=frame_key,
        number=attempt.number,
        seed=attempt.seed,
        state=AttemptState(attempt.state),
        verdict=Verdict(attempt.verdict) if attempt.verdict else None,
        score=attempt.score,
        scores=load_scores(attempt.scores_json),
        object_key=attempt.object_key,
        error=attempt.error,
        seconds_generate=attempt.seconds_generate,
        seconds_score=attempt.seconds_score,
        style_similarity=attempt.style_similarity,
        node=attempt.node,
        device=attempt.device,
        started_at=attempt.started_at,
        finished_at=attempt.finished_at,
    )


def asset_row(
    asset: Asset,
    *,
    storyboard_name: str,
    frame_key: str,
    attempt_number: int,
    scores_json: str | None,
) -> AssetRow:
    return AssetRow(
        id=asset.id,
        run_id=asset.run_id,
        storyboard_id=asset.storyboard_id,
        storyboard_name=storyboard_name,
        frame_key=frame_key,
        scene_id=asset.scene_id,
        edit_step=asset.edit_step,
        variant=asset.variant,
        attempt=attempt_number,
        state=FrameState(asset.state),
        verdict=Verdict(asset.verdict),
        score=asset.score,
        scores=load_scores(scores_json),
        characters=json.loads(asset.characters_json),
        prompt=asset.prompt,
        backend=asset.backend,
        model=asset.model,
        seed=asset.seed,
        width=asset.width,
        height=asset.height,
        steps=asset.steps,
        guidance=asset.guidance,
        reference_hashes=json.loads(asset.reference_hashes_json),
        object_key=asset.object_key,
        sha256=asset.sha256,
        seconds_generate=asset.seconds_generate,
        seconds_score=asset.seconds_score,
        style_similarity=asset.style_similarity,
        node=asset.node,
        device=asset.device,
        parent_asset_id=asset.parent_asset_id,
        created_at=asset.created_at,
    )
