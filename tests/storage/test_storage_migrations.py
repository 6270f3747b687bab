"""The Alembic migrations: they create every table and match the ORM models exactly."""

from __future__ import annotations

import io
import threading
import tomllib
from collections.abc import Callable
from fnmatch import fnmatch
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from typer.testing import CliRunner

from orchestrator.cli import app
from schemas.records import AttemptState, FrameState, FrameTask
from storage import migrate
from storage.catalog import Catalog
from storage.engine import create_catalog_engine
from storage.filters import AssetFilters
from storage.models import Base
from storage.objects import key_for

MakeTasks = Callable[..., list[FrameTask]]

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


def test_character_times_backfilled(catalog: Catalog, make_tasks: MakeTasks) -> None:
    storyboard_id = catalog.put_storyboard("campaign", {"n": 1}, "a" * 64)
    tasks = make_tasks(storyboard_id, 3)
    run_id = catalog.create_run(storyboard_id, tasks, {})
    for task in tasks:
        attempt_id = catalog.start_attempt(run_id, task.key, 1, task.seed)
        object_key, digest = key_for(task.key.encode())
        catalog.finish_attempt(attempt_id, AttemptState.DONE, object_key=object_key, sha256=digest)
        catalog.accept_frame(run_id, task.key, attempt_id, FrameState.ACCEPTED, {})

    # Back to the schema before the copied column, then forward again: the
    # upgrade fills the column from the assets.
    config = migrate.alembic_config()
    with catalog.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0004")
    assert "created_at" not in {
        column["name"] for column in sa.inspect(catalog.engine).get_columns("asset_characters")
    }
    catalog.upgrade()

    query = sa.text(
        "SELECT asset_characters.character_id, asset_characters.created_at, assets.created_at "
        "FROM asset_characters JOIN assets ON assets.id = asset_characters.asset_id"
    )
    with catalog.engine.connect() as connection:
        rows = connection.execute(query).all()
    assert len(rows) == 2 * len(tasks)
    for _character, copied, original in rows:
        assert copied is not None
        assert copied == original
    newest = catalog.query_assets(AssetFilters(character="leo"), sort="-created_at")
    assert [asset.frame_key for asset in newest.items] == [task.key for task in reversed(tasks)]


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


def test_db_upgrade_command_reports_change(
    catalog_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ONMODEL_DATABASE_URL", catalog_url)

    first = CliRunner().invoke(app, ["db", "upgrade"])
    second = CliRunner().invoke(app, ["db", "upgrade"])

    head = migrate.head_revision()
    assert first.exit_code == 0, first.output
    assert f"upgraded from schema (empty) to {head}" in first.stdout
    assert second.exit_code == 0, second.output
    assert f"is up to date (schema {head})" in second.stdout
    with Catalog(catalog_url) as catalog:
        assert migrate.current_revision(catalog.engine) == head
