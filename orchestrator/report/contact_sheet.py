"""The contact sheet: one PNG with the references on top and one tile per frame."""

from __future__ import annotations

import functools
import logging

from PIL import Image, ImageDraw, ImageFont

from orchestrator.report.badges import Badge
from orchestrator.report.data import FrameReport, RunReport
from orchestrator.report.images import ImageSource, decode, fit
from orchestrator.report.layout import (
    DEFAULT_COLUMNS,
    REFERENCE_LABEL_HEIGHT,
    Rect,
    SheetLayout,
    sheet_layout,
    tile_parts,
)

logger = logging.getLogger(__name__)

# A sheet contains at most this many tiles: 256 tiles of 256 px are about 25
# megapixels, near the size image viewers still open quickly. The review
# page lists every frame.
MAX_SHEET_FRAMES = 256

SHEET_BACKGROUND = "#eceff1"
TILE_BACKGROUND = "#ffffff"
IMAGE_BACKGROUND = "#263238"
TEXT_COLOUR = "#212121"
MUTED_COLOUR = "#607d8b"
BADGE_TEXT_COLOUR = "#ffffff"
MAX_LINE_CHARACTERS = 200


@functools.cache
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    # Pillow >= 10.1 bundles a scalable default font, so no font file is needed.
    return ImageFont.load_default(size=size)


def sheet_frames(report: RunReport) -> tuple[FrameReport, ...]:
    """Return the frames the sheet draws: the first MAX_SHEET_FRAMES in plan order."""
    return report.frames[:MAX_SHEET_FRAMES]


def report_layout(report: RunReport, columns: int = DEFAULT_COLUMNS) -> SheetLayout:
    """Lay out the sheet of `report`: one tile per shown frame, one slot per reference."""
    return sheet_layout(len(sheet_frames(report)), report.reference_count, columns)


def render_contact_sheet(
    report: RunReport, images: ImageSource, columns: int = DEFAULT_COLUMNS
) -> Image.Image:
    """Draw the contact sheet of `report`; frame images are read through `images`."""
    layout = report_layout(report, columns)
    sheet = Image.new("RGB", (layout.width, layout.height), SHEET_BACKGROUND)
    draw = ImageDraw.Draw(sheet)

    # 1. Title: storyboard, run and frame counts.
    _draw_title(draw, report, layout.title)

    # 2. References, in spec order, each labelled with its character.
    labelled = [
        (character.name, image) for character in report.characters for image in character.images
    ]
    if report.style_image is not None:
        labelled.append(("style", report.style_image))
    for (label, data), slot in zip(labelled, layout.references, strict=True):
        sheet.paste(fit(decode(data), slot.width, slot.height, IMAGE_BACKGROUND), slot.box[:2])
        label_box = Rect(slot.left, slot.bottom + 2, slot.width, REFERENCE_LABEL_HEIGHT - 2)
        _text(draw, label, label_box, 13, TEXT_COLOUR)

    # 3. Separator between header and tiles.
    if layout.tiles:
        line_y = layout.tiles[0].top - 7
        draw.line([(layout.title.left, line_y), (layout.title.right, line_y)], fill="#b0bec5")

    # 4. One tile per frame.
    for frame, tile in zip(sheet_frames(report), layout.tiles, strict=True):
        _draw_tile(sheet, draw, frame, tile, images, report.run.id)
    return sheet


def _draw_title(draw: ImageDraw.ImageDraw, report: RunReport, box: Rect) -> None:
    summary = report.summary
    _text(draw, report.run.storyboard_name, Rect(box.left, box.top, box.width, 28), 22, TEXT_COLOUR)
    counts = (
        f"run {report.run.id} | {summary.state.value} | {summary.frames} frames: "
        f"{summary.accepted} accepted ({summary.unscored} unscored), "
        f"{summary.needs_review} need review, {summary.failed} failed, {summary.pending} pending"
    )
    tiles_drawn = len(sheet_frames(report))
    if tiles_drawn < len(report.frames):
        counts += f" | sheet shows the first {tiles_drawn}"
    _text(draw, counts, Rect(box.left, box.top + 32, box.width, 20), 14, MUTED_COLOUR)


def _draw_tile(
    sheet: Image.Image,
    draw: ImageDraw.ImageDraw,
    frame: FrameReport,
    tile: Rect,
    images: ImageSource,
    run_id: str,
) -> None:
    parts = tile_parts(tile)
    row = frame.frame
    draw.rectangle(tile.last_pixel_box, fill=TILE_BACKGROUND)

    image = images.image(frame.image_key, run_id) if frame.image_key else None
    if image is not None:
        fitted = fit(image, parts.image.width, parts.image.height, IMAGE_BACKGROUND)
        sheet.paste(fitted, parts.image.box[:2])
    else:
        draw.rectangle(parts.image.last_pixel_box, fill=IMAGE_BACKGROUND)
        middle = parts.image.top + parts.image.height // 2 - 10
        placeholder = Rect(parts.image.left + 8, middle, parts.image.width - 16, 20)
        _text(draw, f"no image ({frame.badge.label})", placeholder, 15, "#cfd8dc", align="centre")

    scene = row.scene_id
    if row.variant:
        scene += f"  variant {row.variant}"
    if row.edit_step:
        scene += f"  edit {row.edit_step}"
    _text(draw, scene, parts.scene_line, 15, TEXT_COLOUR)
    characters = ", ".join(row.characters) if row.characters else "no characters"
    _text(draw, characters, parts.characters_line, 13, MUTED_COLOUR)
    attempts = len(frame.attempts)
    attempts_text = f"{attempts} attempt{'s' if attempts != 1 else ''}"
    _text(draw, attempts_text, parts.attempts_line, 13, MUTED_COLOUR, align="right")
    _draw_badge(draw, frame.badge, parts.badge)
    score = f"score {frame.score:.3f}" if frame.score is not None else "score -"
    _text(draw, score, parts.score_line, 13, MUTED_COLOUR)


def _draw_badge(draw: ImageDraw.ImageDraw, badge: Badge, box: Rect) -> None:
    draw.rounded_rectangle(box.last_pixel_box, radius=4, fill=badge.colour)
    label_box = Rect(box.left, box.top + 2, box.width, box.height - 2)
    _text(draw, badge.label, label_box, 13, BADGE_TEXT_COLOUR, align="centre")


def _text(
    draw: ImageDraw.ImageDraw,
    text: str,
    box: Rect,
    size: int,
    colour: str,
    *,
    align: str = "left",
) -> None:
    """Draw one line of text inside `box`, cut with an ellipsis where it is too wide."""
    font = _font(size)
    # No tile line fits MAX_LINE_CHARACTERS, so cutting first bounds the fitting loop.
    line = " ".join(text.split())[:MAX_LINE_CHARACTERS]
    if draw.textlength(line, font=font) > box.width:
        while line and draw.textlength(line + "...", font=font) > box.width:
            line = line[:-1]
        line += "..."
    spare = max(0, box.width - round(draw.textlength(line, font=font)))
    left = box.left + {"left": 0, "centre": spare // 2, "right": spare}[align]
    draw.text((left, box.top), line, font=font, fill=colour)
