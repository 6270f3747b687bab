"""Fixtures for the identity tests: a dlib worker shared by the session."""

from __future__ import annotations

import pytest

from actors.identity import IdentityWorker


@pytest.fixture(scope="session")
def dlib_worker() -> IdentityWorker:
    """One dlib worker for the session: models load once, as in a long-lived actor."""
    return IdentityWorker("dlib")


@pytest.fixture
def fresh_dlib_worker() -> IdentityWorker:
    return IdentityWorker("dlib")
