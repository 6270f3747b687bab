"""Shared test setup: Ray on loopback and offline, and the test servers.

One Ray, and one moto S3 server, serve the whole test session. PostgreSQL
tests get a fresh schema on the server that `.ci/start_services.sh` starts.
"""

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

import uuid  # noqa: E402
from collections.abc import Iterator  # noqa: E402

import boto3  # noqa: E402
import pytest  # noqa: E402
from servers import free_port, postgres_schema, set_test_aws_env  # noqa: E402

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


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of a moto S3 server on 127.0.0.1 with dummy credentials in the environment."""
    from moto.server import ThreadedMotoServer

    with pytest.MonkeyPatch.context() as patch:
        set_test_aws_env(patch, tmp_path_factory.mktemp("aws"))
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        try:
            yield f"http://{host}:{port}"
        finally:
            server.stop()


@pytest.fixture
def s3_bucket(s3_endpoint: str) -> str:
    """A new, empty bucket on the moto server."""
    name = f"onmodel-test-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket=name)
    return name


@pytest.fixture
def postgres_schema_url() -> Iterator[str]:
    """URL of an empty schema on the test PostgreSQL server; the test is skipped without one."""
    with postgres_schema() as url:
        yield url
