"""Object stores keyed by the SHA-256 of the content.

A key has the form `sha256/<hex[:2]>/<hex><suffix>`: the first two hex digits
shard the objects over 256 folders so that no folder grows too large.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import tempfile
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from schemas.errors import NotFoundError, StorageError

logger = logging.getLogger(__name__)

KEY_PATTERN = re.compile(
    r"^sha256/(?P<shard>[0-9a-f]{2})/(?P=shard)[0-9a-f]{62}(?P<suffix>\.[A-Za-z0-9]{1,16})?$"
)
SUFFIX_PATTERN = re.compile(r"^(\.[A-Za-z0-9]{1,16})?$")
# Temporary files of unfinished local writes start with this prefix. A write
# killed between create and rename leaves one behind; `sweep_temp_files`
# removes them.
TEMP_PREFIX = ".tmp-"


def check_suffix(suffix: str) -> str:
    """Return `suffix` if it is empty or one dot and 1-16 letters or digits."""
    if not SUFFIX_PATTERN.match(suffix):
        raise ValueError(
            f"suffix {suffix!r} is invalid; use '' or a dot and 1-16 letters or digits, e.g. '.png'"
        )
    return suffix


def check_key(key: str) -> str:
    """Return `key` if it has the form that `put` returns, else raise ValueError.

    Every store checks keys before touching storage, so a key such as
    `../../etc/passwd` can never reach a path or an S3 request.
    """
    if not isinstance(key, str) or not KEY_PATTERN.match(key):
        raise ValueError(
            f"object key {key!r} is invalid; expected 'sha256/<2 hex>/<64 hex><suffix>' "
            "as returned by put()"
        )
    return key


def key_for(data: bytes, suffix: str = ".png") -> tuple[str, str]:
    """Return (key, hex digest) of `data` stored with `suffix`."""
    digest = hashlib.sha256(data).hexdigest()
    return f"sha256/{digest[:2]}/{digest}{check_suffix(suffix)}", digest


class ObjectStore(ABC):
    """Content-addressed blobs. `put` is idempotent: the same bytes give the same key."""

    @abstractmethod
    def put(self, data: bytes, suffix: str = ".png") -> str:
        """Write atomically and return the key, `sha256/<hex[:2]>/<hex><suffix>`."""

    @abstractmethod
    def get(self, key: str) -> bytes:
        """Raise NotFoundError when absent."""

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def delete(self, key: str) -> None: ...

    @abstractmethod
    def iter_keys(self) -> Iterator[tuple[str, datetime]]:
        """Every key with its last-modified time (UTC)."""

    @abstractmethod
    def uri(self, key: str) -> str:
        """A user-facing location: a local path or an s3:// URI."""

    def local_path(self, key: str) -> str | None:
        """A path on this machine when the store is a local folder, else None."""
        return None


class LocalObjectStore(ObjectStore):
    """Objects as files under one folder, written with temp file, fsync and rename."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).expanduser().resolve()
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(
                f"object store folder {str(self.root)!r} could not be created: {exc}; "
                "check the path and its permissions"
            ) from exc

    def __repr__(self) -> str:
        return f"LocalObjectStore({str(self.root)!r})"

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def put(self, data: bytes, suffix: str = ".png") -> str:
        key, _ = key_for(data, suffix)
        path = self.root / key
        if path.exists():
            # A fresh modification time keeps a re-stored object inside gc's grace period.
            os.utime(path)
            return key

        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._write_atomically(path, data)
        except OSError as exc:
            raise StorageError(
                f"writing object {key!r} under {str(self.root)!r} failed: {exc}"
            ) from exc
        logger.debug("stored object %s (%d bytes)", key, len(data))
        return key

    @staticmethod
    def _write_atomically(path: Path, data: bytes) -> None:
        # The temp file lives in the target folder so that os.replace is a rename
        # within one file system, which POSIX makes atomic: readers see either no
        # file or the whole file, never a partial one.
        fd, temp_name = tempfile.mkstemp(dir=path.parent, prefix=TEMP_PREFIX)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            # mkstemp creates files as 0600; objects are shared read-only data.
            os.chmod(temp_name, 0o644)
            os.replace(temp_name, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp_name)
            raise
        _fsync_folder(path.parent)

    def get(self, key: str) -> bytes:
        path = self._path(key)
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise NotFoundError(
                f"object {key!r} not found in {str(self.root)!r}; check the object store location"
            ) from None
        except OSError as exc:
            raise StorageError(
                f"reading object {key!r} from {str(self.root)!r} failed: {exc}"
            ) from exc

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete(self, key: str) -> None:
        """Remove the object; a missing object is not an error."""
        with contextlib.suppress(FileNotFoundError):
            self._path(key).unlink()

    def iter_keys(self) -> Iterator[tuple[str, datetime]]:
        base = self.root / "sha256"
        if not base.is_dir():
            return
        for shard in sorted(base.iterdir()):
            if not shard.is_dir():
                continue
            for entry in sorted(shard.iterdir()):
                key = f"sha256/{shard.name}/{entry.name}"
                if not KEY_PATTERN.match(key):
                    # Temp files of writes in progress, or files someone else put here.
                    continue
                try:
                    mtime = entry.stat().st_mtime
                except FileNotFoundError:
                    continue  # deleted while listing
                yield key, datetime.fromtimestamp(mtime, UTC)

    def uri(self, key: str) -> str:
        return str(self._path(key))

    def local_path(self, key: str) -> str | None:
        return str(self._path(key))

    def sweep_temp_files(self, min_age_s: float = 3600.0) -> int:
        """Delete temp files of interrupted writes older than `min_age_s`; return the count.

        The age limit keeps writes that are still in progress in other
        processes safe.
        """
        base = self.root / "sha256"
        if not base.is_dir():
            return 0
        cutoff = time.time() - min_age_s
        removed = 0
        for temp in base.glob(f"*/{TEMP_PREFIX}*"):
            try:
                if temp.stat().st_mtime <= cutoff:
                    temp.unlink()
                    removed += 1
            except FileNotFoundError:
                continue
        if removed:
            logger.info("removed %d temp files of interrupted writes under %s", removed, self.root)
        return removed


def _fsync_folder(folder: Path) -> None:
    # Syncing the folder makes the rename itself durable across a power loss.
    # Some file systems do not allow opening a folder; the data is synced anyway.
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def open_store(location: str, *, s3_endpoint_url: str | None = None) -> ObjectStore:
    """Open `s3://bucket/prefix` with boto3, anything else as a local folder.

    A `file://` prefix on a folder path is accepted and removed.
    """
    if location.startswith("s3://"):
        from storage.s3 import S3ObjectStore

        return S3ObjectStore.from_uri(location, endpoint_url=s3_endpoint_url)
    if location.startswith("file://"):
        return LocalObjectStore(location.removeprefix("file://"))
    if "://" in location:
        raise ValueError(
            f"object store location {location!r} is invalid; use a folder path or s3://bucket/prefix"
        )
    return LocalObjectStore(location)
