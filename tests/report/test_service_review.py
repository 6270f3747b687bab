"""The review page served by the real HTTP service: approve in a browser records the mark.

The service's FastAPI app runs under uvicorn on 127.0.0.1, without Ray
Serve, over the catalog of the shared report run.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from chromium_cdp import Chromium, Page, find_chromium
from conftest import ReportRun
from fastapi.testclient import TestClient
from live_server import serve
from pydantic import SecretStr

from storage.reviews import MarkKind

CHROMIUM = find_chromium()
SERVICE_MISSING = importlib.util.find_spec("orchestrator.service") is None
TOKEN = "service-review-token-0123456789"

pytestmark = [
    pytest.mark.skipif(SERVICE_MISSING, reason="orchestrator.service is not in this checkout"),
    pytest.mark.skipif(
        CHROMIUM is None,
        reason="chromium is not installed; `apt-get install -y chromium` (.ci/run installs it)",
    ),
]


class NoLauncher:
    """The review page starts no runs; a call here would be a bug."""

    def start(self, run_id: str) -> None:
        raise AssertionError(f"the review page must not start runs (asked for {run_id})")


def service_app(report_run: ReportRun) -> object:
    from orchestrator.service import ServiceState, create_app
    from orchestrator.service.auth import TokenAuth

    backends = report_run.backends
    state = ServiceState(
        settings=backends.settings,
        catalog=backends.catalog,
        store=backends.store,
        launcher=NoLauncher(),
        auth=TokenAuth(SecretStr(TOKEN)),
    )
    return create_app(state)


def enter_token(page: Page) -> None:
    page.evaluate(
        "(() => { const input = document.getElementById('api-token');"
        f" input.value = {TOKEN!r}; input.dispatchEvent(new Event('input')); }})()"
    )


def test_service_serves_page_without_token(report_run: ReportRun) -> None:
    client = TestClient(service_app(report_run))  # type: ignore[arg-type]

    page = client.get(f"/runs/{report_run.run_id}/report")
    api = client.get(f"/v1/runs/{report_run.run_id}")

    assert page.status_code == 200
    assert '<body data-api-base="">' in page.text
    assert api.status_code == 401


def test_approve_in_browser_records_mark(report_run: ReportRun, tmp_path: Path) -> None:
    assert CHROMIUM is not None
    catalog = report_run.backends.catalog
    frame = catalog.list_frames(report_run.run_id)[1]
    assert frame.asset_id is not None
    box = f'.review[data-asset-id="{frame.asset_id}"]'
    url_path = f"/runs/{report_run.run_id}/report"
    # Other tests share this run's catalog, so only marks added here count.
    before = len(catalog.list_review_marks(frame.asset_id))

    with serve(service_app(report_run)) as base, Chromium(CHROMIUM, tmp_path) as browser:
        page = browser.open_page(base + url_path)
        enter_token(page)
        page.evaluate(f"document.querySelector('{box} button.approve').click()")
        status = page.wait_for_text(f"{box} .review-status")
        errors = page.errors()
        reloaded = browser.open_page(base + url_path)
        mark_after_reload = reloaded.evaluate(f"document.querySelector('{box}').dataset.mark")
        token_after_reload = reloaded.evaluate("document.getElementById('api-token').value")

    added = catalog.list_review_marks(frame.asset_id)[before:]
    assert status == "approved"
    assert errors == []
    assert [(m.kind, m.value) for m in added] == [(MarkKind.RATING, "approve")]
    assert mark_after_reload == "approve"
    # Session storage belongs to the tab, so a new tab starts without the token.
    assert token_after_reload == ""


def test_reject_without_token_records_nothing(report_run: ReportRun, tmp_path: Path) -> None:
    assert CHROMIUM is not None
    catalog = report_run.backends.catalog
    frame = catalog.list_frames(report_run.run_id)[2]
    assert frame.asset_id is not None
    box = f'.review[data-asset-id="{frame.asset_id}"]'
    before = catalog.list_review_marks(frame.asset_id)

    with serve(service_app(report_run)) as base, Chromium(CHROMIUM, tmp_path) as browser:
        page = browser.open_page(f"{base}/runs/{report_run.run_id}/report")
        page.evaluate(f"document.querySelector('{box} button.reject').click()")
        status = page.wait_for_text(f"{box} .review-status")

    assert status == "not saved: HTTP 401 (enter the API token at the top)"
    assert catalog.list_review_marks(frame.asset_id) == before
