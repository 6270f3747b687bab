"""Fixtures for the storage tests: an S3 server on loopback, catalogs on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from servers import postgres_schema

from schemas.records import FrameTask
from schemas.storyboard import Backend
from storage.catalog import Catalog
from storage.objects import LocalObjectStore, ObjectStore
from storage.s3 import S3ObjectStore


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


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def catalog_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """URL of an empty database: a SQLite file, or a fresh schema on PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'catalog.db'}"
        return

    with postgres_schema() as url:
        yield url


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
