"""`onmodel serve` end to end: submit the example storyboard over HTTP, follow it, query its assets.

Runs once on SQLite with a local object folder and once on PostgreSQL with
the S3 server on loopback. The service is a real subprocess on a free
loopback port, stopped with SIGTERM by its process id.
"""

from __future__ import annotations

import hashlib
import io
import ipaddress
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import psutil
import pytest
import yaml
from PIL import Image
from servers import free_port

from orchestrator.app_state import open_backends
from orchestrator.settings import Settings
from orchestrator.spec import load_spec_text
from orchestrator.submit import submit
from schemas.records import RunState

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "coffee"
REFERENCES = ["ana_1.jpg", "ana_2.jpg", "leo_1.jpg", "leo_2.jpg", "style.jpg"]
READY_TIMEOUT_S = 90.0
RUN_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 60.0


def small_example(references: dict[str, str] | None = None) -> str:
    """The example storyboard with 64x64 frames and 2 steps, references optionally replaced."""
    document: dict[str, Any] = yaml.safe_load((EXAMPLE / "storyboard.yaml").read_text())
    document["defaults"].update({"width": 64, "height": 64, "steps": 2})
    for scene in document["scenes"]:
        scene.pop("width", None)
        scene.pop("height", None)
    if references:
        for character in document["characters"]:
            character["references"] = [references[r] for r in character["references"]]
        document["style"]["reference"] = references[document["style"]["reference"]]
    return yaml.safe_dump(document)


class Service:
    """An `onmodel serve` subprocess and an HTTP client for it."""

    def __init__(self, folder: Path, env: dict[str, str]) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.stdout = folder / "serve.out"
        self.stderr = folder / "serve.err"
        command = [sys.executable, "-m", "orchestrator.cli", "serve", "--port", str(self.port)]
        with self.stdout.open("w") as out, self.stderr.open("w") as err:
            self.process = subprocess.Popen(command, cwd=folder, env=env, stdout=out, stderr=err)
        self.http = httpx.Client(base_url=self.base, timeout=30)

    def logs(self) -> str:
        stderr_end = self.stderr.read_text()[-4000:]
        return f"stdout:\n{self.stdout.read_text()}\nstderr (end):\n{stderr_end}"

    def wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                code = self.process.returncode
                raise AssertionError(f"onmodel serve exited with {code}\n{self.logs()}")
            try:
                if self.http.get("/v1/health").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        raise AssertionError(f"onmodel serve not ready after {READY_TIMEOUT_S} s\n{self.logs()}")

    def wait_for_run(self, run_id: str) -> dict[str, Any]:
        deadline = time.monotonic() + RUN_TIMEOUT_S
        while time.monotonic() < deadline:
            status: dict[str, Any] = self.http.get(f"/v1/runs/{run_id}").json()
            if status["state"] in ("completed", "failed", "cancelled"):
                return status
            time.sleep(0.5)
        raise AssertionError(f"run {run_id} did not end within {RUN_TIMEOUT_S} s\n{self.logs()}")

    def stop(self) -> int:
        """Send SIGTERM to the service process and return its exit code."""
        self.http.close()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
            raise AssertionError(f"onmodel serve ignored SIGTERM\n{self.logs()}") from None


@pytest.fixture
def service_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ONMODEL_")}
    env.update(
        {
            "ONMODEL_HOME": str(tmp_path / "home"),
            "ONMODEL_ACTORS": "1",
            "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
            "RAY_AUTH_MODE": "disabled",
            "RAY_USAGE_STATS_ENABLED": "0",
        }
    )
    return env


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Any]:
    started: list[Service] = []

    def start(env: dict[str, str]) -> Service:
        service = Service(tmp_path, env)
        started.append(service)
        service.wait_ready()
        return service

    yield start
    for service in started:
        if service.process.poll() is None:
            service.stop()


def check_run_and_assets(service: Service, run_id: str) -> list[dict[str, Any]]:
    """Poll the run to its end, then list, filter and tag its assets; return them."""
    status = service.wait_for_run(run_id)
    assert status["state"] == "completed", service.logs()
    assert status["frames"] == 7
    assert status["accepted"] == 7
    assert status["progress"] == 1.0

    listed = service.http.get("/v1/assets", params={"run": run_id, "limit": 50}).json()
    assets: list[dict[str, Any]] = listed["items"]
    assert len(assets) == 7
    assert listed["next_cursor"] is None
    barista = service.http.get("/v1/assets", params={"run": run_id, "scene": "s04-barista"})
    assert len(barista.json()["items"]) == 2
    leo = service.http.get("/v1/assets", params={"run": run_id, "character": "leo"})
    leo_scenes = {item["scene_id"] for item in leo.json()["items"]}
    assert leo_scenes == {"s02-window", "s03-meet", "s05-street"}
    unscored = service.http.get("/v1/assets", params={"verdict": "unscored", "q": "coffee"})
    assert {item["scene_id"] for item in unscored.json()["items"]} == {"s01-counter"}
    page_params = {"run": run_id, "sort": "seed", "limit": 4}
    first_page = service.http.get("/v1/assets", params=page_params).json()
    second_page = service.http.get(
        "/v1/assets", params={**page_params, "cursor": first_page["next_cursor"]}
    ).json()
    paged = [item["id"] for item in first_page["items"] + second_page["items"]]
    assert sorted(paged) == sorted(item["id"] for item in assets)

    tagged = service.http.post(f"/v1/assets/{assets[0]['id']}/tags", json={"tag": "pick"})
    assert tagged.status_code == 201
    picked = service.http.get("/v1/assets", params={"tag": "pick"}).json()["items"]
    assert [item["id"] for item in picked] == [assets[0]["id"]]
    bad = service.http.get("/v1/assets", params={"sort": "score; DROP TABLE assets"})
    assert bad.status_code == 422
    return assets


def check_image(data: bytes, asset: dict[str, Any]) -> None:
    image = Image.open(io.BytesIO(data))
    assert image.format == "PNG"
    assert image.size == (64, 64)
    assert hashlib.sha256(data).hexdigest() == asset["sha256"]


def is_loopback(address: str) -> bool:
    """Return whether an address is loopback, including IPv4 loopback mapped into IPv6."""
    ip = ipaddress.ip_address(address)
    mapped = getattr(ip, "ipv4_mapped", None)
    return bool((mapped or ip).is_loopback)


def listening_sockets(pid: int) -> set[tuple[str, int, str]]:
    """Return (address, port, process name) of every listening TCP socket of a process tree."""
    root = psutil.Process(pid)
    found = set()
    for process in [root, *root.children(recursive=True)]:
        try:
            connections = process.net_connections(kind="inet")
            name = process.name()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        for connection in connections:
            if connection.status == psutil.CONN_LISTEN:
                found.add((connection.laddr.ip, connection.laddr.port, name))
    return found


def orphaned_run(home: Path) -> str:
    """Store a one-frame run left `running` by a driver process that has exited."""
    document = yaml.safe_load(small_example())
    document["scenes"] = document["scenes"][:1]
    backends = open_backends(Settings(home=home))
    try:
        run_id = submit(
            backends.catalog, backends.store, load_spec_text(yaml.safe_dump(document), EXAMPLE)
        )
        dead = subprocess.Popen(["true"])
        dead.wait()
        driver = f"{socket.gethostname()}:{dead.pid}"
        backends.catalog.set_run_state(run_id, RunState.RUNNING, driver=driver)
    finally:
        backends.close()
    return run_id


@pytest.mark.slow
def test_serve_sqlite_and_local_folder(
    serve: Any, service_env: dict[str, str], tmp_path: Path
) -> None:
    # The service resumes runs whose driver died before it started.
    orphan = orphaned_run(tmp_path / "home")
    service: Service = serve(service_env)
    files = [
        ("files", (name, (EXAMPLE / "refs" / name).read_bytes(), "image/jpeg"))
        for name in REFERENCES
    ]

    submitted = service.http.post("/v1/storyboards", data={"spec": small_example()}, files=files)

    assert submitted.status_code == 202, submitted.text
    assets = check_run_and_assets(service, submitted.json()["run_id"])
    image = service.http.get(f"/v1/assets/{assets[0]['id']}/image")
    assert image.status_code == 200
    check_image(image.content, assets[0])
    resumed = service.wait_for_run(orphan)
    assert resumed["state"] == "completed", service.logs()
    assert resumed["accepted"] == 1
    # The service, its local Ray and the Serve replicas listen on loopback only.
    sockets = listening_sockets(service.process.pid)
    assert ("127.0.0.1", service.port) in {(address, port) for address, port, _ in sockets}
    exposed = sorted(item for item in sockets if not is_loopback(item[0]))
    assert exposed == []
    assert service.stop() == 0
    assert "service stopped" in service.stdout.read_text()
    assert (tmp_path / "home" / "catalog.db").is_file()


@pytest.mark.slow
@pytest.mark.postgres
def test_serve_postgres_and_s3(
    serve: Any,
    service_env: dict[str, str],
    postgres_schema_url: str,
    s3_endpoint: str,
    s3_bucket: str,
) -> None:
    s3 = boto3.client("s3", endpoint_url=s3_endpoint)
    for name in REFERENCES:
        body = (EXAMPLE / "refs" / name).read_bytes()
        s3.put_object(Bucket=s3_bucket, Key=f"incoming/{name}", Body=body)
    env = {
        **service_env,
        # The S3 fixture put dummy credentials into this process's environment.
        **{k: v for k, v in os.environ.items() if k.startswith("AWS_")},
        "ONMODEL_DATABASE_URL": postgres_schema_url,
        "ONMODEL_OBJECT_STORE": f"s3://{s3_bucket}/objects",
        "ONMODEL_S3_ENDPOINT_URL": s3_endpoint,
    }
    service: Service = serve(env)
    # The references are object-store URIs in the service's bucket, not uploads.
    uris = {f"refs/{name}": f"s3://{s3_bucket}/incoming/{name}" for name in REFERENCES}

    submitted = service.http.post(
        "/v1/storyboards",
        content=small_example(uris),
        headers={"Content-Type": "application/yaml"},
    )

    assert submitted.status_code == 202, submitted.text
    assets = check_run_and_assets(service, submitted.json()["run_id"])
    redirect = service.http.get(f"/v1/assets/{assets[0]['id']}/image", follow_redirects=False)
    assert redirect.status_code == 307
    assert redirect.headers["location"].startswith(f"{s3_endpoint}/{s3_bucket}/objects/")
    check_image(httpx.get(redirect.headers["location"]).content, assets[0])
    assert service.stop() == 0
    assert not (Path(service_env["ONMODEL_HOME"]) / "catalog.db").exists()
