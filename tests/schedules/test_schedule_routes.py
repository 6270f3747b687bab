"""`/v1/schedules` on the FastAPI app, with a real catalog and object folder."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from fastapi import Depends
from fastapi.testclient import TestClient
from PIL import Image

from orchestrator.service import schedules_routes
from orchestrator.service.app import create_app
from orchestrator.service.state import ServiceState
from orchestrator.settings import Settings

SPEC = {
    "name": "api-schedule",
    "characters": [{"id": "ana", "references": ["refs/ana.png"]}],
    "defaults": {"width": 16, "height": 16, "steps": 1},
    "scenes": [{"id": "s1", "prompt": "Ana at the counter", "characters": ["ana"]}],
}


class UnusedLauncher:
    def start(self, run_id: str) -> None:
        raise AssertionError(f"schedule routes must not start runs, got {run_id}")


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    state = ServiceState.open(Settings(home=tmp_path / "home"), UnusedLauncher())
    app = create_app(state)
    app.include_router(schedules_routes.router, dependencies=[Depends(state.auth)])
    yield TestClient(app, raise_server_exceptions=False)
    state.catalog.close()


def upload(spec: dict[str, object] = SPEC) -> dict[str, object]:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), (10, 200, 30)).save(buffer, format="PNG")
    return {
        "data": {"spec": yaml.safe_dump(spec)},
        "files": [("files", ("refs/ana.png", buffer.getvalue(), "image/png"))],
    }


def create(client: TestClient, **params: str) -> dict[str, object]:
    query = {"cron": "30 2 * * *", "timezone": "Europe/Berlin", **params}
    response = client.post("/v1/schedules", params=query, **upload())  # type: ignore[arg-type]
    assert response.status_code == 201, response.text
    body: dict[str, object] = response.json()
    return body


def test_create_returns_schedule_with_next_fire(client: TestClient) -> None:
    body = create(client, missed="run_once", name="nightly")

    assert body["name"] == "nightly"
    assert body["missed_policy"] == "run_once"
    assert body["overlap_policy"] == "skip"
    assert body["state"] == "active"
    assert str(body["next_fire"]).endswith(("T02:30:00+01:00", "T02:30:00+02:00"))
    assert "options" not in body


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"cron": "61 * * * *", "timezone": "UTC"}, "cron"),
        ({"cron": "0 2 * * *", "timezone": "Mars/Base"}, "timezone"),
        ({"cron": "0 2 * * *", "timezone": "UTC", "missed": "later"}, "missed"),
    ],
)
def test_create_rejects_invalid_options(
    client: TestClient, params: dict[str, str], field: str
) -> None:
    response = client.post("/v1/schedules", params=params, **upload())  # type: ignore[arg-type]

    assert response.status_code == 422
    assert response.json()["field"] == field
    assert response.json()["value"] in params.values()


def test_create_rejects_invalid_spec(client: TestClient) -> None:
    broken = {**SPEC, "scenes": [{"id": "s1", "prompt": "x {city}"}], "matrix": {"a": ["b"]}}

    response = client.post(
        "/v1/schedules",
        params={"cron": "0 2 * * *", "timezone": "UTC"},
        **upload(broken),  # type: ignore[arg-type]
    )

    assert response.status_code == 422
    assert response.json()["field"] == "scenes[0].prompt"


def test_list_get_pause_resume_delete(client: TestClient) -> None:
    schedule_id = str(create(client)["id"])

    listed = client.get("/v1/schedules").json()
    detail = client.get(f"/v1/schedules/{schedule_id[:6]}").json()
    paused = client.post(f"/v1/schedules/{schedule_id}/pause").json()
    resumed = client.post(f"/v1/schedules/{schedule_id}/resume").json()
    deleted = client.delete(f"/v1/schedules/{schedule_id}")
    missing = client.get(f"/v1/schedules/{schedule_id}")

    assert [s["id"] for s in listed] == [schedule_id]
    assert detail["fires"] == []
    assert paused["state"] == "paused"
    assert paused["next_fire"] is None
    assert resumed["state"] == "active"
    assert deleted.status_code == 204
    assert missing.status_code == 404


def test_patch_changes_options_and_validates(client: TestClient) -> None:
    schedule_id = str(create(client)["id"])

    changed = client.patch(f"/v1/schedules/{schedule_id}", json={"cron": "0 5 * * *"})
    invalid = client.patch(f"/v1/schedules/{schedule_id}", json={"timezone": "Nowhere/City"})
    unknown = client.patch(f"/v1/schedules/{schedule_id}", json={"color": "red"})

    assert changed.status_code == 200
    assert changed.json()["cron"] == "0 5 * * *"
    assert invalid.status_code == 422
    assert invalid.json()["field"] == "timezone"
    assert unknown.status_code == 422


def test_put_spec_stores_new_storyboard(client: TestClient) -> None:
    before = create(client)
    changed = {**SPEC, "scenes": [{"id": "s1", "prompt": "Ana outside", "characters": ["ana"]}]}

    response = client.put(
        f"/v1/schedules/{before['id']}/spec",
        **upload(changed),  # type: ignore[arg-type]
    )

    assert response.status_code == 200, response.text
    assert response.json()["storyboard_id"] != before["storyboard_id"]
