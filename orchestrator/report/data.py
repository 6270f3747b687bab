"""Everything a run report shows, read once from the catalog and the object store.

Reference images are read here because a run has few of them. Frame and
attempt images stay in the object store until a renderer draws them, so a
large run is never held in memory at full size.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from orchestrator.report.badges import Badge, frame_badge
from schemas.catalog import AssetRow, AttemptRow, FrameRow, RunRow
from schemas.errors import NotFoundError
from schemas.records import RunSummary
from schemas.storyboard import Storyboard
from storage.catalog import Catalog
from storage.objects import ObjectStore

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CharacterReferences:
    """A character as the spec defines it, with its reference images as stored (PNG)."""

    id: str
    name: str
    description: str
    images: tuple[bytes, ...]


@dataclass(frozen=True)
class FrameReport:
    """One frame with every attempt made for it and the asset it produced, if any."""

    frame: FrameRow
    attempts: tuple[AttemptRow, ...]
    asset: AssetRow | None
    badge: Badge

    @property
    def image_key(self) -> str | None:
        """The object key of the frame's image: its asset's, else None."""
        return self.asset.object_key if self.asset is not None else None

    @property
    def score(self) -> float | None:
        """The kept image's identity score (the lowest character score), if scored."""
        return self.asset.score if self.asset is not None else None


@dataclass(frozen=True)
class RunReport:
    """A run's rows and references, in plan order, ready for the renderers."""

    run: RunRow
    summary: RunSummary
    characters: tuple[CharacterReferences, ...]
    style_image: bytes | None
    style_description: str
    frames: tuple[FrameReport, ...]
    generated_at: datetime

    @property
    def reference_count(self) -> int:
        """Reference images in the header, the style reference included."""
        count = sum(len(character.images) for character in self.characters)
        return count + (1 if self.style_image is not None else 0)

    def scenes(self) -> list[tuple[str, list[FrameReport]]]:
        """Frames grouped by scene id, scenes and frames both in plan order."""
        grouped: dict[str, list[FrameReport]] = {}
        for frame in self.frames:
            grouped.setdefault(frame.frame.scene_id, []).append(frame)
        return list(grouped.items())


def load_report(catalog: Catalog, store: ObjectStore, run_id: str) -> RunReport:
    """Read a run's report data; `run_id` may be a unique prefix.

    Raises NotFoundError when the run is not in the catalog, or when one of
    its reference images is missing from the object store.
    """
    run = catalog.get_run(run_id)
    storyboard = Storyboard.model_validate(catalog.get_storyboard(run.storyboard_id).spec)
    characters = tuple(_characters(store, run, storyboard))
    style_item = run.options.get("style")
    style_image = _read(store, style_item["key"], run.id, "style") if style_item else None

    assets = {asset.frame_key: asset for asset in catalog.list_assets(run_id=run.id)}
    attempts: dict[str, list[AttemptRow]] = {}
    for attempt in catalog.list_attempts(run.id):
        attempts.setdefault(attempt.frame_key, []).append(attempt)
    frames = tuple(
        FrameReport(
            frame=row,
            attempts=tuple(attempts.get(row.key, ())),
            asset=assets.get(row.key),
            badge=frame_badge(row, assets.get(row.key)),
        )
        for row in catalog.list_frames(run.id)
    )

    logger.info("run %s: report data loaded, %d frames", run.id, len(frames))
    return RunReport(
        run=run,
        summary=catalog.run_summary(run.id),
        characters=characters,
        style_image=style_image,
        style_description=storyboard.style.description if storyboard.style else "",
        frames=frames,
        generated_at=datetime.now(UTC),
    )


def _characters(
    store: ObjectStore, run: RunRow, storyboard: Storyboard
) -> list[CharacterReferences]:
    stored: dict[str, list[dict[str, str]]] = run.options.get("references", {})
    characters = []
    for character in storyboard.characters:
        images = tuple(
            _read(store, item["key"], run.id, f"character {character.id!r}")
            for item in stored.get(character.id, [])
        )
        characters.append(
            CharacterReferences(
                id=character.id,
                name=character.name or character.id,
                description=character.description,
                images=images,
            )
        )
    return characters


def _read(store: ObjectStore, key: str, run_id: str, owner: str) -> bytes:
    try:
        return store.get(key)
    except NotFoundError as exc:
        raise NotFoundError(
            f"run {run_id}: reference image of {owner} is missing from the object store "
            f"(key {key!r}); restore the object store or submit the storyboard again"
        ) from exc
