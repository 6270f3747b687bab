"""The served review page: the route, and its buttons posting ratings from a browser.

The rating endpoint here is a stand-in that records what the page sends;
tests/report/test_service_review.py runs the same clicks against the real
service.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from chromium_cdp import Chromium, find_chromium
from conftest import ReportRun
from fastapi import FastAPI, Header, HTTPException
from fastapi.testclient import TestClient
from live_server import serve

from orchestrator.report.routes import report_router

CHROMIUM = find_chromium()
NO_CHROMIUM = "chromium is not installed; `apt-get install -y chromium` (.ci/run installs it)"
TOKEN = "report-test-token"


def report_app(report_run: ReportRun, recorded: list[dict[str, Any]] | None = None) -> FastAPI:
    app = FastAPI()
    app.include_router(report_router(lambda: report_run.backends))
    if recorded is not None:

        @app.post("/v1/assets/{asset_id}/rating")
        def rate(
            asset_id: str, body: dict[str, Any], authorization: str | None = Header(None)
        ) -> dict[str, Any]:
            if authorization != f"Bearer {TOKEN}":
                raise HTTPException(status_code=401, detail="missing or invalid token")
            recorded.append({"asset_id": asset_id, "body": body})
            return {"asset_id": asset_id, "rating": body["rating"]}

    return app


def test_route_serves_page_with_buttons(report_run: ReportRun) -> None:
    client = TestClient(report_app(report_run))
    assets = report_run.backends.catalog.list_assets(run_id=report_run.run_id)

    response = client.get(f"/runs/{report_run.run_id}/report")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert '<body data-api-base="">' in response.text
    assert response.text.count('data-rating="approve"') == len(assets)


def test_route_uses_mount_prefix_as_api_base(report_run: ReportRun) -> None:
    client = TestClient(report_app(report_run), root_path="/onmodel")

    response = client.get(f"/runs/{report_run.run_id}/report")

    assert response.status_code == 200
    assert '<body data-api-base="/onmodel">' in response.text


def test_route_unknown_run_is_404(report_run: ReportRun) -> None:
    client = TestClient(report_app(report_run))

    response = client.get(f"/runs/{'f' * 32}/report")

    assert response.status_code == 404
    assert f"run {'f' * 32!r} not found" in response.json()["detail"]


@pytest.mark.parametrize("length", [4, 8, 31])
def test_route_rejects_run_id_prefix(report_run: ReportRun, length: int) -> None:
    client = TestClient(report_app(report_run))
    prefix = report_run.run_id[:length]

    response = client.get(f"/runs/{prefix}/report")

    assert response.status_code == 404
    assert "needs the full 32-character run id" in response.json()["detail"]


@pytest.mark.skipif(CHROMIUM is None, reason=NO_CHROMIUM)
def test_approve_button_posts_rating(report_run: ReportRun, tmp_path: Path) -> None:
    assert CHROMIUM is not None
    recorded: list[dict[str, Any]] = []
    first = report_run.backends.catalog.list_frames(report_run.run_id)[0]
    box = f'.review[data-asset-id="{first.asset_id}"]'

    with serve(report_app(report_run, recorded)) as base, Chromium(CHROMIUM, tmp_path) as browser:
        page = browser.open_page(f"{base}/runs/{report_run.run_id}/report")
        page.evaluate(
            "(() => { const input = document.getElementById('api-token');"
            f" input.value = {TOKEN!r}; input.dispatchEvent(new Event('input')); }})()"
        )
        page.evaluate(f"document.querySelector('{box} button.approve').click()")
        status = page.wait_for_text(f"{box} .review-status")
        mark = page.evaluate(f"document.querySelector('{box}').dataset.mark")
        errors = page.errors()

    assert status == "approved"
    assert mark == "approve"
    assert recorded == [{"asset_id": first.asset_id, "body": {"rating": "approve"}}]
    assert errors == []


@pytest.mark.skipif(CHROMIUM is None, reason=NO_CHROMIUM)
def test_rating_without_token_asks_for_it(report_run: ReportRun, tmp_path: Path) -> None:
    assert CHROMIUM is not None
    recorded: list[dict[str, Any]] = []
    first = report_run.backends.catalog.list_frames(report_run.run_id)[0]
    box = f'.review[data-asset-id="{first.asset_id}"]'

    with serve(report_app(report_run, recorded)) as base, Chromium(CHROMIUM, tmp_path) as browser:
        page = browser.open_page(f"{base}/runs/{report_run.run_id}/report")
        page.evaluate(f"document.querySelector('{box} button.reject').click()")
        status = page.wait_for_text(f"{box} .review-status")
        mark = page.evaluate(f"document.querySelector('{box}').dataset.mark")

    assert status == "not saved: HTTP 401 (enter the API token at the top)"
    assert mark is None
    assert recorded == []


def test_route_shows_current_rating(report_run: ReportRun) -> None:
    catalog = report_run.backends.catalog
    # The last kept frame: the browser tests of the service rate earlier ones.
    asset = catalog.get_asset(
        [f for f in catalog.list_frames(report_run.run_id) if f.asset_id][-1].asset_id or ""
    )
    catalog.add_review_mark(asset.id, "rating", "approve", "first reviewer")
    catalog.add_review_mark(asset.id, "rating", "reject", "second reviewer")
    client = TestClient(report_app(report_run))

    response = client.get(f"/runs/{report_run.run_id}/report")

    assert response.status_code == 200
    assert f'data-asset-id="{asset.id}" data-mark="reject">' in response.text
    assert re.findall(r'<div class="review" data-asset-id="(\w+)" data-mark=', response.text) == [
        asset.id
    ]
    assert 'role="status">rejected</span>' in response.text
