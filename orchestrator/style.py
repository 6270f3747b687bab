"""Style similarity: how close a frame is to the storyboard's style reference.

Only the `embedding` scorer can measure it. Its backend embeds whole
images (DINOv2, CLIP), so the frame is scored against the style image as if
the style were one more character, under a key that no character id can
take. Face scorers have nothing to compare in a style image, so for them the
similarity is recorded as not measured.

The style score never changes a frame's identity verdict: it is asked for in
a separate scorer call and only added to the frame's FrameScore.
"""

from __future__ import annotations

import logging
from typing import Any

from schemas.records import FrameScore, ReferenceImage
from schemas.storyboard import ScorerName

logger = logging.getLogger(__name__)

# Key of the style image in the scorer call. Character ids match
# ^[a-z0-9_-]+$, so a key with a colon cannot collide with one.
STYLE_KEY = "style:reference"
# Seconds to wait for the style score once the identity score has arrived.
# Both calls go to the same scorer actor, so the style call is next in its queue.
STYLE_WAIT_S = 60.0


def submit_style_score(
    scorer: Any, scorer_name: str, frame_png: bytes, style: ReferenceImage | None
) -> Any | None:
    """Ask `scorer` for the frame's similarity to the style image; return the Ray ref.

    Returns None when there is no style image or the scorer cannot measure it.
    """
    if style is None or scorer_name != ScorerName.EMBEDDING:
        return None
    # Threshold 0: the verdict of this call is never used, only its similarity.
    return scorer.score.remote(frame_png, {STYLE_KEY: [style]}, {STYLE_KEY: 0.0})


def record_style(
    score: FrameScore,
    style_ref: Any | None,
    scorer_name: str,
    style: ReferenceImage | None,
) -> FrameScore:
    """Return `score` with the style similarity set and a note on it in `detail`.

    Without a style image the score is returned unchanged. A style call that
    failed leaves the similarity unmeasured; it never fails the frame.
    """
    if style is None:
        return score
    similarity: float | None = None
    if style_ref is None:
        reason = (
            "frame not scored"
            if scorer_name == ScorerName.EMBEDDING
            else f"scorer {scorer_name} compares faces; the embedding scorer measures style"
        )
    else:
        similarity, reason = _fetch_similarity(style_ref)
    note = (
        f"style similarity {similarity:.3f}"
        if similarity is not None
        else f"style similarity not measured ({reason})"
    )
    detail = f"{score.detail} | {note}" if score.detail else note
    return score.model_copy(update={"style_similarity": similarity, "detail": detail})


def _fetch_similarity(style_ref: Any) -> tuple[float | None, str]:
    import ray

    try:
        result: FrameScore = ray.get(style_ref, timeout=STYLE_WAIT_S)
    except (ray.exceptions.RayError, TimeoutError) as exc:
        logger.warning("style similarity failed: %s", str(exc).splitlines()[0])
        return None, f"scorer call failed: {type(exc).__name__}"
    for character in result.characters:
        if character.character_id == STYLE_KEY and character.score is not None:
            return character.score, ""
    return None, result.detail or "the scorer returned no score"
