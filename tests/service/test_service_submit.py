"""`POST /v1/storyboards`: specs as JSON, YAML or multipart uploads, and URI references."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from fastapi.testclient import TestClient
from service_helpers import MakeClient

from orchestrator.service.state import ServiceState
from orchestrator.service.submission import MAX_UPLOAD_FILES
from orchestrator.spec import MAX_SPEC_BYTES
from schemas.records import RunState

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "coffee"
REFERENCES = ["ana_1.jpg", "ana_2.jpg", "leo_1.jpg", "leo_2.jpg", "style.jpg"]


def example_spec() -> dict[str, Any]:
    """The example storyboard with small frames."""
    document: dict[str, Any] = yaml.safe_load((EXAMPLE / "storyboard.yaml").read_text())
    document["defaults"].update({"width": 64, "height": 64, "steps": 2})
    for scene in document["scenes"]:
        scene.pop("width", None)
        scene.pop("height", None)
    return document


def uploads(names: list[str], prefix: str = "") -> list[tuple[str, tuple[str, bytes, str]]]:
    return [
        ("files", (f"{prefix}{name}", (EXAMPLE / "refs" / name).read_bytes(), "image/jpeg"))
        for name in names
    ]


def frame_count(state: ServiceState, run_id: str) -> int:
    return len(state.catalog.list_frames(run_id))


@pytest.fixture
def service(make_client: MakeClient) -> tuple[TestClient, ServiceState]:
    return make_client()


def test_multipart_with_uploaded_references(service: tuple[TestClient, ServiceState]) -> None:
    client, state = service
    spec = yaml.safe_dump(example_spec())

    # curl -F files=@refs/ana_1.jpg sends only the file name, ana_1.jpg.
    response = client.post("/v1/storyboards", data={"spec": spec}, files=uploads(REFERENCES))

    assert response.status_code == 202, response.text
    run_id = response.json()["run_id"]
    assert response.headers["location"] == f"/v1/runs/{run_id}"
    assert state.launcher.started == [run_id]  # type: ignore[attr-defined]
    run = state.catalog.get_run(run_id)
    assert run.state == RunState.PENDING
    # A restarted service finds the runs it accepted by this option.
    assert run.options["origin"] == "service"
    assert frame_count(state, run_id) == 7
    stored = state.catalog.get_storyboard(run.storyboard_id).spec
    assert stored["characters"][0]["references"] == ["refs/ana_1.jpg", "refs/ana_2.jpg"]


def test_multipart_with_paths_and_spec_file(service: tuple[TestClient, ServiceState]) -> None:
    client, state = service
    spec = json.dumps(example_spec()).encode()
    files = [("spec", ("storyboard.json", spec, "application/json"))]
    files += uploads(REFERENCES, prefix="refs/")

    response = client.post("/v1/storyboards", files=files)

    assert response.status_code == 202, response.text
    assert frame_count(state, response.json()["run_id"]) == 7


def test_same_spec_twice_makes_two_runs(service: tuple[TestClient, ServiceState]) -> None:
    client, state = service
    spec = yaml.safe_dump(example_spec())

    first = client.post("/v1/storyboards", data={"spec": spec}, files=uploads(REFERENCES))
    second = client.post("/v1/storyboards", data={"spec": spec}, files=uploads(REFERENCES))

    assert first.json()["run_id"] != second.json()["run_id"]
    first_run = state.catalog.get_run(first.json()["run_id"])
    assert state.catalog.get_run(second.json()["run_id"]).storyboard_id == first_run.storyboard_id


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        (lambda d: d["scenes"][2]["characters"].append("mia"), "scenes[2].characters[2]", "mia"),
        (lambda d: d["defaults"].update(width=65), "defaults.width", "multiple of 16"),
        (lambda d: d.update(colour="red"), "colour", "unknown field"),
        (lambda d: d.pop("scenes"), "scenes", "missing"),
    ],
)
def test_invalid_json_spec_gives_422_with_field(
    service: tuple[TestClient, ServiceState], change: Any, field: str, message: str
) -> None:
    client, state = service
    document = copy.deepcopy(example_spec())
    change(document)

    response = client.post("/v1/storyboards", json=document)

    assert response.status_code == 422
    assert response.json()["field"] == field
    assert message in response.json()["detail"]
    assert state.catalog.list_runs() == []


def test_missing_reference_names_field_not_temp_folder(
    service: tuple[TestClient, ServiceState],
) -> None:
    client, _ = service
    body = yaml.safe_dump(example_spec())

    response = client.post(
        "/v1/storyboards", content=body, headers={"Content-Type": "application/yaml"}
    )

    assert response.status_code == 422
    assert response.json()["field"] == "characters[0].references[0]"
    assert "the uploaded files" in response.json()["detail"]
    assert "/tmp" not in response.json()["detail"]


@pytest.mark.parametrize(
    ("body", "content_type", "status", "text"),
    [
        ("name: [unclosed", "application/yaml", 422, "malformed YAML"),
        ("{not json", "application/json", 422, "malformed JSON"),
        ("- a\n- b\n", "application/yaml", 422, "must be a mapping"),
        ("a: &a [*a, *a]", "application/yaml", 422, ""),
        ("name: x", "application/xml", 415, "not supported"),
        ("x" * (MAX_SPEC_BYTES + 1), "application/yaml", 413, "more than"),
    ],
)
def test_malformed_bodies(
    service: tuple[TestClient, ServiceState], body: str, content_type: str, status: int, text: str
) -> None:
    client, state = service

    response = client.post("/v1/storyboards", content=body, headers={"Content-Type": content_type})

    assert response.status_code == status, response.text
    assert text in response.json()["detail"]
    assert state.catalog.list_runs() == []


@pytest.mark.parametrize(
    "name", ["../outside.jpg", "/etc/passwd", "refs/../../x.jpg", ".fetched/0.jpg", "..\\x.jpg"]
)
def test_unsafe_upload_names_are_rejected(
    service: tuple[TestClient, ServiceState], name: str
) -> None:
    client, state = service
    files = [("files", (name, b"\xff\xd8not really", "image/jpeg"))]

    response = client.post("/v1/storyboards", data={"spec": "name: x"}, files=files)

    assert response.status_code == 422, response.text
    assert response.json()["field"] == "files"
    assert state.catalog.list_runs() == []


def test_multipart_without_spec_and_with_too_many_files(
    service: tuple[TestClient, ServiceState],
) -> None:
    client, _ = service
    many = [("files", (f"f{i}.jpg", b"x", "image/jpeg")) for i in range(MAX_UPLOAD_FILES + 1)]

    no_spec = client.post("/v1/storyboards", files=uploads(["ana_1.jpg"]))
    too_many = client.post("/v1/storyboards", data={"spec": "name: x"}, files=many)

    assert no_spec.status_code == 422
    assert "no `spec` field" in no_spec.json()["detail"]
    assert too_many.status_code in (400, 413)


# URI references


def s3_spec(bucket: str) -> dict[str, Any]:
    document = example_spec()
    for character in document["characters"]:
        character["references"] = [
            f"s3://{bucket}/{reference}" for reference in character["references"]
        ]
    document["style"]["reference"] = f"s3://{bucket}/{document['style']['reference']}"
    return document


def test_s3_references_in_service_bucket(
    make_client: MakeClient, s3_endpoint: str, s3_bucket: str
) -> None:
    client, state = make_client(
        object_store=f"s3://{s3_bucket}/objects", s3_endpoint_url=s3_endpoint
    )
    s3 = boto3.client("s3", endpoint_url=s3_endpoint)
    for name in REFERENCES:
        body = (EXAMPLE / "refs" / name).read_bytes()
        s3.put_object(Bucket=s3_bucket, Key=f"refs/{name}", Body=body)

    response = client.post("/v1/storyboards", json=s3_spec(s3_bucket))

    assert response.status_code == 202, response.text
    run = state.catalog.get_run(response.json()["run_id"])
    stored = state.catalog.get_storyboard(run.storyboard_id).spec
    assert stored["characters"][1]["references"][0] == f"s3://{s3_bucket}/refs/leo_1.jpg"
    assert frame_count(state, run.id) == 7


def test_s3_reference_rules(make_client: MakeClient, s3_endpoint: str, s3_bucket: str) -> None:
    client, _ = make_client(object_store=f"s3://{s3_bucket}/objects", s3_endpoint_url=s3_endpoint)
    local_client, _ = make_client()

    other_bucket = client.post("/v1/storyboards", json=s3_spec("someone-elses-bucket"))
    missing = client.post("/v1/storyboards", json=s3_spec(s3_bucket))
    local_store = local_client.post("/v1/storyboards", json=s3_spec(s3_bucket))

    assert other_bucket.status_code == 422
    assert "is not the service's bucket" in other_bucket.json()["detail"]
    assert other_bucket.json()["field"] == "characters[0].references[0]"
    assert missing.status_code == 422
    assert "not found" in missing.json()["detail"]
    assert local_store.status_code == 422
    assert "object store is on S3" in local_store.json()["detail"]


def test_http_references_need_allowed_public_host(make_client: MakeClient) -> None:
    closed, _ = make_client()
    # localhost resolves to 127.0.0.1 on this machine: no request leaves it.
    open_to_localhost, _ = make_client(reference_hosts=["localhost"])
    document = example_spec()
    document["characters"][0]["references"][0] = "http://localhost:9/ana.jpg"
    document["characters"][1]["references"][0] = "https://images.example.com/leo.jpg"

    disabled = closed.post("/v1/storyboards", json=document)
    loopback = open_to_localhost.post("/v1/storyboards", json=document)

    assert disabled.status_code == 422
    assert "http(s) references are disabled" in disabled.json()["detail"]
    assert loopback.status_code == 422
    assert "not a public address" in loopback.json()["detail"]
