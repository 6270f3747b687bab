"""Records that travel between the planner, the actors and the catalog."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from schemas.storyboard import Backend


class RunState(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    # The driver stopped (Ctrl-C, SIGTERM) before the run finished; resume continues it.
    INTERRUPTED = "interrupted"


class FrameState(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    ACCEPTED = "accepted"
    NEEDS_REVIEW = "needs_review"
    FAILED = "failed"
    MODERATED = "moderated"
    CANCELLED = "cancelled"

    @property
    def is_final(self) -> bool:
        return self not in (FrameState.PENDING, FrameState.RUNNING)


class AttemptState(StrEnum):
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    # The attempt was in flight when its driver died; resume starts a new one.
    ABANDONED = "abandoned"


class Verdict(StrEnum):
    ON_MODEL = "on_model"
    DRIFTED = "drifted"
    NO_FACE = "no_face"
    MISSING = "missing"
    COPY = "copy"
    UNSCORED = "unscored"


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True)


class ReferenceImage(_Record):
    """A reference image as the actors receive it: decoded once, sent as PNG bytes."""

    sha256: str
    png: bytes = Field(repr=False)


class FrameTask(_Record):
    """One frame to produce. `key` is stable across runs of the same storyboard."""

    key: str
    storyboard_id: str
    scene_id: str
    edit_step: int = 0
    variant: int = 0
    # Key of the frame whose accepted image this frame edits (edit chains), if any.
    parent_key: str | None = None
    prompt: str
    characters: list[str]
    backend: Backend
    model: str
    width: int
    height: int
    steps: int
    guidance: float
    seed: int


class GenerationRequest(_Record):
    """The self-contained input of one generation attempt on a generator actor."""

    frame_key: str
    attempt: int
    prompt: str
    backend: Backend
    model: str
    width: int
    height: int
    steps: int
    guidance: float
    seed: int
    # The conditioning canvas (PNG). None: text-to-image without a reference.
    conditioning_png: bytes | None = Field(default=None, repr=False)
    options: dict[str, Any] = Field(default_factory=dict)


class GenerationResult(_Record):
    """An image produced by a generator actor, with where and how it was made."""

    frame_key: str
    attempt: int
    png: bytes = Field(repr=False)
    width: int
    height: int
    seconds: float
    node: str
    device: str
    backend: Backend
    model: str


class CharacterScore(_Record):
    """The identity result of one expected character in one frame."""

    character_id: str
    verdict: Verdict
    # Similarity to the best-matching reference, higher is closer; None when not scored.
    score: float | None = None
    threshold: float | None = None
    # Face box in the frame as (left, top, right, bottom) pixels, if a face was matched.
    box: tuple[int, int, int, int] | None = None
    detail: str = ""


class FrameScore(_Record):
    """The identity result of one frame: an overall verdict and one score per character."""

    verdict: Verdict
    scorer: str
    characters: list[CharacterScore] = Field(default_factory=list)
    faces_found: int = 0
    seconds: float = 0.0
    detail: str = ""
    # Cosine similarity of the whole frame to the style reference, in [0, 1].
    # None when no style image is set or the scorer cannot measure it.
    style_similarity: float | None = None

    @property
    def score(self) -> float | None:
        """The lowest character score: a frame is only as on model as its worst character."""
        values = [c.score for c in self.characters if c.score is not None]
        return min(values) if values else None


class RunSummary(_Record):
    run_id: str
    storyboard: str
    state: RunState
    frames: int
    accepted: int
    needs_review: int
    failed: int
    pending: int
    unscored: int
    created_at: datetime | None = None
    finished_at: datetime | None = None
