"""Write a run's contact sheet and review page into one folder."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from orchestrator.report.contact_sheet import render_contact_sheet
from orchestrator.report.data import load_report
from orchestrator.report.images import ImageSource
from orchestrator.report.layout import DEFAULT_COLUMNS
from orchestrator.report.page import render_page
from orchestrator.settings import Settings
from storage.catalog import Catalog
from storage.objects import ObjectStore

logger = logging.getLogger(__name__)

CONTACT_SHEET_NAME = "contact_sheet.png"
PAGE_NAME = "report.html"


@dataclass(frozen=True)
class ReportFiles:
    """Paths of the two files of a written report."""

    run_id: str
    contact_sheet: Path
    page: Path


def default_report_dir(settings: Settings, run_id: str) -> Path:
    """Return `<home>/reports/<run id>`, the default folder of a run's report."""
    return (settings.home / "reports" / run_id).resolve()


def write_report(
    catalog: Catalog,
    store: ObjectStore,
    run_id: str,
    out_dir: Path,
    *,
    columns: int = DEFAULT_COLUMNS,
) -> ReportFiles:
    """Write `contact_sheet.png` and `report.html` of a run into `out_dir` (created if missing).

    `run_id` may be a unique prefix. Each file is written to a temporary
    name and renamed, so a reader never sees half a file. Raises
    NotFoundError for an unknown run and OSError when `out_dir` is not writable.
    """
    report = load_report(catalog, store, run_id)
    images = ImageSource(store)
    out_dir.mkdir(parents=True, exist_ok=True)

    sheet = render_contact_sheet(report, images, columns)
    sheet_path = out_dir / CONTACT_SHEET_NAME
    _replace(sheet_path, lambda path: sheet.save(path, format="PNG"))

    page = render_page(report, images)
    page_path = out_dir / PAGE_NAME
    _replace(page_path, lambda path: path.write_text(page, encoding="utf-8"))

    logger.info(
        "run %s: report written: contact sheet %s (%dx%d), page %s (%d bytes)",
        report.run.id,
        sheet_path,
        *sheet.size,
        page_path,
        len(page.encode()),
    )
    return ReportFiles(run_id=report.run.id, contact_sheet=sheet_path, page=page_path)


def _replace(target: Path, write: Callable[[Path], object]) -> None:
    # A plain file name (not mkstemp) so the file gets the umask's usual mode, not 0600.
    temporary = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        write(temporary)
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
