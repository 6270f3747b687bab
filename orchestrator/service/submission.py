"""Turn a `POST /v1/storyboards` request into a validated spec with its reference images.

The body is the spec as JSON or YAML, or a multipart form with the spec in
the field `spec` and reference images in the field `files`. An uploaded
file's name is the path the spec uses for it (`refs/ana.jpg`). A file named
only by the last part of that path (`ana.jpg`, as `curl -F` sends it) also
matches, unless another upload has the same name. Uploads are written to a
temporary folder, URI references are fetched into it, and the usual spec
loader then checks everything against that folder.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections import Counter
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from fastapi import Request
from starlette.datastructures import UploadFile

from orchestrator.service.references import FETCHED_FOLDER, fetch_uri_references, is_uri
from orchestrator.service.references import reference_slots as reference_fields
from orchestrator.settings import Settings
from orchestrator.spec import (
    MAX_REFERENCE_BYTES,
    MAX_SPEC_BYTES,
    LoadedSpec,
    load_spec_text,
    parse_document,
    spec_hash,
    validate_document,
)
from schemas.errors import OnModelError, SpecError
from storage.objects import ObjectStore

# Uploads of one submission. A storyboard has at most 64 characters with a
# few references each, so 256 files and 1 GiB leave ample room.
MAX_UPLOAD_FILES = 256
MAX_UPLOAD_BYTES = 1024 * 1024 * 1024
CHUNK_BYTES = 1024 * 1024
JSON_TYPES = ("application/json",)
YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml", "text/plain")


class PayloadError(OnModelError, ValueError):
    """A request body that is too large or of a type the endpoint does not take."""

    def __init__(self, status_code: int, message: str) -> None:
        self.status_code = status_code
        super().__init__(message)


@dataclass(frozen=True)
class SpecText:
    text: str
    is_json: bool


# Reading the request


async def receive_submission(request: Request, folder: Path) -> SpecText:
    """Read the spec text; write uploaded files under `folder`."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "multipart/form-data":
        return await _receive_form(request, folder)
    if content_type in JSON_TYPES or content_type in YAML_TYPES:
        body = await _read_limited(request)
        return SpecText(_decode(body, "body"), is_json=content_type in JSON_TYPES)
    raise PayloadError(
        415,
        f"content type {content_type or '(none)'!r} is not supported; send the spec as "
        "application/json, application/yaml or multipart/form-data with a `spec` field",
    )


async def _read_limited(request: Request) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_SPEC_BYTES:
            raise PayloadError(413, f"spec is more than {MAX_SPEC_BYTES} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _decode(data: bytes, field: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError(field, None, f"spec is not UTF-8 text (byte {exc.start})") from None


async def _receive_form(request: Request, folder: Path) -> SpecText:
    form = await request.form(
        max_files=MAX_UPLOAD_FILES + 1, max_fields=16, max_part_size=MAX_SPEC_BYTES
    )
    try:
        spec = form.get("spec")
        if spec is None:
            raise SpecError("spec", None, "multipart request has no `spec` field")
        if isinstance(spec, UploadFile):
            data = await spec.read(MAX_SPEC_BYTES + 1)
            if len(data) > MAX_SPEC_BYTES:
                raise PayloadError(413, f"spec is more than {MAX_SPEC_BYTES} bytes")
            name = (spec.filename or "").lower()
            is_json = name.endswith(".json") or spec.content_type in JSON_TYPES
            result = SpecText(_decode(data, "spec"), is_json=is_json)
        else:
            result = SpecText(spec, is_json=spec.lstrip().startswith("{"))

        uploads = [item for item in form.getlist("files") if isinstance(item, UploadFile)]
        if len(uploads) > MAX_UPLOAD_FILES:
            raise PayloadError(413, f"more than {MAX_UPLOAD_FILES} files in one submission")
        await _write_uploads(uploads, folder)
        return result
    finally:
        await form.close()


def upload_path(name: str | None) -> PurePosixPath:
    """Return an upload's name as a safe path relative to the spec's folder."""
    text = (name or "").replace("\\", "/")
    path = PurePosixPath(text)
    unsafe = (
        not path.parts
        or "\x00" in text
        or path.is_absolute()
        or ".." in path.parts
        or path.parts[0] == FETCHED_FOLDER
    )
    if unsafe:
        raise SpecError(
            "files",
            name,
            "upload file names must be relative paths inside the spec's folder, like refs/ana.jpg",
        )
    return path


async def _write_uploads(uploads: list[UploadFile], folder: Path) -> None:
    names = [upload_path(upload.filename) for upload in uploads]
    duplicates = [str(name) for name, count in Counter(names).items() if count > 1]
    if duplicates:
        raise SpecError("files", duplicates[0], "two uploads have the same file name")
    total = 0
    for upload, name in zip(uploads, names, strict=True):
        target = folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        written = 0
        with target.open("wb") as handle:
            while chunk := await upload.read(CHUNK_BYTES):
                written += len(chunk)
                total += len(chunk)
                if written > MAX_REFERENCE_BYTES:
                    raise PayloadError(
                        413, f"file {str(name)!r} is more than {MAX_REFERENCE_BYTES} bytes"
                    )
                if total > MAX_UPLOAD_BYTES:
                    raise PayloadError(413, f"uploads are more than {MAX_UPLOAD_BYTES} bytes")
                handle.write(chunk)


# Loading the spec


def place_by_file_name(document: dict[str, Any], folder: Path) -> None:
    """Copy an upload to the path a local reference names, if only its file name matched."""
    uploaded: dict[str, list[Path]] = {}
    for path in folder.rglob("*"):
        if path.is_file():
            uploaded.setdefault(path.name, []).append(path)
    for _, container, key in reference_fields(document):
        reference = container[key]
        if is_uri(reference):
            continue
        try:
            relative = upload_path(reference)
        except SpecError:
            continue  # the spec loader reports the unsafe path
        target = folder / relative
        candidates = uploaded.get(relative.name, [])
        if not target.exists() and len(candidates) == 1:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(candidates[0], target)


def load_submission(
    spec: SpecText, folder: Path, store: ObjectStore, settings: Settings
) -> LoadedSpec:
    """Validate the spec, fetch its URI references into `folder` and load every image.

    The stored storyboard keeps the URIs as the user wrote them; the spec's
    hash covers the images' bytes either way.
    """
    if len(spec.text.encode()) > MAX_SPEC_BYTES:
        raise PayloadError(413, f"spec is more than {MAX_SPEC_BYTES} bytes")
    document = parse_document(spec.text, is_json=spec.is_json)
    # Structure and values first, so an invalid spec costs no download.
    storyboard = validate_document(document)

    place_by_file_name(document, folder)
    resolved = json.loads(json.dumps(document))
    fetched = fetch_uri_references(
        resolved, folder, store, settings.reference_hosts, settings.reference_timeout_s
    )
    try:
        loaded = load_spec_text(json.dumps(resolved), folder, is_json=True)
    except SpecError as exc:
        # The temporary folder means nothing to the client.
        message = exc.message.replace(repr(str(folder.resolve())), "the uploaded files")
        raise SpecError(exc.field, exc.value, message) from None
    if not fetched:
        return loaded
    return dataclasses.replace(
        loaded,
        storyboard=storyboard,
        sha256=spec_hash(storyboard, loaded.references, loaded.style),
    )
