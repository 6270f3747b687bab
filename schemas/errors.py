"""Error types shared by every OnModel package.

Each error subclasses the built-in exception that fits, so callers that do
not know OnModel can still catch `ValueError` or `LookupError`.
"""

from __future__ import annotations


class OnModelError(Exception):
    """Base class of every error OnModel raises on purpose."""


class SpecError(OnModelError, ValueError):
    """An invalid storyboard spec: names the field path, the value and the fix."""

    def __init__(self, field: str, value: object, message: str) -> None:
        self.field = field
        self.value = value
        self.message = message
        super().__init__(f"{field}: {message}" if field else message)


class BackendLoadError(OnModelError, RuntimeError):
    """A generator or scorer model that could not be loaded."""


class GenerationError(OnModelError, RuntimeError):
    """A generation attempt that failed for a reason worth reporting per frame."""


class ModerationError(GenerationError):
    """A hosted backend refused the request or its result; final, never retried."""


class StorageError(OnModelError, RuntimeError):
    """An object store or catalog operation that failed permanently."""


class NotFoundError(OnModelError, LookupError):
    """A run, frame or asset id that is not in the catalog."""
