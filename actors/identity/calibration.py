"""Threshold calibration from a storyboard's own reference images.

Two references of one character should be more alike than any two references
of different characters. A threshold between the two ranges accepts the first
and rejects the second.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import combinations

from actors.identity.gallery import GalleryEntry
from actors.identity.worker import IdentityWorker
from schemas.records import ReferenceImage


@dataclass(frozen=True)
class SimilarityRange:
    low: float
    high: float
    pairs: int

    @classmethod
    def of(cls, values: list[float]) -> SimilarityRange | None:
        if not values:
            return None
        return cls(low=min(values), high=max(values), pairs=len(values))


@dataclass
class Calibration:
    scorer: str
    default_threshold: float
    # Character id -> similarity range of its own references; None with fewer
    # than two usable references.
    within: dict[str, SimilarityRange | None]
    # (character id, character id) -> similarity range across their references.
    between: dict[tuple[str, str], SimilarityRange]
    # Character id -> SHA-256 of references in which no face was found.
    unusable: dict[str, list[str]]
    suggested_threshold: float
    # One-sentence reason for the value of `suggested_threshold`.
    basis: str
    warnings: list[str] = field(default_factory=list)


def calibrate(
    worker: IdentityWorker,
    references: dict[str, list[ReferenceImage]],
    thresholds: dict[str, float],
) -> Calibration:
    """Embed every reference and measure within- and between-character similarity.

    `thresholds` maps each character id to the threshold in force, and a
    missing id means the scorer default. Warnings compare the measured ranges
    with these thresholds.
    """
    # 1. Embed every reference once; keep those with a usable subject.
    usable: dict[str, list[GalleryEntry]] = {}
    unusable: dict[str, list[str]] = {}
    for character_id, images in references.items():
        entries = worker.references(images)
        usable[character_id] = [entry for entry in entries if entry.subject is not None]
        unusable[character_id] = [entry.sha256 for entry in entries if entry.subject is None]

    # 2. Similarity of every pair of references, within and between characters.
    within = {
        character_id: SimilarityRange.of(_similarities(worker, combinations(entries, 2)))
        for character_id, entries in usable.items()
    }
    between: dict[tuple[str, str], SimilarityRange] = {}
    for first, second in combinations(usable, 2):
        pairs = [(a, b) for a in usable[first] for b in usable[second]]
        measured = SimilarityRange.of(_similarities(worker, pairs))
        if measured is not None:
            between[(first, second)] = measured

    # 3. A threshold between the two ranges, and what to watch out for.
    default = worker.default_threshold
    suggested, basis = _suggest(within, between, default)
    warnings = _warnings(usable, unusable, within, between, thresholds, default)
    return Calibration(
        scorer=worker.scorer,
        default_threshold=default,
        within=within,
        between=between,
        unusable=unusable,
        suggested_threshold=suggested,
        basis=basis,
        warnings=warnings,
    )


def _similarities(
    worker: IdentityWorker, pairs: Iterable[tuple[GalleryEntry, GalleryEntry]]
) -> list[float]:
    values = []
    for first, second in pairs:
        value = worker.similarity(first, second)
        if value is not None:
            values.append(value)
    return values


def _suggest(
    within: dict[str, SimilarityRange | None],
    between: dict[tuple[str, str], SimilarityRange],
    default: float,
) -> tuple[float, str]:
    lows = [measured.low for measured in within.values() if measured is not None]
    highs = [measured.high for measured in between.values()]
    if not lows:
        return default, "the scorer default: no character has two usable references"
    if not highs:
        return default, "the scorer default: there is only one character to compare"
    same, different = min(lows), max(highs)
    if same <= different:
        return default, (
            f"the scorer default: the least alike references of one character ({same:.3f}) "
            f"are no more alike than the most alike different characters ({different:.3f})"
        )
    midpoint = round((same + different) / 2, 3)
    return midpoint, (
        f"midway between the most alike different characters ({different:.3f}) "
        f"and the least alike references of one character ({same:.3f})"
    )


def _warnings(
    usable: dict[str, list[GalleryEntry]],
    unusable: dict[str, list[str]],
    within: dict[str, SimilarityRange | None],
    between: dict[tuple[str, str], SimilarityRange],
    thresholds: dict[str, float],
    default: float,
) -> list[str]:
    warnings = []
    for character_id, shas in unusable.items():
        if shas and not usable[character_id]:
            warnings.append(
                f"{character_id}: no face found in any of its references; "
                "its frames will be unscored"
            )
        elif shas:
            short = ", ".join(sha[:12] for sha in shas)
            warnings.append(f"{character_id}: no face found in reference(s) {short}; ignored")

    for character_id, measured in within.items():
        threshold = thresholds.get(character_id, default)
        if measured is not None and measured.low < threshold:
            warnings.append(
                f"{character_id}: two of its references are only {measured.low:.3f} alike, "
                f"below its threshold {threshold:.3f}; they may not show the same face"
            )

    for (first, second), measured in between.items():
        threshold = min(thresholds.get(first, default), thresholds.get(second, default))
        if measured.high >= threshold:
            warnings.append(
                f"{first} and {second} are too alike to tell apart: similarity "
                f"{measured.high:.3f} >= threshold {threshold:.3f}; a frame of one may "
                "pass as the other"
            )
    return warnings
