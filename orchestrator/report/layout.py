"""Geometry of the contact sheet: where the title, references and frame tiles go.

The layout depends only on the number of frames and references and on the
column count, so the same run always gives the same sheet, and a test can
check every tile's position without reading pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# All sizes are pixels of the output PNG.
MARGIN = 16
GAP = 12
# Frame images are fitted into a square of this side, keeping their aspect ratio.
TILE_IMAGE_SIDE = 256
# Caption under the image: scene line, characters line, badge line.
TILE_CAPTION_HEIGHT = 72
TILE_WIDTH = TILE_IMAGE_SIDE
TILE_HEIGHT = TILE_IMAGE_SIDE + TILE_CAPTION_HEIGHT
BADGE_WIDTH = 108
BADGE_HEIGHT = 20
# Room for "12 attempts" at the caption font size.
ATTEMPTS_WIDTH = 84
TITLE_HEIGHT = 56
REFERENCE_SIDE = 112
REFERENCE_LABEL_HEIGHT = 20
DEFAULT_COLUMNS = 4
MAX_COLUMNS = 32


@dataclass(frozen=True)
class Rect:
    """An axis-aligned rectangle in pixels; `box` is the (left, top, right, bottom) PIL form."""

    left: int
    top: int
    width: int
    height: int

    @property
    def right(self) -> int:
        return self.left + self.width

    @property
    def bottom(self) -> int:
        return self.top + self.height

    @property
    def box(self) -> tuple[int, int, int, int]:
        return (self.left, self.top, self.right, self.bottom)

    @property
    def last_pixel_box(self) -> tuple[int, int, int, int]:
        """The box with its last row and column included, as ImageDraw shapes expect."""
        return (self.left, self.top, self.right - 1, self.bottom - 1)


@dataclass(frozen=True)
class TileParts:
    """The parts of one frame tile: the image square, the three caption lines and the badge."""

    image: Rect
    scene_line: Rect
    characters_line: Rect
    # Attempt count, right-aligned on the characters line.
    attempts_line: Rect
    badge: Rect
    # Identity score, right of the badge.
    score_line: Rect


@dataclass(frozen=True)
class SheetLayout:
    """Every rectangle of one contact sheet; tiles are in row-major order."""

    width: int
    height: int
    columns: int
    title: Rect
    # Image squares of the header's reference row(s); each has a label below it.
    references: tuple[Rect, ...]
    tiles: tuple[Rect, ...]


def sheet_layout(
    frame_count: int, reference_count: int, columns: int = DEFAULT_COLUMNS
) -> SheetLayout:
    """Lay out a sheet with `frame_count` tiles in `columns` columns under the header.

    Tile i sits in row i // columns and column i % columns. References fill
    as many header rows as the sheet's width needs.
    """
    if not 1 <= columns <= MAX_COLUMNS:
        raise ValueError(f"columns must be an integer from 1 to {MAX_COLUMNS}, got {columns}")
    if frame_count < 0 or reference_count < 0:
        raise ValueError(
            f"frame_count and reference_count must be >= 0, got {frame_count} and {reference_count}"
        )

    # 1. Title band across the full inner width.
    inner_width = columns * TILE_WIDTH + (columns - 1) * GAP
    title = Rect(MARGIN, MARGIN, inner_width, TITLE_HEIGHT)

    # 2. Reference images, wrapped into rows.
    per_row = max(1, (inner_width + GAP) // (REFERENCE_SIDE + GAP))
    reference_pitch = REFERENCE_SIDE + REFERENCE_LABEL_HEIGHT + GAP
    references_top = title.bottom + GAP
    references = tuple(
        Rect(
            MARGIN + (index % per_row) * (REFERENCE_SIDE + GAP),
            references_top + (index // per_row) * reference_pitch,
            REFERENCE_SIDE,
            REFERENCE_SIDE,
        )
        for index in range(reference_count)
    )
    reference_rows = math.ceil(reference_count / per_row)

    # 3. Frame tiles below a gap that contains the separator line.
    tiles_top = references_top + reference_rows * reference_pitch + GAP
    tiles = tuple(
        Rect(
            MARGIN + (index % columns) * (TILE_WIDTH + GAP),
            tiles_top + (index // columns) * (TILE_HEIGHT + GAP),
            TILE_WIDTH,
            TILE_HEIGHT,
        )
        for index in range(frame_count)
    )
    tile_rows = math.ceil(frame_count / columns)
    tiles_height = tile_rows * (TILE_HEIGHT + GAP) - GAP if tile_rows else 0

    return SheetLayout(
        width=inner_width + 2 * MARGIN,
        height=tiles_top + tiles_height + MARGIN,
        columns=columns,
        title=title,
        references=references,
        tiles=tiles,
    )


def tile_parts(tile: Rect) -> TileParts:
    """Split a tile into its image square and caption parts."""
    image = Rect(tile.left, tile.top, TILE_IMAGE_SIDE, TILE_IMAGE_SIDE)
    padding = 8
    text_left = tile.left + padding
    text_width = tile.width - 2 * padding
    scene_line = Rect(text_left, image.bottom + 6, text_width, 20)
    characters_line = Rect(text_left, scene_line.bottom + 2, text_width - ATTEMPTS_WIDTH, 18)
    attempts_line = Rect(characters_line.right, characters_line.top, ATTEMPTS_WIDTH, 18)
    badge = Rect(text_left, characters_line.bottom + 4, BADGE_WIDTH, BADGE_HEIGHT)
    score_left = badge.right + padding
    score_line = Rect(score_left, badge.top + 2, tile.right - padding - score_left, BADGE_HEIGHT)
    return TileParts(image, scene_line, characters_line, attempts_line, badge, score_line)
