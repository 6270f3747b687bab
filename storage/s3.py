"""The object store on S3 or an S3-compatible server, through boto3."""

from __future__ import annotations

import functools
import logging
import mimetypes
import random
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any, TypeVar

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    HTTPClientError,
    IncompleteReadError,
    NoCredentialsError,
    PartialCredentialsError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

from schemas.errors import NotFoundError, StorageError
from storage.objects import KEY_PATTERN, ObjectStore, check_key, key_for

logger = logging.getLogger(__name__)

T = TypeVar("T")

# Tries per request, the first included. Five tries with doubling delays ride
# out about 8 s of throttling or a restarting endpoint before the error
# reaches the caller.
DEFAULT_MAX_ATTEMPTS = 5
# Delay before the first retry, doubled after each further failure.
DEFAULT_BACKOFF_S = 0.5
# Upper bound of one delay, so a long outage fails in bounded time.
MAX_BACKOFF_S = 8.0
# Seconds to open a connection and to wait for a response. A PUT of a few MB
# finishes well inside a minute on any link that can serve images.
CONNECT_TIMEOUT_S = 10.0
READ_TIMEOUT_S = 60.0

# S3 error codes that describe a passing condition rather than a bad request.
TRANSIENT_CODES = frozenset(
    {
        "InternalError",
        "RequestTimeout",
        "RequestTimeoutException",
        "ServiceUnavailable",
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "RequestLimitExceeded",
        "TooManyRequestsException",
    }
)
NOT_FOUND_CODES = frozenset({"404", "NoSuchKey", "NotFound"})


def _is_transient(exc: Exception) -> bool:
    # botocore's ConnectionError covers refused connections, connect timeouts
    # and TLS failures; HTTPClientError covers dropped connections and read
    # timeouts.
    if isinstance(exc, BotoConnectionError | HTTPClientError | IncompleteReadError):
        return True
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return error.get("Code") in TRANSIENT_CODES or status >= 500 or status == 429
    return False


def _is_not_found(exc: Exception) -> bool:
    return (
        isinstance(exc, ClientError)
        and exc.response.get("Error", {}).get("Code") in NOT_FOUND_CODES
    )


def _describe(exc: Exception) -> str:
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", "?")
        return f"{error.get('Code', '?')} (HTTP {status}): {error.get('Message', '')}".rstrip(": ")
    return f"{type(exc).__name__}: {exc}"


class S3ObjectStore(ObjectStore):
    """Objects in one bucket under an optional prefix.

    S3 makes a PUT visible only once the whole object is stored, so writes are
    atomic without a temp object. Credentials come from boto3's standard chain
    (environment, shared files, instance role).
    """

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        backoff_s: float = DEFAULT_BACKOFF_S,
        client: Any | None = None,
    ) -> None:
        if not bucket:
            raise ValueError(
                "bucket is empty; use an object store location like s3://bucket/prefix"
            )
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be an integer >= 1, got {max_attempts}")
        if backoff_s < 0:
            raise ValueError(f"backoff_s must be >= 0, got {backoff_s}")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.endpoint_url = endpoint_url
        self.max_attempts = max_attempts
        self.backoff_s = backoff_s
        if client is None:
            config = Config(
                connect_timeout=CONNECT_TIMEOUT_S,
                read_timeout=READ_TIMEOUT_S,
                # This class retries and logs transient errors itself; botocore's
                # own retries would multiply the attempts and stay silent.
                retries={"total_max_attempts": 1, "mode": "standard"},
            )
            client = boto3.session.Session().client("s3", endpoint_url=endpoint_url, config=config)
        self.client = client

    @classmethod
    def from_uri(cls, uri: str, *, endpoint_url: str | None = None) -> S3ObjectStore:
        """Open `s3://bucket/prefix`."""
        if not uri.startswith("s3://"):
            raise ValueError(f"object store location {uri!r} is not an s3:// URI")
        bucket, _, prefix = uri.removeprefix("s3://").partition("/")
        if not bucket:
            raise ValueError(f"object store location {uri!r} has no bucket; use s3://bucket/prefix")
        return cls(bucket, prefix, endpoint_url=endpoint_url)

    def __repr__(self) -> str:
        return f"S3ObjectStore({self.uri_prefix!r}, endpoint_url={self.endpoint_url!r})"

    @property
    def uri_prefix(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"

    def _full_key(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _call(self, operation: str, key: str, request: Callable[[], T]) -> T:
        """Run `request`, retrying transient errors with exponential backoff and jitter."""
        for attempt in range(1, self.max_attempts + 1):
            try:
                return request()
            except (NoCredentialsError, PartialCredentialsError) as exc:
                raise StorageError(
                    f"{operation} {self.uri_prefix}/{key} failed: no usable AWS credentials "
                    f"({exc}); set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, a profile "
                    "or an instance role"
                ) from exc
            except (BotoCoreError, ClientError) as exc:
                if _is_not_found(exc) or not _is_transient(exc):
                    raise
                if attempt == self.max_attempts:
                    raise StorageError(
                        f"{operation} {self.uri_prefix}/{key} failed after {attempt} tries: "
                        f"{_describe(exc)}; check that the endpoint is reachable and retry later"
                    ) from exc
                delay = min(MAX_BACKOFF_S, self.backoff_s * 2 ** (attempt - 1))
                # Jitter spreads the retries of many actors that failed together.
                delay *= random.uniform(0.5, 1.0)
                logger.warning(
                    "%s %s/%s: transient error %s; retry %d of %d in %.2f s",
                    operation,
                    self.uri_prefix,
                    key,
                    _describe(exc),
                    attempt,
                    self.max_attempts - 1,
                    delay,
                )
                time.sleep(delay)
        raise AssertionError("unreachable: the loop returns or raises")

    def _permanent(self, operation: str, key: str, exc: Exception) -> StorageError:
        return StorageError(
            f"{operation} {self.uri_prefix}/{key} failed: {_describe(exc)}; "
            "check the bucket name, its permissions and the endpoint URL"
        )

    def put(self, data: bytes, suffix: str = ".png") -> str:
        key, digest = key_for(data, suffix)
        # HEAD first: content addressing makes an existing key the same bytes,
        # so the upload can be skipped.
        if self.exists(key):
            return key

        content_type = mimetypes.guess_type(f"x{suffix}")[0] or "application/octet-stream"
        full_key = self._full_key(key)
        try:
            self._call(
                "put",
                key,
                lambda: self.client.put_object(
                    Bucket=self.bucket,
                    Key=full_key,
                    Body=data,
                    ContentType=content_type,
                    Metadata={"sha256": digest},
                ),
            )
        except (BotoCoreError, ClientError) as exc:
            raise self._permanent("put", key, exc) from exc
        logger.debug("stored object %s/%s (%d bytes)", self.uri_prefix, key, len(data))
        return key

    def get(self, key: str) -> bytes:
        full_key = self._full_key(key)

        def request() -> bytes:
            response = self.client.get_object(Bucket=self.bucket, Key=full_key)
            body: bytes = response["Body"].read()
            return body

        try:
            return self._call("get", key, request)
        except (BotoCoreError, ClientError) as exc:
            if _is_not_found(exc):
                raise NotFoundError(
                    f"object {key!r} not found in {self.uri_prefix}; "
                    "check the object store location"
                ) from None
            raise self._permanent("get", key, exc) from exc

    def exists(self, key: str) -> bool:
        full_key = self._full_key(key)
        try:
            self._call(
                "head", key, lambda: self.client.head_object(Bucket=self.bucket, Key=full_key)
            )
        except (BotoCoreError, ClientError) as exc:
            if _is_not_found(exc):
                return False
            raise self._permanent("head", key, exc) from exc
        return True

    def delete(self, key: str) -> None:
        """Remove the object; S3 treats a missing object as deleted."""
        full_key = self._full_key(key)
        try:
            self._call(
                "delete", key, lambda: self.client.delete_object(Bucket=self.bucket, Key=full_key)
            )
        except (BotoCoreError, ClientError) as exc:
            raise self._permanent("delete", key, exc) from exc

    def iter_keys(self) -> Iterator[tuple[str, datetime]]:
        list_prefix = f"{self.prefix}/sha256/" if self.prefix else "sha256/"
        strip = len(self.prefix) + 1 if self.prefix else 0
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": list_prefix}
            if token:
                kwargs["ContinuationToken"] = token
            try:
                page = self._call(
                    "list", "sha256/", functools.partial(self.client.list_objects_v2, **kwargs)
                )
            except (BotoCoreError, ClientError) as exc:
                raise self._permanent("list", "sha256/", exc) from exc
            for item in page.get("Contents", []):
                key = item["Key"][strip:]
                if KEY_PATTERN.match(key):
                    yield key, item["LastModified"].astimezone(UTC)
            if not page.get("IsTruncated"):
                return
            token = page["NextContinuationToken"]

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._full_key(key)}"

    def presigned_url(self, key: str, expires_s: int = 3600) -> str:
        """Return a URL that allows a GET of the object without credentials for `expires_s` s."""
        if not 1 <= expires_s <= 7 * 24 * 3600:
            # Seven days is the longest lifetime SigV4 presigned URLs allow.
            raise ValueError(f"expires_s must be between 1 and 604800 seconds, got {expires_s}")
        url: str = self.client.generate_presigned_url(
            "get_object",
            Params={"Bucket": self.bucket, "Key": self._full_key(key)},
            ExpiresIn=expires_s,
        )
        return url
