"""Retry catalog calls that fail with a transient database error.

A run writes to the catalog for every attempt, so a short database outage
(a PostgreSQL restart or failover, a connection dropped by a proxy, SQLite's
write lock held past its busy timeout) would otherwise fail the whole run.
The driver wraps its catalog in `RetryingCatalog`. Errors that a retry
cannot fix (a missing table, a constraint violation, a full disk) are
raised at once.

A write whose connection dropped during COMMIT may have been applied, so a
retried call must be idempotent or its caller must check the outcome. Every
Catalog write that the runner makes is idempotent except `start_attempt`
(DuplicateRowError on a retry) and `set_run_state_if` (False on a retry);
the runner handles both.
"""

from __future__ import annotations

import functools
import logging
import random
import time
from collections.abc import Callable
from typing import Any, cast

from sqlalchemy.exc import DBAPIError

from orchestrator.settings import Settings
from schemas.errors import StorageError
from storage.catalog import Catalog

logger = logging.getLogger(__name__)

# Upper bound of one delay, so that a long outage fails in bounded time.
MAX_BACKOFF_S = 8.0
# Driver messages of passing conditions, lower-cased: SQLite's lock errors,
# and psycopg's connection errors, which often carry no SQLSTATE.
TRANSIENT_MESSAGES = (
    "database is locked",
    "database table is locked",
    "could not connect",
    "connection refused",
    "connection failed",
    "server closed the connection",
    "connection is closed",
    "connection reset",
    "connection timed out",
    "terminating connection",
    "the database system is starting up",
    "the database system is shutting down",
    "ssl connection has been closed",
    "consuming input failed",
)
# PostgreSQL SQLSTATEs that a retry can fix: class 08 (connection exception),
# serialization failure, deadlock, server shutdown or start-up, and too many
# connections.
TRANSIENT_SQLSTATES = ("08", "40001", "40P01", "57P01", "57P02", "57P03", "53300")


def is_transient(exc: BaseException) -> bool:
    """Return True when `exc` is a database error that a later retry may not hit."""
    cause = exc.__cause__ if isinstance(exc, StorageError) else exc
    if not isinstance(cause, DBAPIError):
        return False
    if cause.connection_invalidated:
        return True
    sqlstate = getattr(cause.orig, "sqlstate", None) or getattr(cause.orig, "pgcode", None)
    if isinstance(sqlstate, str) and sqlstate.startswith(TRANSIENT_SQLSTATES):
        return True
    text = str(cause.orig).lower()
    return any(marker in text for marker in TRANSIENT_MESSAGES)


class RetryingCatalog:
    """A proxy of a Catalog whose public methods retry transient database errors."""

    def __init__(self, catalog: Catalog, *, max_attempts: int, backoff_s: float) -> None:
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be an integer >= 1, got {max_attempts}")
        if backoff_s < 0:
            raise ValueError(f"backoff_s must be >= 0, got {backoff_s}")
        self._catalog = catalog
        self._max_attempts = max_attempts
        self._backoff_s = backoff_s

    def __repr__(self) -> str:
        return f"RetryingCatalog({self._catalog!r}, max_attempts={self._max_attempts})"

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._catalog, name)
        if name.startswith("_") or not callable(value):
            return value

        @functools.wraps(value)
        def call(*args: Any, **kwargs: Any) -> Any:
            return self._call(name, value, args, kwargs)

        return call

    def _call(
        self, name: str, method: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        for attempt in range(1, self._max_attempts + 1):
            try:
                return method(*args, **kwargs)
            except (StorageError, DBAPIError) as exc:
                if not is_transient(exc) or attempt == self._max_attempts:
                    if attempt > 1:
                        logger.error("catalog %s failed after %d tries: %s", name, attempt, exc)
                    raise
                delay = min(MAX_BACKOFF_S, self._backoff_s * 2 ** (attempt - 1))
                # Jitter spreads the retries of drivers that failed together.
                delay *= random.uniform(0.5, 1.0)
                logger.warning(
                    "catalog %s: transient database error (%s); retry %d of %d in %.2f s",
                    name,
                    exc,
                    attempt,
                    self._max_attempts - 1,
                    delay,
                )
                time.sleep(delay)
        raise AssertionError("unreachable: the loop returns or raises")


def with_retries(catalog: Catalog, settings: Settings) -> Catalog:
    """Return `catalog` behind a RetryingCatalog set up from `settings`."""
    if isinstance(catalog, RetryingCatalog):
        return catalog
    proxy = RetryingCatalog(
        catalog,
        max_attempts=settings.catalog_max_attempts,
        backoff_s=settings.catalog_retry_backoff_s,
    )
    # The proxy has every method of Catalog; the cast keeps callers typed.
    return cast(Catalog, proxy)
