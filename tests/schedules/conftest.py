"""Fixtures for schedule and matrix tests: a SQLite catalog, an object folder, small specs."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml
from PIL import Image
from servers import postgres_schema

from orchestrator.spec import LoadedSpec, load_spec
from storage.catalog import Catalog
from storage.objects import ObjectStore, open_store


@contextmanager
def open_catalog(url: str) -> Iterator[Catalog]:
    catalog = Catalog(url)
    catalog.upgrade()
    try:
        yield catalog
    finally:
        catalog.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def catalog(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Catalog]:
    """A migrated catalog on a SQLite file, and on PostgreSQL when the server is configured."""
    if request.param == "sqlite":
        with open_catalog(f"sqlite:///{tmp_path / 'catalog.db'}") as catalog:
            yield catalog
        return
    with postgres_schema() as url, open_catalog(url) as catalog:
        yield catalog


@pytest.fixture
def sqlite_catalog(tmp_path: Path) -> Iterator[Catalog]:
    """A migrated catalog on a SQLite file, for the tests that run frames on Ray."""
    with open_catalog(f"sqlite:///{tmp_path / 'catalog.db'}") as catalog:
        yield catalog


@pytest.fixture
def store(tmp_path: Path) -> ObjectStore:
    return open_store(str(tmp_path / "objects"))


@pytest.fixture
def loaded(tmp_path: Path) -> LoadedSpec:
    """A one-scene spec with a small generated reference: every fire plans one frame."""
    folder = tmp_path / "spec"
    folder.mkdir()
    Image.new("RGB", (32, 32), (200, 120, 80)).save(folder / "ana.png")
    spec = folder / "storyboard.yaml"
    spec.write_text(
        yaml.safe_dump(
            {
                "name": "one-frame",
                "characters": [{"id": "ana", "name": "Ana", "references": ["ana.png"]}],
                "defaults": {"backend": "tiny", "width": 16, "height": 16, "steps": 1},
                "consistency": {"scorer": "none"},
                "scenes": [{"id": "s1", "prompt": "Ana at the counter", "characters": ["ana"]}],
            }
        )
    )
    return load_spec(spec)
