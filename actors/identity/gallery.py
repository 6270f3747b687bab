"""Reference embeddings, computed once per image and reused across frames."""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from actors.identity import copy_guard
from actors.identity.backend import ScorerBackend, Subject
from actors.identity.images import decode_rgb
from schemas.records import ReferenceImage

logger = logging.getLogger(__name__)

# Each entry is a few kilobytes (embedding plus two fingerprints), so this
# bounds the cache near 20 MB while covering many storyboards per worker.
MAX_ENTRIES = 4096


@dataclass(frozen=True)
class GalleryEntry:
    """The cached result of embedding one reference image."""

    sha256: str
    # The face chosen by `anchor_subject` (or the whole image for whole-image
    # backends); None when no face was found, so the image cannot anchor an identity.
    subject: Subject | None
    faces_found: int
    # Whole-image copy-guard fingerprint.
    fingerprint: np.ndarray


class ReferenceGallery:
    """An LRU cache of reference embeddings keyed by the image's SHA-256."""

    def __init__(self, backend: ScorerBackend, max_entries: int = MAX_ENTRIES) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries must be an integer >= 1, got {max_entries}")
        self._backend = backend
        self._max_entries = max_entries
        self._entries: OrderedDict[str, GalleryEntry] = OrderedDict()
        # Count of references embedded (cache misses), for logs and tests.
        self.embedded = 0

    def __len__(self) -> int:
        return len(self._entries)

    def entry(self, reference: ReferenceImage) -> GalleryEntry:
        cached = self._entries.get(reference.sha256)
        if cached is not None:
            self._entries.move_to_end(reference.sha256)
            return cached

        image = decode_rgb(reference.png, f"reference {reference.sha256[:12]}")
        subjects = self._backend.subjects(image)
        self.embedded += 1
        if not subjects:
            logger.warning(
                "reference %s: %s found no face in it; it cannot anchor an identity",
                reference.sha256[:12],
                self._backend.name,
            )
        elif len(subjects) > 1:
            logger.info(
                "reference %s: %d faces found, the most confident large one is used",
                reference.sha256[:12],
                len(subjects),
            )
        entry = GalleryEntry(
            sha256=reference.sha256,
            subject=anchor_subject(subjects),
            faces_found=len(subjects),
            fingerprint=copy_guard.fingerprint(image, copy_guard.FRAME_SIDE),
        )

        self._entries[reference.sha256] = entry
        if len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)
        return entry


def anchor_subject(subjects: list[Subject]) -> Subject | None:
    """Choose the face that stands for a reference image's character.

    The most confident detection among faces at least half as large as the
    largest one. Size alone can pick a false detection: in the astronaut
    fixture a mission patch (HOG score 0.12) is within 2% of the size of the
    face (HOG score 1.16).
    """
    if not subjects:
        return None
    largest = max(_area(subject) for subject in subjects)
    large = [subject for subject in subjects if 2 * _area(subject) >= largest]
    return max(large, key=lambda subject: subject.confidence)


def _area(subject: Subject) -> int:
    left, top, right, bottom = subject.box
    return max(0, right - left) * max(0, bottom - top)
