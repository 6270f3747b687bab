"""The Alembic migrations: they create every table and match the ORM models exactly."""

from __future__ import annotations

import io
import threading
import tomllib
from fnmatch import fnmatch
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command

from storage import migrate
from storage.catalog import Catalog
from storage.engine import create_catalog_engine
from storage.models import Base

TABLES = {
    "storyboards",
    "runs",
    "frames",
    "attempts",
    "assets",
    "asset_characters",
    "review_marks",
    "schedules",
    "schedule_fires",
}
REPO_ROOT = Path(__file__).resolve().parents[2]


def table_names(engine: sa.Engine) -> set[str]:
    return set(sa.inspect(engine).get_table_names())


def test_upgrade_creates_every_table(catalog_url: str) -> None:
    with Catalog(catalog_url) as catalog:
        assert table_names(catalog.engine) == set()

        catalog.upgrade()

        assert table_names(catalog.engine) == TABLES | {"alembic_version"}
        assert migrate.current_revision(catalog.engine) == migrate.head_revision()


def test_models_describe_every_table() -> None:
    assert set(Base.metadata.tables) == TABLES


def test_migration_matches_models(catalog: Catalog) -> None:
    assert migrate.schema_differences(catalog.engine) == []


def test_schema_check_detects_drift(catalog: Catalog) -> None:
    with catalog.engine.begin() as connection:
        connection.execute(sa.text("DROP INDEX ix_assets_model"))

    differences = migrate.schema_differences(catalog.engine)

    assert len(differences) == 1
    assert differences[0][0] == "add_index"
    assert differences[0][1].name == "ix_assets_model"


def test_expected_indexes_exist(catalog: Catalog) -> None:
    inspector = sa.inspect(catalog.engine)
    asset_indexes = {index["name"] for index in inspector.get_indexes("assets")}
    for column in ("run_id", "storyboard_id", "scene_id", "verdict", "score", "backend", "model"):
        assert f"ix_assets_{column}" in asset_indexes
    assert "ix_assets_created_at" in asset_indexes
    character_indexes = {index["name"] for index in inspector.get_indexes("asset_characters")}
    assert "ix_asset_characters_character_id" in character_indexes
    frame_indexes = {
        index["name"]: index["column_names"] for index in inspector.get_indexes("frames")
    }
    assert frame_indexes["ix_frames_run_id_state"] == ["run_id", "state"]


def test_upgrade_twice_changes_nothing(catalog: Catalog) -> None:
    catalog.upgrade()

    assert migrate.current_revision(catalog.engine) == migrate.head_revision()
    assert migrate.schema_differences(catalog.engine) == []


def test_downgrade_removes_every_table(catalog: Catalog) -> None:
    config = migrate.alembic_config()
    with catalog.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "base")

    assert table_names(catalog.engine) == {"alembic_version"}
    catalog.upgrade()
    assert table_names(catalog.engine) == TABLES | {"alembic_version"}


def test_concurrent_upgrades_agree(catalog_url: str) -> None:
    errors: list[BaseException] = []
    start = threading.Barrier(3)

    def upgrade() -> None:
        try:
            with Catalog(catalog_url) as catalog:
                start.wait()
                catalog.upgrade()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=upgrade) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    engine = create_catalog_engine(catalog_url)
    try:
        assert migrate.current_revision(engine) == migrate.head_revision()
        assert migrate.schema_differences(engine) == []
    finally:
        engine.dispose()


def test_env_opens_its_own_engine(tmp_path: Path) -> None:
    # The path the `alembic` command line takes: a URL in the config, no connection.
    url = f"sqlite:///{tmp_path / 'cli.db'}"

    command.upgrade(migrate.alembic_config(url), "head")

    engine = create_catalog_engine(url)
    try:
        assert table_names(engine) == TABLES | {"alembic_version"}
    finally:
        engine.dispose()


def test_offline_sql_for_postgresql() -> None:
    output = io.StringIO()
    config = migrate.alembic_config("postgresql+psycopg://user@127.0.0.1/db")
    config.output_buffer = output

    command.upgrade(config, "head", sql=True)

    sql = output.getvalue()
    for table in TABLES:
        assert f"CREATE TABLE {table} (" in sql
    assert "TIMESTAMP WITH TIME ZONE" in sql
    assert "BIGINT" in sql


def test_package_data_ships_migrations() -> None:
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["storage"]
    migrations = REPO_ROOT / "storage" / "migrations"

    for path in migrations.rglob("*"):
        if not path.is_file() or "__pycache__" in path.parts:
            continue
        relative = path.relative_to(REPO_ROOT / "storage").as_posix()
        # Modules of a package (a folder with __init__.py) ship without package-data.
        in_package = path.suffix == ".py" and (path.parent / "__init__.py").exists()
        assert in_package or any(fnmatch(relative, pattern) for pattern in patterns), relative


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:"])
def test_in_memory_catalog_migrates(url: str) -> None:
    with Catalog(url) as catalog:
        catalog.upgrade()
        assert migrate.schema_differences(catalog.engine) == []
