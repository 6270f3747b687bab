"""The identity worker: one loaded scorer backend that scores frames against references."""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from actors.identity import copy_guard
from actors.identity.backend import ScorerBackend
from actors.identity.gallery import GalleryEntry, ReferenceGallery
from actors.identity.images import decode_rgb
from actors.identity.matching import (
    ExpectedCharacter,
    flag_copies,
    frame_verdict,
    match_characters,
)
from schemas.errors import BackendLoadError
from schemas.records import FrameScore, ReferenceImage, Verdict

logger = logging.getLogger(__name__)

SCORERS = ("dlib", "onnx-face", "embedding")


def load_backend(scorer: str, model: str | None) -> ScorerBackend:
    """Build the named backend; raises BackendLoadError with the setting to fix."""
    # Imports stay inside the branches so that a dlib worker never imports torch.
    if scorer == "dlib":
        from actors.identity.dlib_backend import DlibBackend

        if model is not None:
            logger.warning("dlib scorer: ignoring consistency.model %r, dlib ships its own", model)
        return DlibBackend()
    if scorer == "onnx-face":
        from actors.identity.onnx_backend import OnnxFaceBackend

        return OnnxFaceBackend(model)
    if scorer == "embedding":
        from actors.identity.embedding_backend import EmbeddingBackend

        return EmbeddingBackend(model)
    raise BackendLoadError(
        f"consistency.scorer: unknown scorer {scorer!r}; choose one of: {', '.join(SCORERS)}"
    )


class IdentityWorker:
    """Holds one scorer backend; the runner wraps it with `ray.remote`.

    Reference embeddings are cached by image SHA-256, so each reference is
    embedded once per worker however many frames use it.
    """

    def __init__(self, scorer: str = "dlib", model: str | None = None) -> None:
        started = time.perf_counter()
        self.scorer = scorer
        self.model = model
        self.backend = load_backend(scorer, model)
        self.gallery = ReferenceGallery(self.backend)
        logger.info(
            "identity scorer %s loaded in %.2f s (model %s, pid %d)",
            scorer,
            time.perf_counter() - started,
            model,
            os.getpid(),
        )

    @property
    def default_threshold(self) -> float:
        return self.backend.default_threshold

    def score(
        self,
        frame_png: bytes,
        characters: dict[str, list[ReferenceImage]],
        thresholds: dict[str, float],
    ) -> FrameScore:
        """Score one frame against the expected characters' references.

        `thresholds` maps character id to a similarity threshold in [0, 1];
        characters not in it use `default_threshold`. Raises ValueError when
        the frame or a reference cannot be decoded or a threshold is out of range.
        """
        started = time.perf_counter()
        if not characters:
            return FrameScore(
                verdict=Verdict.UNSCORED,
                scorer=self.scorer,
                detail="no characters to check",
                seconds=time.perf_counter() - started,
            )

        # 1. References: embedded on first use, then served from the gallery.
        # Thresholds are checked first so that a bad value fails before any work.
        limits = {
            character_id: self._threshold(character_id, thresholds) for character_id in characters
        }
        expected = [
            ExpectedCharacter(
                character_id=character_id,
                references=[self.gallery.entry(reference) for reference in references],
                threshold=limits[character_id],
            )
            for character_id, references in characters.items()
        ]

        # 2. The frame: find and embed its faces (or the whole image).
        frame = decode_rgb(frame_png, "frame")
        subjects = self.backend.subjects(frame)

        # 3. Identity per character, then the copy guard on the same matches.
        matches = match_characters(self.backend, subjects, expected)
        frame_fingerprint = copy_guard.fingerprint(frame, copy_guard.FRAME_SIDE)
        frame_copy_detail = flag_copies(matches, frame_fingerprint)

        # 4. Frame verdict and a one-line summary of what went wrong.
        faces_found = len(subjects) if self.backend.localizes else 0
        verdict = frame_verdict(matches, faces_found, bool(frame_copy_detail))
        details = [
            f"{match.expected.character_id}: {'; '.join(match.details)}"
            for match in matches
            if match.details
        ]
        if frame_copy_detail and not any(frame_copy_detail in line for line in details):
            details.insert(0, frame_copy_detail)
        result = FrameScore(
            verdict=verdict,
            scorer=self.scorer,
            characters=[match.to_score() for match in matches],
            faces_found=faces_found,
            seconds=time.perf_counter() - started,
            detail=" | ".join(details),
        )
        logger.debug(
            "frame scored %s in %.3f s: %d face(s), %s",
            verdict,
            result.seconds,
            faces_found,
            result.detail,
        )
        return result

    def references(self, references: list[ReferenceImage]) -> list[GalleryEntry]:
        """Embed references (or fetch them from the cache), for calibration."""
        return [self.gallery.entry(reference) for reference in references]

    def similarity(self, first: GalleryEntry, second: GalleryEntry) -> float | None:
        """Similarity of two references' subjects; None when either has no face."""
        if first.subject is None or second.subject is None:
            return None
        return self.backend.similarity(first.subject.embedding, second.subject.embedding)

    def info(self) -> dict[str, Any]:
        """Scorer, model, pid and cache counters, for logs and tests."""
        return {
            "scorer": self.scorer,
            "model": self.model,
            "pid": os.getpid(),
            "references_cached": len(self.gallery),
            "references_embedded": self.gallery.embedded,
        }

    def _threshold(self, character_id: str, thresholds: dict[str, float]) -> float:
        value = thresholds.get(character_id)
        if value is None:
            return self.default_threshold
        if not 0.0 <= value <= 1.0:
            raise ValueError(
                f"thresholds[{character_id!r}]: {value} is outside [0, 1]; "
                "similarity thresholds are fractions, higher is stricter"
            )
        return float(value)
