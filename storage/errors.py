"""Errors that only the storage package raises; the shared ones are in `schemas.errors`."""

from __future__ import annotations

from schemas.errors import NotFoundError, StorageError


class AmbiguousIdError(NotFoundError):
    """An id prefix that matches more than one row, so no single row was found."""


class DuplicateRowError(StorageError, ValueError):
    """A row that would break a uniqueness rule, such as a reused attempt number."""
