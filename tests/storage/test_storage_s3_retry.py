"""Retries of the S3 store: transient errors are retried and logged, permanent ones are not."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse

from schemas.errors import NotFoundError, StorageError
from storage.s3 import S3ObjectStore

DATA = b"frame bytes"

SLOW_DOWN = (
    b'<?xml version="1.0" encoding="UTF-8"?>'
    b"<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>"
)


class _Body:
    def __init__(self, payload: bytes) -> None:
        self.payload = payload

    def stream(self, **_kwargs: Any) -> Iterator[bytes]:
        yield self.payload


def fail_first_requests(store: S3ObjectStore, operation: str, failures: int) -> list[str]:
    """Make the first `failures` requests of `operation` fail with HTTP 503 SlowDown.

    The remaining requests reach the real server. Returns the list that
    records each intercepted request.
    """
    intercepted: list[str] = []

    def before_send(request: Any, **_kwargs: Any) -> AWSResponse | None:
        if len(intercepted) < failures:
            intercepted.append(request.method)
            return AWSResponse(request.url, 503, {}, _Body(SLOW_DOWN))
        return None

    store.client.meta.events.register(f"before-send.s3.{operation}", before_send)
    return intercepted


def closed_port() -> int:
    # Bind and release a port: nothing listens there afterwards, so a
    # connection is refused at once.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def test_throttled_put_is_retried(
    s3_store: S3ObjectStore, caplog: pytest.LogCaptureFixture
) -> None:
    intercepted = fail_first_requests(s3_store, "PutObject", failures=2)

    with caplog.at_level(logging.WARNING, logger="storage.s3"):
        key = s3_store.put(DATA, suffix=".bin")

    assert intercepted == ["PUT", "PUT"]
    assert s3_store.get(key) == DATA
    retries = [record for record in caplog.records if "transient error" in record.message]
    assert len(retries) == 2
    assert "SlowDown" in retries[0].message
    assert key in retries[0].message


def test_throttled_get_is_retried(s3_store: S3ObjectStore) -> None:
    key = s3_store.put(DATA, suffix=".bin")
    intercepted = fail_first_requests(s3_store, "GetObject", failures=1)

    assert s3_store.get(key) == DATA
    assert intercepted == ["GET"]


def test_retries_stop_after_max_attempts(s3_endpoint: str, s3_bucket: str) -> None:
    store = S3ObjectStore(s3_bucket, endpoint_url=s3_endpoint, max_attempts=3, backoff_s=0.01)
    intercepted = fail_first_requests(store, "HeadObject", failures=10)

    with pytest.raises(StorageError, match="after 3 tries: SlowDown"):
        store.exists("sha256/ab/ab" + "0" * 62 + ".png")
    assert len(intercepted) == 3


def test_unreachable_endpoint_raises_storage_error(caplog: pytest.LogCaptureFixture) -> None:
    store = S3ObjectStore(
        "bucket",
        endpoint_url=f"http://127.0.0.1:{closed_port()}",
        max_attempts=3,
        backoff_s=0.01,
    )

    with (
        caplog.at_level(logging.WARNING, logger="storage.s3"),
        pytest.raises(StorageError, match="after 3 tries.*reachable"),
    ):
        store.put(DATA)
    assert len([r for r in caplog.records if "transient error" in r.message]) == 2


def test_missing_object_is_not_retried(s3_store: S3ObjectStore) -> None:
    calls: list[str] = []
    s3_store.client.meta.events.register(
        "before-call.s3.GetObject", lambda **_: calls.append("get")
    )

    with pytest.raises(NotFoundError):
        s3_store.get("sha256/ab/ab" + "0" * 62 + ".png")
    assert calls == ["get"]


def test_invalid_retry_settings_rejected() -> None:
    with pytest.raises(ValueError, match="max_attempts"):
        S3ObjectStore("bucket", max_attempts=0)
    with pytest.raises(ValueError, match="backoff_s"):
        S3ObjectStore("bucket", backoff_s=-1)


@pytest.mark.parametrize("uri", ["s3://", "s3:///prefix"])
def test_uri_without_bucket_rejected(uri: str) -> None:
    with pytest.raises(ValueError, match="no bucket"):
        S3ObjectStore.from_uri(uri)
