"""Fixtures for the actor tests: a local Ray, a saved tiny pipeline, a network guard."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

_LOOPBACK_HOSTS = {"localhost", "127.0.0.1", "::1", None}


@pytest.fixture(scope="session")
def ray_local(ray_session: None) -> Iterator[None]:
    """The session's local Ray (see tests/conftest.py), under the name these tests use."""
    yield


@pytest.fixture(scope="session")
def tiny_pipeline_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Kontext pipeline written with save_pretrained, as real weights are stored."""
    from actors.tiny import save_tiny_kontext_pipeline

    return save_tiny_kontext_pipeline(tmp_path_factory.mktemp("tiny-kontext"), seed=0)


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Fail any host name lookup other than loopback; return the hosts that were tried."""
    attempts: list[str] = []
    real_getaddrinfo = socket.getaddrinfo

    def guarded_getaddrinfo(host, *args, **kwargs):  # type: ignore[no-untyped-def]
        name = host.decode() if isinstance(host, bytes) else host
        if name not in _LOOPBACK_HOSTS:
            attempts.append(str(name))
            raise OSError(f"network access blocked in tests: {name}")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", guarded_getaddrinfo)
    return attempts
