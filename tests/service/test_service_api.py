"""The HTTP API over real catalogs (SQLite, PostgreSQL) and object stores (folder, S3 server)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from service_helpers import TOKEN, MakeClient, SeededAsset, seed_assets

from orchestrator.service.state import ServiceState
from schemas.records import FrameState, RunState, Verdict

Api = tuple[TestClient, ServiceState, list[SeededAsset]]

HOSTILE_TEXT = [
    "'",
    '"',
    "' OR '1'='1",
    "1' OR '1'='1' --",
    "'; DROP TABLE assets; --",
    "; DROP TABLE assets",
    "%",
    "_",
    "\\",
    "%00",
    "\x00",
    "ana' UNION SELECT id FROM runs --",
    "x" * 5000,
]
HOSTILE_NUMBERS = ["' OR '1'='1", "1; DROP TABLE assets", "1e400", "nan", "-inf", "0x10", ""]
FILTER_PARAMS = [
    "run",
    "storyboard",
    "scene",
    "character",
    "verdict",
    "backend",
    "model",
    "tag",
    "rating",
    "q",
    "since",
    "until",
]
NUMBER_PARAMS = ["min_score", "max_score", "seed", "limit"]


@pytest.fixture
def api(make_client: MakeClient, database_url: str) -> Api:
    """An API over a seeded catalog of its own, for tests that write."""
    client, state = make_client(database_url=database_url)
    return client, state, seed_assets(state.catalog, state.store)


@pytest.fixture(scope="module")
def shared_api(module_make_client: MakeClient, module_database_url: str) -> Api:
    """An API over one seeded catalog per database, for the read-only tests."""
    client, state = module_make_client(database_url=module_database_url)
    return client, state, seed_assets(state.catalog, state.store)


def asset_ids(response_json: dict[str, object]) -> set[str]:
    items = response_json["items"]
    assert isinstance(items, list)
    return {item["id"] for item in items}


def test_health_needs_no_token(make_client: MakeClient) -> None:
    client, _ = make_client(api_token=TOKEN)

    response = client.get("/v1/health")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_list_assets_with_filters(shared_api: Api) -> None:
    client, _, seeded = shared_api

    everything = client.get("/v1/assets")
    by_scene = client.get("/v1/assets", params={"scene": "s1"})
    by_character = client.get("/v1/assets", params={"character": "leo", "verdict": "on_model"})
    needs_review = client.get("/v1/assets", params={"verdict": "needs_review"})
    by_run = client.get("/v1/assets", params={"run": seeded[0].run_id[:6], "min_score": 0.7})

    assert everything.status_code == 200
    assert asset_ids(everything.json()) == {a.id for a in seeded}
    assert asset_ids(by_scene.json()) == {a.id for a in seeded if a.scene == "s1"}
    assert asset_ids(by_character.json()) == {
        a.id for a in seeded if a.character == "leo" and a.verdict is Verdict.ON_MODEL
    }
    assert asset_ids(needs_review.json()) == {
        a.id for a in seeded if a.state is FrameState.NEEDS_REVIEW
    }
    assert asset_ids(by_run.json()) == {a.id for i, a in enumerate(seeded) if 0.5 + i / 20 >= 0.7}
    item = everything.json()["items"][0]
    assert item["image_url"] == f"/v1/assets/{item['id']}/image"
    assert item["uri"]


def test_cursor_walks_every_asset(shared_api: Api) -> None:
    client, _, seeded = shared_api
    walked: list[str] = []
    cursor = None

    for _ in range(10):
        params: dict[str, object] = {"sort": "-seed", "limit": 4}
        if cursor:
            params["cursor"] = cursor
        page = client.get("/v1/assets", params=params).json()
        walked += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break

    assert walked == [a.id for a in reversed(seeded)]


@pytest.mark.parametrize("param", FILTER_PARAMS + ["sort", "cursor"])
def test_hostile_text_gives_422_or_nothing(shared_api: Api, param: str) -> None:
    client, _, _ = shared_api
    for value in HOSTILE_TEXT:
        response = client.get("/v1/assets", params={param: value})

        assert response.status_code in (200, 422), (value, response.text)
        if response.status_code == 200:
            found = response.json()["items"]
            # q matches % and _ literally, and no seeded prompt contains them.
            assert found == [], (param, value)


@pytest.mark.parametrize("param", NUMBER_PARAMS)
def test_hostile_numbers_give_422(shared_api: Api, param: str) -> None:
    client, _, _ = shared_api
    for value in HOSTILE_NUMBERS:
        response = client.get("/v1/assets", params={param: value})

        assert response.status_code == 422, (value, response.text)


def test_huge_numbers_give_422_or_nothing(shared_api: Api) -> None:
    client, _, seeded = shared_api
    huge = "9" * 40

    assert client.get("/v1/assets", params={"min_score": huge}).json()["items"] == []
    assert len(client.get("/v1/assets", params={"max_score": huge}).json()["items"]) == len(seeded)
    assert client.get("/v1/assets", params={"seed": huge}).status_code == 422
    assert client.get("/v1/assets", params={"limit": huge}).status_code == 422


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"sort": "password"}, "sort"),
        ({"sort": "-created_at; DROP TABLE assets"}, "sort"),
        ({"limit": 501}, "limit"),
        ({"limit": 10**9}, "limit"),
        ({"limit": 0}, "limit"),
        ({"cursor": "bm90LWEtY3Vyc29y.AAAA"}, "cursor"),
        ({"verdict": "fabulous"}, "verdict"),
        ({"rating": "maybe"}, "rating"),
        ({"seed": 2**63}, "seed"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_invalid_query_names_the_parameter(
    shared_api: Api, params: dict[str, object], field: str
) -> None:
    client, _, _ = shared_api

    response = client.get("/v1/assets", params=params)

    assert response.status_code == 422
    body = response.json()
    assert body["field"] == field
    assert body["detail"].startswith(f"{field}: ")
    assert body["value"] == str(params[field])


def test_injection_leaves_catalog_intact(
    api: Api,
) -> None:
    client, state, seeded = api
    client.get("/v1/assets", params={"scene": "'; DROP TABLE assets; --"})
    hostile = "'); DROP TABLE review_marks; --"
    client.post(f"/v1/assets/{seeded[0].id}/comments", json={"text": hostile})

    assert len(state.catalog.query_assets(limit=100).items) == len(seeded)
    assert state.catalog.list_review_marks(seeded[0].id)[0].value == hostile


def test_get_asset_and_unknown_ids(shared_api: Api) -> None:
    client, _, seeded = shared_api

    found = client.get(f"/v1/assets/{seeded[2].id[:10]}")
    missing = client.get("/v1/assets/" + "0" * 32)
    hostile = client.get("/v1/assets/' OR '1'='1")

    assert found.status_code == 200
    assert found.json()["id"] == seeded[2].id
    assert found.json()["review"] == {"tags": [], "rating": None, "comments": 0}
    assert missing.status_code == 404
    assert "not found" in missing.json()["detail"]
    assert hostile.status_code == 404


def test_image_is_streamed_from_local_store(
    shared_api: Api,
) -> None:
    client, _, seeded = shared_api

    response = client.get(f"/v1/assets/{seeded[1].id}/image")

    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    assert response.content == seeded[1].png


def test_image_redirects_to_presigned_s3_url(
    make_client: MakeClient, s3_endpoint: str, s3_bucket: str
) -> None:
    client, state = make_client(
        object_store=f"s3://{s3_bucket}/objects", s3_endpoint_url=s3_endpoint
    )
    seeded = seed_assets(state.catalog, state.store, count=2)

    response = client.get(f"/v1/assets/{seeded[0].id}/image", follow_redirects=False)

    assert response.status_code == 307
    location = response.headers["location"]
    assert location.startswith(f"{s3_endpoint}/{s3_bucket}/objects/sha256/")
    assert "Signature" in location or "X-Amz-Signature" in location
    import httpx

    assert httpx.get(location).content == seeded[0].png


def test_review_marks_over_http(api: Api) -> None:
    client, _, seeded = api
    asset_id = seeded[0].id

    tagged = client.post(f"/v1/assets/{asset_id}/tags", json={"tag": "hero", "author": "kim"})
    approved = client.post(f"/v1/assets/{asset_id}/rating", json={"rating": "approve"})
    rejected = client.post(
        f"/v1/assets/{asset_id}/rating", json={"rating": "reject", "author": "lee"}
    )
    commented = client.post(f"/v1/assets/{asset_id}/comments", json={"text": "Too dark."})
    bad_rating = client.post(f"/v1/assets/{asset_id}/rating", json={"rating": "meh"})
    bad_tag = client.post(f"/v1/assets/{asset_id}/tags", json={"tag": "two words"})
    unknown = client.post("/v1/assets/" + "0" * 32 + "/tags", json={"tag": "hero"})
    marks = client.get(f"/v1/assets/{asset_id}/marks")

    assert tagged.status_code == 201
    assert tagged.json()["author"] == "kim"
    assert approved.json()["author"] == "api"
    assert rejected.status_code == 201
    assert commented.status_code == 201
    assert bad_rating.status_code == 422
    assert bad_rating.json()["field"] == "rating"
    assert bad_tag.status_code == 422
    assert unknown.status_code == 404
    assert marks.json()["review"] == {"tags": ["hero"], "rating": "reject", "comments": 1}
    assert [m["kind"] for m in marks.json()["marks"]] == ["tag", "rating", "rating", "comment"]
    assert asset_ids(client.get("/v1/assets", params={"rating": "reject"}).json()) == {asset_id}
    assert asset_ids(client.get("/v1/assets", params={"tag": "hero"}).json()) == {asset_id}


def test_runs_list_show_and_cancel(api: Api) -> None:
    client, state, seeded = api
    run_id = seeded[0].run_id
    state.catalog.set_run_state(run_id, RunState.COMPLETED)

    listed = client.get("/v1/runs")
    by_prefix = client.get(f"/v1/runs/{run_id[:8]}")
    cancel_finished = client.post(f"/v1/runs/{run_id}/cancel")
    missing = client.get("/v1/runs/" + "0" * 32)

    assert listed.status_code == 200
    assert [run["run_id"] for run in listed.json()] == [run_id]
    body = by_prefix.json()
    assert body["state"] == "completed"
    assert body["frames"] == len(seeded)
    assert body["accepted"] + body["needs_review"] == len(seeded)
    assert body["progress"] == 1.0
    assert cancel_finished.status_code == 409
    assert "already completed" in cancel_finished.json()["detail"]
    assert missing.status_code == 404


# Authentication


def test_requests_without_valid_token_get_401(make_client: MakeClient) -> None:
    client, state = make_client(api_token=TOKEN)
    seeded = seed_assets(state.catalog, state.store, count=1)
    asset = seeded[0].id
    requests = [
        ("GET", "/v1/assets", None),
        ("GET", f"/v1/assets/{asset}", None),
        ("GET", f"/v1/assets/{asset}/image", None),
        ("GET", f"/v1/assets/{asset}/marks", None),
        ("POST", f"/v1/assets/{asset}/tags", {"tag": "hero"}),
        ("POST", f"/v1/assets/{asset}/rating", {"rating": "approve"}),
        ("POST", f"/v1/assets/{asset}/comments", {"text": "hi"}),
        ("GET", "/v1/runs", None),
        ("GET", f"/v1/runs/{seeded[0].run_id}", None),
        ("POST", f"/v1/runs/{seeded[0].run_id}/cancel", None),
        ("POST", "/v1/storyboards", None),
    ]
    wrong_headers = [
        {},
        {"Authorization": "Bearer wrong-token-0123456789abcdef"},
        {"Authorization": f"Bearer {TOKEN}x"},
        {"Authorization": f"Bearer {TOKEN[:-1]}"},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": TOKEN},
    ]

    for method, path, body in requests:
        for headers in wrong_headers:
            response = client.request(method, path, json=body, headers=headers)
            assert response.status_code == 401, (method, path, headers)
            assert response.headers["www-authenticate"] == "Bearer"
            assert TOKEN not in response.text
    assert state.catalog.list_review_marks(asset) == []
    assert state.catalog.get_run(seeded[0].run_id).state == RunState.PENDING


def test_valid_token_is_accepted(make_client: MakeClient) -> None:
    client, state = make_client(api_token=TOKEN)
    seed_assets(state.catalog, state.store, count=1)

    response = client.get("/v1/assets", headers={"Authorization": f"Bearer {TOKEN}"})

    assert response.status_code == 200
    assert len(response.json()["items"]) == 1


def test_invalid_body_names_the_field(api: Api) -> None:
    client, _, seeded = api
    asset_id = seeded[0].id

    missing = client.post(f"/v1/assets/{asset_id}/tags", json={"author": "kim"})
    extra = client.post(f"/v1/assets/{asset_id}/tags", json={"tag": "hero", "colour": "red"})
    too_long = client.post(f"/v1/assets/{asset_id}/tags", json={"tag": "x" * 5000})

    assert missing.status_code == 422
    assert missing.json()["field"] == "tag"
    assert missing.json()["value"] is None
    assert missing.json()["detail"] == "tag: missing; add it to the request"
    assert extra.status_code == 422
    assert extra.json()["field"] == "colour"
    assert extra.json()["value"] == "red"
    assert too_long.status_code == 422
    assert too_long.json()["field"] == "tag"
    # The response repeats a long value only in part.
    assert len(too_long.json()["value"]) == 200
    assert too_long.json()["value"].endswith("...")
    assert [error["loc"] for error in too_long.json()["errors"]] == [["body", "tag"]]


def test_openapi_documents_the_api(make_client: MakeClient) -> None:
    client, _ = make_client()

    schema = client.get("/openapi.json").json()
    docs = client.get("/docs")

    assert docs.status_code == 200
    paths = set(schema["paths"])
    assert {"/v1/storyboards", "/v1/runs", "/v1/runs/{run_id}", "/v1/runs/{run_id}/cancel"} <= paths
    assert {"/v1/assets", "/v1/assets/{asset_id}", "/v1/assets/{asset_id}/image"} <= paths
    assert "Storyboard" in schema["components"]["schemas"]
    parameters = {p["name"] for p in schema["paths"]["/v1/assets"]["get"]["parameters"]}
    expected = {"run", "storyboard", "scene", "character", "verdict", "min_score", "max_score"}
    expected |= {"backend", "model", "seed", "tag", "rating", "since", "until", "q"}
    expected |= {"sort", "limit", "cursor"}
    assert expected <= parameters
    error_fields = schema["components"]["schemas"]["HTTPValidationError"]["properties"]
    assert set(error_fields) == {"detail", "field", "value", "errors"}
