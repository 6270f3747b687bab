"""Alembic environment of the catalog.

`storage.migrate` passes an open connection in `config.attributes["connection"]`;
the `alembic` command line works too, with `-x url=...` or `sqlalchemy.url`.
"""

from __future__ import annotations

from typing import Any

from alembic import context
from sqlalchemy import Connection

from storage.engine import create_catalog_engine
from storage.models import Base, UTCDateTime

config = context.config
target_metadata = Base.metadata


def render_item(type_: str, obj: Any, autogen_context: Any) -> str | bool:
    # New migrations must not import storage.models: a later change to the
    # type would silently change what an old migration creates.
    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def configure_kwargs() -> dict[str, Any]:
    return {
        "target_metadata": target_metadata,
        # SQLite cannot ALTER most constraints; batch mode copies the table instead.
        "render_as_batch": True,
        "render_item": render_item,
        "compare_type": True,
    }


def database_url() -> str:
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option(
        "sqlalchemy.url"
    )
    if not url:
        raise ValueError(
            "no catalog URL for the migration; pass -x url=sqlite:///path/catalog.db "
            "or set sqlalchemy.url"
        )
    return url


def run_migrations_offline() -> None:
    context.configure(url=database_url(), literal_binds=True, **configure_kwargs())
    with context.begin_transaction():
        context.run_migrations()


def run_with_connection(connection: Connection) -> None:
    context.configure(connection=connection, **configure_kwargs())
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        run_with_connection(connection)
        return
    engine = create_catalog_engine(database_url())
    try:
        with engine.begin() as new_connection:
            run_with_connection(new_connection)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
