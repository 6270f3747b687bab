"""Run the catalog's Alembic migrations from code, with no alembic.ini."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, text

from storage.models import Base

logger = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
# Key of the PostgreSQL advisory lock that serializes concurrent upgrades,
# e.g. when several drivers start at once. Any fixed 64-bit number works;
# this one is "onmodel" in ASCII.
MIGRATION_LOCK_KEY = 0x6F6E6D6F64656C


def alembic_config(url: str | None = None) -> Config:
    """Return an Alembic config for the packaged migrations; `url` is only for the CLI path."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url is not None:
        # ConfigParser reads % as interpolation, and URLs may contain %-escapes.
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, f"no migrations found in {MIGRATIONS_DIR}"
    return head


def current_revision(engine: Engine) -> str | None:
    """Return the revision the database is at, or None for an empty database."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> tuple[str | None, str | None]:
    """Apply migrations up to `revision` in one transaction; return the revisions before and after.

    A database that is already at `revision` is left unchanged. None means
    an empty database.
    """
    config = alembic_config()
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            # Released at commit. SQLite needs no lock: BEGIN IMMEDIATE
            # already admits one writer at a time.
            connection.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY}
            )
        before = MigrationContext.configure(connection).get_current_revision()
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
        after = MigrationContext.configure(connection).get_current_revision()
    if before != after:
        logger.info("catalog schema upgraded from %s to %s", before or "empty", after)
    return before, after


def schema_differences(engine: Engine) -> list[Any]:
    """Return the differences between the database schema and the ORM models.

    An empty list means the migrations create exactly what the models
    describe, which is what `alembic check` verifies.
    """
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, Base.metadata))
