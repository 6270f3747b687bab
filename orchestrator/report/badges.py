"""The status shown on a frame or attempt badge, with its label and colour.

The contact sheet and the review page share this table, so a status has the
same colour in both.
"""

from __future__ import annotations

from dataclasses import dataclass

from schemas.catalog import AssetRow, AttemptRow, FrameRow
from schemas.records import AttemptState, FrameState, Verdict


@dataclass(frozen=True)
class Badge:
    """A status key (a verdict, frame state or attempt state), its label and its colour."""

    key: str
    label: str
    # Background colour as #rrggbb; badge text is white on every one of them.
    colour: str


_BADGES = {
    badge.key: badge
    for badge in (
        Badge(Verdict.ON_MODEL.value, "on model", "#2e7d32"),
        Badge(Verdict.UNSCORED.value, "unscored", "#757575"),
        Badge(FrameState.NEEDS_REVIEW.value, "needs review", "#e65100"),
        Badge(Verdict.DRIFTED.value, "drifted", "#c62828"),
        Badge(Verdict.NO_FACE.value, "no face", "#c62828"),
        Badge(Verdict.MISSING.value, "missing", "#c62828"),
        Badge(Verdict.COPY.value, "copy", "#6a1b9a"),
        Badge(FrameState.FAILED.value, "failed", "#7f0000"),
        Badge(FrameState.MODERATED.value, "moderated", "#7f0000"),
        Badge(FrameState.CANCELLED.value, "cancelled", "#546e7a"),
        Badge(FrameState.PENDING.value, "pending", "#78909c"),
        Badge(FrameState.RUNNING.value, "running", "#1565c0"),
        Badge(AttemptState.ABANDONED.value, "abandoned", "#546e7a"),
        # An accepted frame whose asset row is missing; the catalog never writes
        # one, but a report must still draw it.
        Badge(FrameState.ACCEPTED.value, "accepted", "#2e7d32"),
    )
}

ALL_BADGES: tuple[Badge, ...] = tuple(_BADGES.values())


def badge(key: str) -> Badge:
    """Return the badge of a status key; raise KeyError naming the valid keys if unknown."""
    try:
        return _BADGES[key]
    except KeyError:
        valid = ", ".join(_BADGES)
        raise KeyError(f"badge status {key!r} is unknown; valid statuses are: {valid}") from None


def frame_badge(frame: FrameRow, asset: AssetRow | None) -> Badge:
    """Return the badge of a frame: its asset's verdict once accepted, else its state."""
    if frame.state is FrameState.ACCEPTED and asset is not None:
        return badge(asset.verdict.value)
    return badge(frame.state.value)


def attempt_badge(attempt: AttemptRow) -> Badge:
    """Return the badge of one attempt: its verdict once scored, else its state."""
    if attempt.state is AttemptState.DONE:
        return badge((attempt.verdict or Verdict.UNSCORED).value)
    if attempt.state is AttemptState.RUNNING:
        return badge(FrameState.RUNNING.value)
    return badge(attempt.state.value)
