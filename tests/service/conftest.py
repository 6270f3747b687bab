"""Fixtures of the service tests: catalogs on SQLite and PostgreSQL, an S3 server, API clients."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import boto3
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from service_helpers import MakeClient, RecordingLauncher, free_port
from sqlalchemy.engine import make_url

from orchestrator.service.app import create_app
from orchestrator.service.state import ServiceState
from orchestrator.settings import Settings

POSTGRES_URL_VARIABLE = "ONMODEL_TEST_POSTGRES_URL"


def postgres_url_or_skip() -> str:
    url = os.environ.get(POSTGRES_URL_VARIABLE)
    if not url:
        pytest.skip(f"{POSTGRES_URL_VARIABLE} is not set; `source .ci/start_services.sh`")
    return url


@contextmanager
def postgres_schema() -> Iterator[str]:
    """Create an empty schema on the test PostgreSQL server; yield its URL, then drop it."""
    base_url = postgres_url_or_skip()
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
def postgres_schema_url() -> Iterator[str]:
    with postgres_schema() as url:
        yield url


DATABASES = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(params=DATABASES)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'catalog.db'}"
    url: str = request.getfixturevalue("postgres_schema_url")
    return url


@pytest.fixture(scope="module", params=DATABASES)
def module_database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A database shared by the read-only tests of one module."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('catalog') / 'catalog.db'}"
        return
    with postgres_schema() as url:
        yield url


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
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        try:
            yield f"http://{host}:{port}"
        finally:
            server.stop()


@pytest.fixture
def s3_bucket(s3_endpoint: str) -> str:
    name = f"onmodel-test-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket=name)
    return name


@contextmanager
def client_factory(home: Path) -> Iterator[MakeClient]:
    opened: list[ServiceState] = []

    def make(**settings: object) -> tuple[TestClient, ServiceState]:
        values: dict[str, object] = {"home": home, **settings}
        state = ServiceState.open(Settings(**values), RecordingLauncher())
        opened.append(state)
        # raise_server_exceptions=False: a bug must show as the 500 a client gets.
        return TestClient(create_app(state), raise_server_exceptions=False), state

    try:
        yield make
    finally:
        for state in opened:
            state.catalog.close()


@pytest.fixture
def make_client(tmp_path: Path) -> Iterator[MakeClient]:
    """Build API clients over real catalogs: `make_client(**settings)` -> (client, state)."""
    with client_factory(tmp_path / "home") as make:
        yield make


@pytest.fixture(scope="module")
def module_make_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MakeClient]:
    with client_factory(tmp_path_factory.mktemp("home")) as make:
        yield make
