"""Fixtures of the service tests: catalogs on SQLite and PostgreSQL, an S3 server, API clients."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from servers import postgres_schema
from service_helpers import MakeClient, RecordingLauncher

from orchestrator.service.app import create_app
from orchestrator.service.state import ServiceState
from orchestrator.settings import Settings

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
