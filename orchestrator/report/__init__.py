"""Run reports: a contact sheet PNG and a self-contained HTML review page.

`write_report` writes both files for a run. The pieces are public for the
HTTP service and for tests: `load_report` reads a run, `render_contact_sheet`
and `render_page` draw it, and `sheet_layout` gives the sheet's geometry.
"""

from orchestrator.report.badges import Badge, attempt_badge, badge, frame_badge
from orchestrator.report.contact_sheet import (
    MAX_SHEET_FRAMES,
    render_contact_sheet,
    report_layout,
    sheet_frames,
)
from orchestrator.report.data import CharacterReferences, FrameReport, RunReport, load_report
from orchestrator.report.images import ImageSource
from orchestrator.report.layout import (
    DEFAULT_COLUMNS,
    Rect,
    SheetLayout,
    TileParts,
    sheet_layout,
    tile_parts,
)
from orchestrator.report.page import render_page
from orchestrator.report.writer import (
    CONTACT_SHEET_NAME,
    PAGE_NAME,
    ReportFiles,
    default_report_dir,
    write_report,
)

__all__ = [
    "CONTACT_SHEET_NAME",
    "DEFAULT_COLUMNS",
    "MAX_SHEET_FRAMES",
    "PAGE_NAME",
    "Badge",
    "CharacterReferences",
    "FrameReport",
    "ImageSource",
    "Rect",
    "ReportFiles",
    "RunReport",
    "SheetLayout",
    "TileParts",
    "attempt_badge",
    "badge",
    "default_report_dir",
    "frame_badge",
    "load_report",
    "render_contact_sheet",
    "render_page",
    "report_layout",
    "sheet_frames",
    "sheet_layout",
    "tile_parts",
    "write_report",
]
