"""Match the subjects found in a frame to the expected characters and decide verdicts."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment

from actors.identity import copy_guard
from actors.identity.backend import ScorerBackend, Subject
from actors.identity.gallery import GalleryEntry
from schemas.records import CharacterScore, Verdict


@dataclass(frozen=True)
class ExpectedCharacter:
    character_id: str
    references: list[GalleryEntry]
    threshold: float

    @property
    def anchors(self) -> list[GalleryEntry]:
        """References with a usable subject (a face, for face backends)."""
        return [entry for entry in self.references if entry.subject is not None]


@dataclass
class CharacterMatch:
    expected: ExpectedCharacter
    verdict: Verdict
    score: float | None = None
    subject: Subject | None = None
    details: list[str] = field(default_factory=list)

    def to_score(self) -> CharacterScore:
        return CharacterScore(
            character_id=self.expected.character_id,
            verdict=self.verdict,
            score=self.score,
            threshold=self.expected.threshold,
            box=None if self.subject is None else self.subject.box,
            detail="; ".join(self.details),
        )


def match_characters(
    backend: ScorerBackend, subjects: list[Subject], expected: list[ExpectedCharacter]
) -> list[CharacterMatch]:
    """Give each expected character its best subject and an identity verdict.

    Face backends assign faces to characters one to one, minimising the total
    of (1 - similarity) over the frame (Hungarian algorithm). A character's
    similarity to a face is its best over the character's references. Whole-image
    backends compare every character with the one whole-frame subject.
    """
    matches: dict[str, CharacterMatch] = {}
    scorable: list[ExpectedCharacter] = []
    for item in expected:
        unscored = _unscored(item)
        if unscored is None:
            scorable.append(item)
        else:
            matches[item.character_id] = unscored

    if scorable and not subjects:
        for item in scorable:
            matches[item.character_id] = CharacterMatch(
                item, Verdict.NO_FACE, details=["no face found in the frame"]
            )
    elif scorable:
        similarity = np.array(
            [
                [_best_similarity(backend, subject, item) for item in scorable]
                for subject in subjects
            ]
        )
        if backend.localizes:
            rows, columns = linear_sum_assignment(1.0 - similarity)
            pairs = dict(zip(columns.tolist(), rows.tolist(), strict=True))
        else:
            pairs = dict.fromkeys(range(len(scorable)), 0)

        for column, item in enumerate(scorable):
            row = pairs.get(column)
            if row is None:
                matches[item.character_id] = CharacterMatch(
                    item,
                    Verdict.MISSING,
                    details=[
                        f"no face left to match: {len(subjects)} face(s) found "
                        f"for {len(scorable)} characters"
                    ],
                )
                continue
            score = float(similarity[row, column])
            match = CharacterMatch(item, Verdict.ON_MODEL, score=score, subject=subjects[row])
            if score < item.threshold:
                match.verdict = Verdict.DRIFTED
                match.details.append(
                    f"similarity {score:.3f} is below the threshold {item.threshold:.3f}"
                )
            matches[item.character_id] = match

    return [matches[item.character_id] for item in expected]


def _unscored(item: ExpectedCharacter) -> CharacterMatch | None:
    """Return an `unscored` match for a character without usable references, else None."""
    if not item.references:
        return CharacterMatch(item, Verdict.UNSCORED, details=["no reference images"])
    if not item.anchors:
        return CharacterMatch(
            item,
            Verdict.UNSCORED,
            details=[
                f"no face found in any of its {len(item.references)} reference image(s); "
                "use a reference with a clear frontal face, or the embedding scorer"
            ],
        )
    return None


def _best_similarity(backend: ScorerBackend, subject: Subject, item: ExpectedCharacter) -> float:
    return max(
        backend.similarity(subject.embedding, entry.subject.embedding)
        for entry in item.anchors
        if entry.subject is not None
    )


def flag_copies(matches: list[CharacterMatch], frame_fingerprint: np.ndarray) -> str:
    """Mark matches whose face, or whose whole frame, copies a reference's pixels.

    Every expected character's references are candidates, so a frame that
    reuses another character's reference is caught too. Returns a frame-level
    detail when the whole frame is a copy, else an empty string.
    """
    references = [entry for match in matches for entry in match.expected.references]

    for match in matches:
        if match.subject is None or match.subject.fingerprint is None:
            continue
        for entry in references:
            if entry.subject is None or entry.subject.fingerprint is None:
                continue
            value = copy_guard.correlation(match.subject.fingerprint, entry.subject.fingerprint)
            if value >= copy_guard.FACE_THRESHOLD:
                match.verdict = Verdict.COPY
                match.details.append(
                    f"face copies reference {entry.sha256[:12]} "
                    f"(pixel correlation {value:.3f} >= {copy_guard.FACE_THRESHOLD})"
                )
                break

    best_value, best_owner, best_entry = -1.0, None, None
    for match in matches:
        for entry in match.expected.references:
            value = copy_guard.correlation(frame_fingerprint, entry.fingerprint)
            if value > best_value:
                best_value, best_owner, best_entry = value, match, entry
    if best_entry is None or best_value < copy_guard.FRAME_THRESHOLD:
        return ""
    detail = (
        f"frame copies reference {best_entry.sha256[:12]} "
        f"(pixel correlation {best_value:.3f} >= {copy_guard.FRAME_THRESHOLD})"
    )
    if best_owner is not None and best_owner.verdict in (Verdict.ON_MODEL, Verdict.DRIFTED):
        best_owner.verdict = Verdict.COPY
        best_owner.details.append(detail)
    return detail


def frame_verdict(matches: list[CharacterMatch], faces_found: int, frame_copy: bool) -> Verdict:
    """Combine character verdicts; the first rule that applies wins.

    no_face (no face found while a scorable character is expected), copy,
    missing, drifted, unscored, then on_model.
    """
    verdicts = {match.verdict for match in matches}
    # A frame whose characters are all unscored stays unscored even without a
    # face: no regeneration could make it scorable.
    if faces_found == 0 and Verdict.NO_FACE in verdicts:
        return Verdict.NO_FACE
    for verdict in (Verdict.COPY, Verdict.MISSING, Verdict.DRIFTED, Verdict.UNSCORED):
        if verdict in verdicts or (verdict is Verdict.COPY and frame_copy):
            return verdict
    return Verdict.ON_MODEL
