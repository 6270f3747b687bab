"""Object store behaviour, on a local folder and on an S3 server on loopback."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from schemas.errors import NotFoundError, StorageError
from storage.objects import TEMP_PREFIX, LocalObjectStore, ObjectStore, open_store
from storage.s3 import S3ObjectStore

PNG_BYTES = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4

BAD_KEYS = [
    "../../etc/passwd",
    "sha256/../../etc/passwd",
    "/etc/passwd",
    "sha256/ab/" + "ab" + "0" * 62 + "/../x",
    "sha256/ab/" + "cd" + "0" * 62 + ".png",  # shard does not match the digest
    "sha256/AB/" + "AB" + "0" * 62 + ".png",  # upper-case hex
    "sha256/ab/" + "ab" + "0" * 61 + ".png",  # digest one digit short
    "sha256/ab/" + "ab" + "0" * 62 + ".p/ng",
    "sha256/ab/" + "ab" + "0" * 62 + ".png\x00",
    "",
    "sha256\\ab\\" + "ab" + "0" * 62,
]


def expected_key(data: bytes, suffix: str = ".png") -> str:
    digest = hashlib.sha256(data).hexdigest()
    return f"sha256/{digest[:2]}/{digest}{suffix}"


def test_put_returns_content_key(store: ObjectStore) -> None:
    key = store.put(PNG_BYTES)

    assert key == expected_key(PNG_BYTES)
    assert store.get(key) == PNG_BYTES
    assert store.exists(key)


def test_put_with_other_suffix(store: ObjectStore) -> None:
    key = store.put(b"{}", suffix=".json")

    assert key == expected_key(b"{}", ".json")
    assert store.get(key) == b"{}"


def test_put_empty_suffix(store: ObjectStore) -> None:
    key = store.put(b"raw", suffix="")

    assert key == expected_key(b"raw", "")
    assert store.get(key) == b"raw"


def test_put_is_idempotent(store: ObjectStore) -> None:
    first = store.put(PNG_BYTES)
    second = store.put(PNG_BYTES)

    assert first == second
    assert [key for key, _ in store.iter_keys()] == [first]


def test_get_missing_raises_not_found(store: ObjectStore) -> None:
    missing = expected_key(b"never stored")

    with pytest.raises(NotFoundError, match="not found"):
        store.get(missing)
    assert not store.exists(missing)


def test_delete_removes_object(store: ObjectStore) -> None:
    key = store.put(PNG_BYTES)

    store.delete(key)

    assert not store.exists(key)
    with pytest.raises(NotFoundError):
        store.get(key)


def test_delete_missing_is_no_error(store: ObjectStore) -> None:
    store.delete(expected_key(b"never stored"))


@pytest.mark.parametrize("bad_key", BAD_KEYS)
def test_invalid_keys_rejected(store: ObjectStore, bad_key: str) -> None:
    with pytest.raises(ValueError, match="invalid"):
        store.get(bad_key)
    with pytest.raises(ValueError, match="invalid"):
        store.exists(bad_key)
    with pytest.raises(ValueError, match="invalid"):
        store.delete(bad_key)
    with pytest.raises(ValueError, match="invalid"):
        store.uri(bad_key)


@pytest.mark.parametrize("bad_suffix", ["png", "./png", ".png/../x", "." + "a" * 17, ".p g"])
def test_invalid_suffix_rejected(store: ObjectStore, bad_suffix: str) -> None:
    with pytest.raises(ValueError, match="suffix"):
        store.put(b"data", suffix=bad_suffix)


def test_iter_keys_lists_every_object(store: ObjectStore) -> None:
    before = datetime.now(UTC) - timedelta(seconds=5)
    keys = {store.put(f"image {index}".encode()) for index in range(5)}

    listed = dict(store.iter_keys())

    assert set(listed) == keys
    for modified in listed.values():
        assert modified.tzinfo is not None
        assert modified.utcoffset() == timedelta(0)
        assert before <= modified <= datetime.now(UTC) + timedelta(seconds=5)


def test_iter_keys_empty_store(store: ObjectStore) -> None:
    assert list(store.iter_keys()) == []


def test_local_uri_is_absolute_path(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path / "objects")
    key = store.put(PNG_BYTES)

    path = store.local_path(key)

    assert path is not None
    assert os.path.isabs(path)
    assert store.uri(key) == path
    assert Path(path).read_bytes() == PNG_BYTES
    assert Path(path).is_relative_to(tmp_path / "objects")


def test_local_write_failure_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = LocalObjectStore(tmp_path / "objects")

    def failing_fsync(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(StorageError, match="No space left"):
        store.put(PNG_BYTES)
    monkeypatch.undo()

    key = expected_key(PNG_BYTES)
    assert not store.exists(key)
    assert list(store.iter_keys()) == []
    leftovers = [p for p in (tmp_path / "objects").rglob("*") if p.is_file()]
    assert leftovers == []


def test_local_replace_failure_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = LocalObjectStore(tmp_path / "objects")

    def failing_replace(source: str, target: str) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(StorageError, match="Input/output error"):
        store.put(PNG_BYTES)
    monkeypatch.undo()

    assert not store.exists(expected_key(PNG_BYTES))
    assert [p for p in (tmp_path / "objects").rglob("*") if p.is_file()] == []


def test_local_killed_writer_leaves_no_object(tmp_path: Path) -> None:
    # The child writes the data, then blocks in fsync until it is killed: the
    # state a crash or OOM kill in the middle of put() leaves behind.
    root = tmp_path / "objects"
    ready = tmp_path / "ready"
    child = textwrap.dedent(
        f"""
        import os, pathlib, time
        from storage.objects import LocalObjectStore

        def hang(fd):
            pathlib.Path({str(ready)!r}).touch()
            time.sleep(60)

        os.fsync = hang
        LocalObjectStore({str(root)!r}).put({PNG_BYTES!r})
        """
    )
    process = subprocess.Popen([sys.executable, "-c", child])
    try:
        deadline = time.monotonic() + 30
        while not ready.exists():
            assert process.poll() is None, "writer exited before reaching fsync"
            assert time.monotonic() < deadline, "writer did not reach fsync within 30 s"
            time.sleep(0.02)
    finally:
        process.kill()
        process.wait()

    store = LocalObjectStore(root)
    key = expected_key(PNG_BYTES)
    assert not store.exists(key)
    with pytest.raises(NotFoundError):
        store.get(key)
    assert list(store.iter_keys()) == []
    temp_files = list(root.rglob(f"{TEMP_PREFIX}*"))
    assert len(temp_files) == 1

    assert store.sweep_temp_files(min_age_s=3600) == 0
    assert store.sweep_temp_files(min_age_s=0) == 1
    assert list(root.rglob(f"{TEMP_PREFIX}*")) == []

    assert store.put(PNG_BYTES) == key
    assert store.get(key) == PNG_BYTES


def test_local_put_after_partial_file_in_folder(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path / "objects")
    key = expected_key(PNG_BYTES)
    shard = tmp_path / "objects" / Path(key).parent
    shard.mkdir(parents=True)
    (shard / f"{TEMP_PREFIX}leftover").write_bytes(PNG_BYTES[:10])

    assert store.put(PNG_BYTES) == key
    assert [listed for listed, _ in store.iter_keys()] == [key]


def test_open_store_local_folder(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "objects"))

    assert isinstance(store, LocalObjectStore)
    assert store.root == (tmp_path / "objects").resolve()


def test_open_store_file_url(tmp_path: Path) -> None:
    store = open_store(f"file://{tmp_path / 'objects'}")

    assert isinstance(store, LocalObjectStore)
    assert store.root == (tmp_path / "objects").resolve()


def test_open_store_rejects_other_schemes() -> None:
    with pytest.raises(ValueError, match="gs://bucket"):
        open_store("gs://bucket/prefix")


def test_open_store_s3(s3_endpoint: str, s3_bucket: str) -> None:
    store = open_store(f"s3://{s3_bucket}/team/objects", s3_endpoint_url=s3_endpoint)

    assert isinstance(store, S3ObjectStore)
    key = store.put(PNG_BYTES)
    assert store.uri(key) == f"s3://{s3_bucket}/team/objects/{key}"
    assert store.local_path(key) is None
    assert store.get(key) == PNG_BYTES


def test_s3_objects_live_under_prefix(s3_store: S3ObjectStore) -> None:
    key = s3_store.put(PNG_BYTES)

    listed = s3_store.client.list_objects_v2(Bucket=s3_store.bucket)
    assert [item["Key"] for item in listed["Contents"]] == [f"objects/{key}"]
    head = s3_store.client.head_object(Bucket=s3_store.bucket, Key=f"objects/{key}")
    assert head["ContentType"] == "image/png"
    assert head["Metadata"]["sha256"] == hashlib.sha256(PNG_BYTES).hexdigest()


def test_s3_iter_keys_ignores_foreign_objects(s3_store: S3ObjectStore) -> None:
    key = s3_store.put(PNG_BYTES)
    s3_store.client.put_object(Bucket=s3_store.bucket, Key="objects/sha256/notes.txt", Body=b"x")
    s3_store.client.put_object(Bucket=s3_store.bucket, Key="elsewhere/file", Body=b"x")

    assert [listed for listed, _ in s3_store.iter_keys()] == [key]


def test_s3_iter_keys_pages(s3_store: S3ObjectStore) -> None:
    keys = {s3_store.put(f"image {index}".encode()) for index in range(7)}
    pages: list[int] = []
    original = s3_store.client.list_objects_v2

    def small_pages(**kwargs: object) -> dict[str, object]:
        response: dict[str, object] = original(**kwargs, MaxKeys=3)
        pages.append(len(response.get("Contents", [])))  # type: ignore[arg-type]
        return response

    s3_store.client.list_objects_v2 = small_pages
    assert {key for key, _ in s3_store.iter_keys()} == keys
    assert pages == [3, 3, 1]


def test_s3_put_skips_upload_of_existing(s3_store: S3ObjectStore) -> None:
    uploads: list[str] = []
    s3_store.client.meta.events.register(
        "before-call.s3.PutObject", lambda **kwargs: uploads.append("put")
    )

    s3_store.put(PNG_BYTES)
    s3_store.put(PNG_BYTES)

    assert uploads == ["put"]


def test_s3_presigned_url_downloads(s3_store: S3ObjectStore) -> None:
    import httpx

    key = s3_store.put(PNG_BYTES)
    url = s3_store.presigned_url(key, expires_s=60)

    assert url.startswith(s3_store.endpoint_url or "")
    response = httpx.get(url)
    assert response.status_code == 200
    assert response.content == PNG_BYTES


def test_s3_presigned_url_checks_expiry(s3_store: S3ObjectStore) -> None:
    key = s3_store.put(PNG_BYTES)

    with pytest.raises(ValueError, match="expires_s"):
        s3_store.presigned_url(key, expires_s=0)
    with pytest.raises(ValueError, match="expires_s"):
        s3_store.presigned_url(key, expires_s=8 * 24 * 3600)


def test_s3_missing_bucket_is_permanent(s3_endpoint: str) -> None:
    store = S3ObjectStore("no-such-bucket-here", endpoint_url=s3_endpoint, backoff_s=0.01)
    calls: list[str] = []
    store.client.meta.events.register("before-call.s3", lambda **kwargs: calls.append("call"))

    with pytest.raises(StorageError, match="NoSuchBucket"):
        store.put(PNG_BYTES)
    # One HEAD (404, so not found) and one PUT, with no retry of the PUT.
    assert len(calls) == 2
