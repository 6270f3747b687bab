"""The consistency policy: which frames are accepted, retried or sent to review."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from schemas.records import FrameScore, FrameState, Verdict
from schemas.storyboard import Storyboard

# Verdicts that a new attempt may fix.
RETRYABLE = frozenset({Verdict.DRIFTED, Verdict.NO_FACE, Verdict.MISSING, Verdict.COPY})


class Action(StrEnum):
    ACCEPT = "accept"
    RETRY = "retry"
    REVIEW = "review"


@dataclass(frozen=True)
class Decision:
    action: Action
    # The frame's final state when the action ends it.
    state: FrameState | None = None


def thresholds_for(
    storyboard: Storyboard, characters: list[str], scorer_default: float | None = None
) -> dict[str, float]:
    """Return the thresholds the storyboard sets for these characters.

    A character's own threshold wins over the storyboard's. Characters with
    neither are left out, so the scorer applies its backend's default (kept
    in `actors.identity`). Pass `scorer_default` to list every character.
    """
    base = storyboard.consistency.threshold
    if base is None:
        base = scorer_default
    result = {}
    for character_id in characters:
        own = storyboard.character(character_id).threshold
        chosen = own if own is not None else base
        if chosen is not None:
            result[character_id] = chosen
    return result


def decide(verdict: Verdict, attempt: int, max_attempts: int) -> Decision:
    """Decide what follows a scored attempt.

    Unscored frames are accepted because another attempt cannot make them
    scorable. They keep the verdict `unscored`, so reports never show them
    as checked frames.
    """
    if verdict in (Verdict.ON_MODEL, Verdict.UNSCORED):
        return Decision(Action.ACCEPT, FrameState.ACCEPTED)
    if verdict in RETRYABLE and attempt < max_attempts:
        return Decision(Action.RETRY)
    return Decision(Action.REVIEW, FrameState.NEEDS_REVIEW)


def rank(score: FrameScore) -> tuple[int, float]:
    """Sort key for the best attempt: copies last, then by the worst character's score."""
    order = {
        Verdict.ON_MODEL: 4,
        Verdict.DRIFTED: 3,
        Verdict.MISSING: 2,
        Verdict.NO_FACE: 1,
        Verdict.UNSCORED: 1,
        Verdict.COPY: 0,
    }
    value = score.score
    return order[score.verdict], value if value is not None else -1.0
