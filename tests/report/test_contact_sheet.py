"""The contact sheet of a real tiny-backend run: one tile per frame, in plan order."""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path

from conftest import ReportRun
from PIL import Image, ImageChops

from orchestrator.report import (
    MAX_SHEET_FRAMES,
    ImageSource,
    load_report,
    render_contact_sheet,
    report_layout,
    sheet_layout,
    tile_parts,
    write_report,
)
from orchestrator.report.contact_sheet import IMAGE_BACKGROUND
from orchestrator.report.images import fit
from schemas.records import FrameState


def hex_colour(value: str) -> tuple[int, int, int]:
    return (int(value[1:3], 16), int(value[3:5], 16), int(value[5:7], 16))


def test_sheet_has_one_tile_per_frame(report_run: ReportRun, tmp_path: Path) -> None:
    catalog, store = report_run.backends.catalog, report_run.backends.store
    files = write_report(catalog, store, report_run.run_id, tmp_path)
    report = load_report(catalog, store, report_run.run_id)
    frames = catalog.list_frames(report_run.run_id)
    layout = report_layout(report)

    assert len(frames) == report_run.summary.frames == 7
    assert len(layout.tiles) == len(frames)
    assert layout == sheet_layout(len(frames), reference_count=4, columns=4)
    with Image.open(files.contact_sheet) as sheet:
        assert sheet.format == "PNG"
        assert sheet.size == (layout.width, layout.height)
    # Row-major: frame i in row i // 4 and column i % 4.
    for index, tile in enumerate(layout.tiles):
        assert tile.left == layout.tiles[index % 4].left
        assert tile.top == layout.tiles[(index // 4) * 4].top


def test_tiles_show_frame_images_in_plan_order(report_run: ReportRun) -> None:
    store = report_run.backends.store
    report = load_report(report_run.backends.catalog, store, report_run.run_id)
    sheet = render_contact_sheet(report, ImageSource(store))
    layout = report_layout(report)

    for frame, tile in zip(report.frames, layout.tiles, strict=True):
        area = tile_parts(tile).image
        drawn = sheet.crop(area.box)
        if frame.asset is None:
            assert frame.frame.state is FrameState.FAILED
            assert drawn.getpixel((4, 4)) == hex_colour(IMAGE_BACKGROUND)
            continue
        original = Image.open(io.BytesIO(store.get(frame.asset.object_key))).convert("RGB")
        expected = fit(original, area.width, area.height, IMAGE_BACKGROUND)
        assert ImageChops.difference(drawn, expected).getbbox() is None, frame.frame.scene_id


def test_tile_badges_use_status_colours(report_run: ReportRun) -> None:
    report = load_report(report_run.backends.catalog, report_run.backends.store, report_run.run_id)
    sheet = render_contact_sheet(report, ImageSource(report_run.backends.store))
    expected = {"on_model": "#2e7d32", "needs_review": "#e65100", "failed": "#7f0000"}

    seen = set()
    for frame, tile in zip(report.frames, report_layout(report).tiles, strict=True):
        badge = tile_parts(tile).badge
        assert sheet.getpixel((badge.left + 4, badge.top + 4)) == hex_colour(frame.badge.colour)
        if frame.badge.key in expected:
            assert frame.badge.colour == expected[frame.badge.key]
        seen.add(frame.badge.key)
    assert seen == set(expected)


def test_sheet_header_shows_every_reference(report_run: ReportRun) -> None:
    report = load_report(report_run.backends.catalog, report_run.backends.store, report_run.run_id)

    # Ana has two references, Leo one, plus the style reference.
    assert [len(c.images) for c in report.characters] == [2, 1]
    assert report.style_image is not None
    assert len(report_layout(report).references) == 4


def test_sheet_rendering_is_deterministic(report_run: ReportRun) -> None:
    store = report_run.backends.store
    report = load_report(report_run.backends.catalog, store, report_run.run_id)

    first = render_contact_sheet(report, ImageSource(store), columns=3)
    second = render_contact_sheet(report, ImageSource(store), columns=3)

    assert first.size == (report_layout(report, 3).width, report_layout(report, 3).height)
    assert first.tobytes() == second.tobytes()


def test_sheet_of_large_run_keeps_first_frames(report_run: ReportRun) -> None:
    report = load_report(report_run.backends.catalog, report_run.backends.store, report_run.run_id)
    large = dataclasses.replace(report, frames=report.frames * 40)

    assert len(large.frames) == 280
    assert len(report_layout(large).tiles) == MAX_SHEET_FRAMES
