"""The review page in headless Chromium, opened from disk with file://."""

from __future__ import annotations

from pathlib import Path

import pytest
from chromium_cdp import Chromium, find_chromium
from conftest import ReportRun
from PIL import Image

from orchestrator.report import write_report

CHROMIUM = find_chromium()
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="chromium is not installed; `apt-get install -y chromium` (.ci/run installs it)",
)

IMAGES_LOADED = """
Array.from(document.images).map(image => ({
  alt: image.alt, complete: image.complete, width: image.naturalWidth
}))
"""
VISIBLE_FRAMES = """
Array.from(document.querySelectorAll('article.frame'))
  .filter(frame => frame.offsetParent !== null)
  .map(frame => frame.dataset.status)
"""


def test_page_loads_in_chromium_without_errors(report_run: ReportRun, tmp_path: Path) -> None:
    assert CHROMIUM is not None
    files = write_report(
        report_run.backends.catalog, report_run.backends.store, report_run.run_id, tmp_path
    )

    with Chromium(CHROMIUM, tmp_path / "profile") as browser:
        page = browser.open_page(files.page.as_uri())
        images = page.evaluate(IMAGES_LOADED)
        screenshot = page.screenshot(tmp_path / "page.png")
        errors = page.errors()
        dialogs = [e for e in browser.events if e.get("method") == "Page.javascriptDialogOpening"]

    assert errors == []
    assert dialogs == []
    # 3 reference thumbnails and the style, 3 edit-chain steps, and every attempt with an image.
    with_image = sum(
        1 for a in report_run.backends.catalog.list_attempts(report_run.run_id) if a.object_key
    )
    assert len(images) == 4 + 3 + with_image
    for image in images:
        assert image["complete"], image["alt"]
        assert image["width"] > 0, image["alt"]
    with Image.open(screenshot) as shot:
        assert shot.width >= 1000
        assert shot.height > 2000


def test_filter_shows_only_chosen_status(report_run: ReportRun, tmp_path: Path) -> None:
    assert CHROMIUM is not None
    files = write_report(
        report_run.backends.catalog, report_run.backends.store, report_run.run_id, tmp_path
    )

    with Chromium(CHROMIUM, tmp_path / "profile") as browser:
        page = browser.open_page(files.page.as_uri())
        everything = page.evaluate(VISIBLE_FRAMES)
        page.evaluate("document.querySelector('button[data-filter=\"failed\"]').click()")
        failed = page.evaluate(VISIBLE_FRAMES)
        scenes = page.evaluate(
            "Array.from(document.querySelectorAll('section.scene'))"
            ".filter(s => !s.hidden).map(s => s.id)"
        )
        pressed = page.evaluate(
            "document.querySelector('button[aria-pressed=\"true\"]').dataset.filter"
        )
        page.evaluate("document.querySelector('button[data-filter=\"all\"]').click()")
        restored = page.evaluate(VISIBLE_FRAMES)
        errors = page.errors()

    assert len(everything) == 7
    assert failed == ["failed"]
    assert scenes == ["scene-s04-broken"]
    assert pressed == "failed"
    assert restored == everything
    assert errors == []
