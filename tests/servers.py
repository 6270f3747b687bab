"""Test servers on 127.0.0.1: free ports, PostgreSQL schemas, AWS settings for moto."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

# Set by `.ci/start_services.sh`. Without it the PostgreSQL tests are skipped.
POSTGRES_URL_VARIABLE = "ONMODEL_TEST_POSTGRES_URL"
# Ray's worker processes use these ports, so servers under test stay outside.
RAY_WORKER_PORTS = range(10002, 20000)


def free_port() -> int:
    """Return a free TCP port on 127.0.0.1 outside Ray's worker port range."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        if port not in RAY_WORKER_PORTS:
            return port
    raise RuntimeError(
        "no free port outside 10002-19999 after 100 tries; free some ports on 127.0.0.1"
    )


def postgres_url_or_skip() -> str:
    """Return the test PostgreSQL server's URL, or skip the test when none is configured."""
    url = os.environ.get(POSTGRES_URL_VARIABLE)
    if not url:
        pytest.skip(
            f"{POSTGRES_URL_VARIABLE} is not set; start a server with "
            "`source .ci/start_services.sh` to run the PostgreSQL tests"
        )
    return url


@contextmanager
def postgres_schema() -> Iterator[str]:
    """Create an empty schema on the test PostgreSQL server; yield its URL, then drop it.

    A schema per test keeps tests independent without creating databases.
    """
    base_url = postgres_url_or_skip()
    # The name is generated here, never user input, so quoting it is enough.
    schema = f"test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(base_url)
    with admin.begin() as connection:
        connection.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    url = make_url(base_url).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as connection:
            connection.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def set_test_aws_env(patch: pytest.MonkeyPatch, folder: Path) -> None:
    """Give boto3 dummy credentials, and keep it away from the user's AWS files and metadata."""
    patch.setenv("AWS_ACCESS_KEY_ID", "testing")
    patch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    patch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    patch.delenv("AWS_SESSION_TOKEN", raising=False)
    patch.delenv("AWS_PROFILE", raising=False)
    patch.setenv("AWS_CONFIG_FILE", str(folder / "aws-config"))
    patch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(folder / "aws-credentials"))
    patch.setenv("AWS_EC2_METADATA_DISABLED", "true")
