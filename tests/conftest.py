"""Shared test setup: keep Ray on loopback and offline, one Ray per test session."""

from __future__ import annotations

import os

# Set before anything imports ray or huggingface_hub: both read these at import or start.
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
os.environ["RAY_AUTH_MODE"] = "disabled"
os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
# An actor that cannot be placed fails the test in minutes instead of hanging it.
os.environ.setdefault("ONMODEL_ACTOR_START_TIMEOUT_S", "180")

from collections.abc import Iterator  # noqa: E402

import pytest  # noqa: E402

# Logical CPUs for the test Ray: more than the 2 cores of CI, so a generator
# pool, a scorer and the tests' own tasks can all be scheduled at once.
RAY_TEST_CPUS = 8


@pytest.fixture(scope="session")
def ray_session() -> Iterator[None]:
    """Start one local Ray for the whole test session and stop it at the end."""
    import ray

    if not ray.is_initialized():
        ray.init(num_cpus=RAY_TEST_CPUS, include_dashboard=False, configure_logging=False)
    yield
    ray.shutdown()
