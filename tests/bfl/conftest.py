"""Fixtures for the hosted `bfl` backend: a fake BFL API on loopback."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from bfl_fake_server import API_KEY, FakeBfl


@pytest.fixture
def fake_bfl() -> Iterator[FakeBfl]:
    server = FakeBfl(API_KEY).start()
    yield server
    server.stop()
