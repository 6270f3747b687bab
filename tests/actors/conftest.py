"""Fixtures for the actor tests: a local Ray, a saved tiny pipeline, a network guard."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

# Unless RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER is 0, Ray binds to the machine's
# outward interface. Tests stay on loopback, without token auth or usage stats.
RAY_TEST_ENV = {
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    "RAY_AUTH_MODE": "disabled",
    "RAY_USAGE_STATS_ENABLED": "0",
}

_LOOPBACK_HOSTS = {"localhost", "127.0.0.1", "::1", None}


@pytest.fixture(scope="session")
def ray_local() -> Iterator[None]:
    """Start a local two-CPU Ray for the session, unless one is already running."""
    import ray

    if ray.is_initialized():
        yield
        return

    saved = {name: os.environ.get(name) for name in RAY_TEST_ENV}
    os.environ.update(RAY_TEST_ENV)
    ray.init(num_cpus=2, include_dashboard=False)
    try:
        yield
    finally:
        ray.shutdown()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


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
