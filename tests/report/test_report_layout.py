"""Contact sheet geometry: tile and reference positions, without drawing anything."""

from __future__ import annotations

import pytest

from orchestrator.report import sheet_layout, tile_parts
from orchestrator.report.layout import GAP, MARGIN, REFERENCE_SIDE, TILE_HEIGHT, TILE_WIDTH


def test_layout_places_tiles_row_major() -> None:
    layout = sheet_layout(frame_count=7, reference_count=2, columns=3)

    assert len(layout.tiles) == 7
    first = layout.tiles[0]
    for index, tile in enumerate(layout.tiles):
        row, column = divmod(index, 3)
        assert tile.left == MARGIN + column * (TILE_WIDTH + GAP)
        assert tile.top == first.top + row * (TILE_HEIGHT + GAP)
        assert (tile.width, tile.height) == (TILE_WIDTH, TILE_HEIGHT)
    assert layout.width == 2 * MARGIN + 3 * TILE_WIDTH + 2 * GAP
    assert layout.height == layout.tiles[-1].bottom + MARGIN


def test_layout_tiles_do_not_overlap() -> None:
    layout = sheet_layout(frame_count=10, reference_count=5, columns=4)
    rects = [*layout.references, *layout.tiles]

    for index, first in enumerate(rects):
        assert first.left >= 0
        assert first.top >= 0
        assert first.right <= layout.width
        assert first.bottom <= layout.height
        for second in rects[index + 1 :]:
            apart = (
                first.right <= second.left
                or second.right <= first.left
                or first.bottom <= second.top
                or second.bottom <= first.top
            )
            assert apart, (first, second)


def test_layout_wraps_references_into_rows() -> None:
    one_column = sheet_layout(frame_count=1, reference_count=3, columns=1)

    # One 256 px column holds two 112 px references per row.
    assert [r.left for r in one_column.references] == [
        MARGIN,
        MARGIN + REFERENCE_SIDE + GAP,
        MARGIN,
    ]
    assert one_column.references[2].top > one_column.references[0].bottom
    assert one_column.tiles[0].top > one_column.references[2].bottom


def test_layout_without_frames_has_header_only() -> None:
    layout = sheet_layout(frame_count=0, reference_count=1)

    assert layout.tiles == ()
    assert layout.height > layout.references[0].bottom


@pytest.mark.parametrize("columns", [0, -1, 33])
def test_layout_rejects_invalid_columns(columns: int) -> None:
    with pytest.raises(ValueError, match="columns must be an integer from 1 to 32"):
        sheet_layout(frame_count=3, reference_count=0, columns=columns)


def test_tile_parts_stay_inside_tile() -> None:
    tile = sheet_layout(frame_count=1, reference_count=0).tiles[0]
    parts = tile_parts(tile)

    for part in (
        parts.image,
        parts.scene_line,
        parts.characters_line,
        parts.attempts_line,
        parts.badge,
        parts.score_line,
    ):
        assert part.left >= tile.left
        assert part.top >= tile.top
        assert part.right <= tile.right
        assert part.bottom <= tile.bottom
    assert parts.image.bottom <= parts.scene_line.top
