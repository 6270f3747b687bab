"""Fixtures for the storage tests: an S3 server on loopback, catalogs on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import boto3
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from schemas.records import FrameTask
from schemas.storyboard import Backend
from storage.catalog import Catalog
from storage.objects import LocalObjectStore, ObjectStore
from storage.s3 import S3ObjectStore

POSTGRES_URL_VARIABLE = "ONMODEL_TEST_POSTGRES_URL"


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of a moto S3 server on 127.0.0.1 with dummy credentials in the environment."""
    from moto.server import ThreadedMotoServer

    empty = tmp_path_factory.mktemp("aws")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AWS_ACCESS_KEY_ID", "testing")
        patch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        patch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        patch.delenv("AWS_SESSION_TOKEN", raising=False)
        patch.delenv("AWS_PROFILE", raising=False)
        # Keep boto3 away from the user's AWS files and the instance metadata address.
        patch.setenv("AWS_CONFIG_FILE", str(empty / "config"))
        patch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(empty / "credentials"))
        patch.setenv("AWS_EC2_METADATA_DISABLED", "true")

        # Port 0 lets the OS pick a free port.
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        try:
            yield f"http://{host}:{port}"
        finally:
            server.stop()


@pytest.fixture
def s3_bucket(s3_endpoint: str) -> str:
    """A new, empty bucket on the moto server."""
    name = f"onmodel-test-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket=name)
    return name


@pytest.fixture
def s3_store(s3_endpoint: str, s3_bucket: str) -> S3ObjectStore:
    # A tiny backoff keeps retry tests fast; the retry logic is the same.
    return S3ObjectStore(s3_bucket, "objects", endpoint_url=s3_endpoint, backoff_s=0.01)


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    """Each object store test runs on a local folder and on the S3 server."""
    if request.param == "local":
        return LocalObjectStore(tmp_path / "objects")
    result: S3ObjectStore = request.getfixturevalue("s3_store")
    return result


def postgres_url_or_skip() -> str:
    url = os.environ.get(POSTGRES_URL_VARIABLE)
    if not url:
        pytest.skip(
            f"{POSTGRES_URL_VARIABLE} is not set; start a server with "
            "`source .ci/start_services.sh` to run the PostgreSQL tests"
        )
    return url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def catalog_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """URL of an empty database: a SQLite file, or a fresh schema on PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'catalog.db'}"
        return

    base_url = postgres_url_or_skip()
    # A schema per test keeps tests independent without creating databases.
    # The name is generated here, never user input, so quoting it is enough.
    schema = f"test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(base_url)
    with admin.begin() as connection:
        connection.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    url = make_url(base_url).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as connection:
            connection.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def catalog(catalog_url: str) -> Iterator[Catalog]:
    """A migrated, empty catalog."""
    with Catalog(catalog_url) as opened:
        opened.upgrade()
        yield opened


def plan_frames(storyboard_id: str, count: int, *, scene: str = "s1") -> list[FrameTask]:
    """Plan `count` frames of one scene, each a variant with its own seed."""
    return [
        FrameTask(
            key=f"{scene}-{index:04d}",
            storyboard_id=storyboard_id,
            scene_id=scene,
            variant=index,
            prompt=f"ana waves, variant {index}",
            characters=["ana", "leo"],
            backend=Backend.TINY,
            model="tiny-kontext",
            width=64,
            height=48,
            steps=2,
            guidance=2.5,
            seed=1000 + index,
        )
        for index in range(count)
    ]


@pytest.fixture
def make_tasks() -> Callable[..., list[FrameTask]]:
    """The frame planner used by the catalog tests: `make_tasks(storyboard_id, count)`."""
    return plan_frames
