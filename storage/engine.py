"""SQLAlchemy engines for the catalog, set up for many threads and processes."""

from __future__ import annotations

import logging
import os
import sqlite3
import time
import weakref
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import ConnectionPoolEntry, StaticPool

logger = logging.getLogger(__name__)

# How long a SQLite writer waits for another writer's lock before failing
# with "database is locked". Catalog transactions last milliseconds, so 30 s
# only runs out when a process keeps a transaction open far too long.
SQLITE_BUSY_TIMEOUT_MS = 30_000
# Execution option that marks a connection as read-only: on SQLite its
# transactions start DEFERRED, so reads do not take the write lock.
READ_ONLY = "onmodel_read_only"


def is_sqlite_memory(url: URL) -> bool:
    return url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:")


def create_catalog_engine(url: str) -> Engine:
    """Create an engine for a SQLite file or a PostgreSQL URL.

    Raises ValueError when the URL cannot be parsed.
    """
    try:
        parsed = make_url(url)
    except Exception as exc:
        raise ValueError(
            f"catalog URL {url!r} is invalid: {exc}; use e.g. sqlite:///path/catalog.db "
            "or postgresql+psycopg://user@host/db"
        ) from exc

    if parsed.get_backend_name() == "sqlite":
        engine = _create_sqlite_engine(parsed)
    else:
        # A pre-ping replaces connections that the server closed while pooled,
        # e.g. after a database restart.
        engine = create_engine(parsed, pool_pre_ping=True)
    _dispose_pool_after_fork(engine)
    return engine


def _create_sqlite_engine(url: URL) -> Engine:
    kwargs: dict[str, Any] = {"connect_args": {"check_same_thread": False}}
    if is_sqlite_memory(url):
        # An in-memory database exists per connection, so every session must
        # share one connection. It is for tests and demos within one thread.
        kwargs["poolclass"] = StaticPool
    else:
        assert url.database is not None
        Path(url.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, **kwargs)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
        # pysqlite starts transactions on its own and too late (at the first
        # write), which turns concurrent read-then-write transactions into
        # immediate "database is locked" errors. Its handling is turned off
        # here and `_on_begin` starts each transaction explicitly.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {int(SQLITE_BUSY_TIMEOUT_MS)}")
            # WAL lets readers run while one writer commits; the setting is
            # stored in the file, so this is a no-op after the first connection.
            _enable_wal(cursor)
            cursor.execute("PRAGMA foreign_keys = ON")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        # IMMEDIATE takes the write lock at BEGIN, where busy_timeout applies,
        # instead of at the first write of a transaction that has already read.
        read_only = connection.get_execution_options().get(READ_ONLY, False)
        connection.exec_driver_sql("BEGIN DEFERRED" if read_only else "BEGIN IMMEDIATE")

    return engine


def _enable_wal(cursor: Any) -> None:
    """Switch the connection's database file to WAL mode."""
    # Connections that switch a new file to WAL at the same moment can deadlock
    # on their locks. SQLite then fails one at once with "database is locked"
    # instead of calling the busy handler, when waiting could deadlock
    # (https://sqlite.org/c3ref/busy_handler.html). So the switch is retried
    # until the busy timeout has passed.
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    delay = 0.005
    while True:
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() + delay > deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 0.2)


def _dispose_pool_after_fork(engine: Engine) -> None:
    # A forked child must not reuse the parent's pooled connections: both
    # processes would talk over one socket or one SQLite handle. close=False
    # leaves the parent's connections open for the parent.
    engine_ref = weakref.ref(engine)

    def dispose_in_child() -> None:
        child_engine = engine_ref()
        if child_engine is not None:
            child_engine.dispose(close=False)

    if hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=dispose_in_child)
