"""Load a storyboard spec from YAML or JSON and check it against the file system.

Everything a run needs is checked here, before anything is written to the
catalog or the object store: the document parses, its fields validate, and
every reference is a readable image inside the spec's folder.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
import stat
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import yaml
from PIL import Image, ImageOps, UnidentifiedImageError
from pydantic import ValidationError

from schemas.errors import SpecError
from schemas.records import ReferenceImage
from schemas.storyboard import Storyboard

logger = logging.getLogger(__name__)

# A spec is a short document; anything larger is a mistake or an attack.
MAX_SPEC_BYTES = 2 * 1024 * 1024
# Nesting and node budgets stop YAML alias bombs ("billion laughs") and
# deeply nested documents before pydantic walks them.
MAX_DEPTH = 32
MAX_NODES = 200_000
# A reference photo larger than this is almost certainly not a photo.
MAX_REFERENCE_BYTES = 64 * 1024 * 1024
# Side of the normalised reference kept for conditioning and scoring. Kontext
# is trained around 1 megapixel, so larger references only cost memory.
MAX_REFERENCE_SIDE = 2048


@dataclass(frozen=True)
class LoadedSpec:
    """A validated storyboard with its decoded reference images."""

    storyboard: Storyboard
    # Character id -> references in spec order, normalised to RGB PNG.
    references: dict[str, list[ReferenceImage]]
    style: ReferenceImage | None
    # Hash of the validated spec and of every reference's bytes: the storyboard's identity.
    sha256: str
    source: Path | None = None
    warnings: list[str] = field(default_factory=list)


def field_path(loc: tuple[int | str, ...]) -> str:
    """Render a pydantic location as `scenes[2].characters[0]`."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path


def _short(value: object, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _value_at(document: object, path: str) -> object:
    """Return the value at a field path such as `scenes[1].characters[0]`, or None."""
    node = document
    for name, index in re.findall(r"([^.\[\]]+)|\[(\d+)\]", path):
        try:
            node = node[int(index)] if index else node[name]  # type: ignore[index]
        except (KeyError, IndexError, TypeError, ValueError):
            return None
    return node


def _spec_error_from_validation(error: ValidationError) -> SpecError:
    first = error.errors(include_url=False)[0]
    path = field_path(tuple(first["loc"]))
    message = str(first["msg"])
    value = first.get("input")
    if message.startswith("Value error, "):
        message = message.removeprefix("Value error, ")
        # Cross-field checks put their own field path first.
        if not path and ": " in message:
            path, message = message.split(": ", 1)
            return SpecError(path, _value_at(value, path), message)
    if first["type"] == "extra_forbidden":
        return SpecError(
            path,
            value,
            f"unknown field {_short(path.split('.')[-1])}; remove it or check its spelling",
        )
    if first["type"] == "missing":
        return SpecError(path, None, "missing required field")
    if first["type"] == "string_too_long" and isinstance(value, str):
        limit = first.get("ctx", {}).get("max_length")
        return SpecError(
            path,
            value,
            f"is {len(value)} characters long, more than the limit of {limit}; shorten it, "
            f"got {_short(value)}",
        )
    return SpecError(path, value, f"{message}, got {_short(value)}")


class _BoundedLoader(yaml.SafeLoader):
    """A safe YAML loader that rejects documents nested deeper than MAX_DEPTH."""

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        depth = getattr(self, "_depth", 0)
        if depth > MAX_DEPTH:
            raise SpecError("", None, f"document is nested deeper than {MAX_DEPTH} levels")
        self._depth = depth + 1
        try:
            return super().compose_node(parent, index)  # type: ignore[no-any-return]
        finally:
            self._depth = depth


def _count_nodes(document: object) -> None:
    # Aliases make one YAML node appear many times; count every appearance,
    # because that is the size pydantic and JSON serialisation would walk.
    budget = MAX_NODES
    stack: list[tuple[object, int]] = [(document, 0)]
    while stack:
        node, depth = stack.pop()
        budget -= 1
        if budget < 0:
            raise SpecError(
                "", None, f"document expands to more than {MAX_NODES} values (YAML aliases?)"
            )
        if depth > MAX_DEPTH:
            raise SpecError("", None, f"document is nested deeper than {MAX_DEPTH} levels")
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values())
            stack.extend((k, depth + 1) for k in node)
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node)


def parse_document(text: str, *, is_json: bool = False) -> dict[str, Any]:
    """Parse spec text into plain data; raise SpecError on anything malformed."""
    try:
        # _BoundedLoader is a SafeLoader subclass.
        document = json.loads(text) if is_json else yaml.load(text, Loader=_BoundedLoader)  # noqa: S506
    except SpecError:
        raise
    except json.JSONDecodeError as exc:
        raise SpecError(
            "", None, f"malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SpecError("", None, f"malformed YAML{where}: {problem}") from None
    except ValueError as exc:
        # Both parsers turn number literals into Python ints, which refuse
        # more than sys.get_int_max_str_digits() (4300 by default) digits.
        raise SpecError("", None, f"invalid value in the document: {exc}") from None
    except RecursionError:
        raise SpecError("", None, f"document is nested deeper than {MAX_DEPTH} levels") from None
    if not isinstance(document, dict):
        kind = type(document).__name__ if document is not None else "an empty document"
        raise SpecError(
            "", None, f"a storyboard must be a mapping with name, characters and scenes, got {kind}"
        )
    _count_nodes(document)
    return document


def validate_document(document: dict[str, Any]) -> Storyboard:
    try:
        return Storyboard.model_validate(document)
    except ValidationError as exc:
        raise _spec_error_from_validation(exc) from None


def _resolve_reference(base: Path, raw: str, where: str) -> Path:
    """Resolve a reference path and check that it stays inside `base`."""
    if "\x00" in raw:
        raise SpecError(where, raw, "path contains a NUL byte")
    candidate = Path(raw)
    joined = candidate if candidate.is_absolute() else base / candidate
    # realpath follows symlinks, so a link that points out of the folder is caught too.
    resolved = Path(os.path.realpath(joined))
    if not resolved.is_relative_to(base):
        raise SpecError(
            where,
            raw,
            f"reference {raw!r} is outside the spec's folder {str(base)!r}; "
            "copy the image next to the spec and use a relative path",
        )
    try:
        info = resolved.stat()
    except FileNotFoundError:
        raise SpecError(
            where, raw, f"reference file not found: {raw!r} (paths are relative to {str(base)!r})"
        ) from None
    except OSError as exc:
        raise SpecError(where, raw, f"cannot read reference {raw!r}: {exc.strerror}") from None
    if not stat.S_ISREG(info.st_mode):
        kind = "a directory" if stat.S_ISDIR(info.st_mode) else "not a regular file"
        raise SpecError(where, raw, f"reference {raw!r} is {kind}; give an image file")
    if info.st_size > MAX_REFERENCE_BYTES:
        raise SpecError(
            where,
            raw,
            f"reference {raw!r} is {info.st_size} bytes, more than {MAX_REFERENCE_BYTES}",
        )
    return resolved


def decode_image(data: bytes, where: str, label: str) -> tuple[bytes, list[str]]:
    """Decode image bytes into normalised RGB PNG bytes.

    Handles EXIF rotation, CMYK, 16-bit, palette and alpha images; takes the
    first frame of an animation with a warning. Raises SpecError for bytes
    that are not an image, are truncated, or exceed Pillow's pixel limit.
    """
    notes: list[str] = []
    try:
        with warnings.catch_warnings():
            # Pillow only warns between MAX_IMAGE_PIXELS and twice that; treat both as errors.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image: Image.Image = Image.open(io.BytesIO(data))
            if getattr(image, "n_frames", 1) > 1:
                notes.append(f"{where}: {label} is animated; using its first frame")
            image.seek(0)
            image.load()
            image = ImageOps.exif_transpose(image) or image
            image = _to_rgb(image)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise SpecError(
            where,
            label,
            f"image {label!r} has more than {Image.MAX_IMAGE_PIXELS} pixels (decompression-bomb "
            "limit); downscale it",
        ) from None
    except UnidentifiedImageError:
        raise SpecError(where, label, f"{label!r} is not an image Pillow can read") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise SpecError(where, label, f"image {label!r} is truncated or corrupt: {exc}") from None
    if max(image.size) > MAX_REFERENCE_SIDE:
        image.thumbnail((MAX_REFERENCE_SIDE, MAX_REFERENCE_SIDE), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue(), notes


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16- and 32-bit greyscale: scale to 8 bits instead of clipping at 255.
        wide = image.convert("I")
        # A single-band image has (min, max) extrema.
        low, high = cast(tuple[int, int], wide.getextrema())
        span = max(high - low, 1)
        return wide.point(lambda v: (v - low) * 255 / span).convert("L").convert("RGB")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        # Transparent areas become white, the usual background of a reference sheet.
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def _read_reference(path: Path, raw: str, where: str) -> bytes:
    """Read a checked reference file without following a link or blocking on a FIFO.

    The file is checked again through its open descriptor, so a file that
    was swapped for a link, device or FIFO after `_resolve_reference` is
    rejected unread.
    """
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise SpecError(where, raw, f"cannot read reference {raw!r}: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_REFERENCE_BYTES:
            raise SpecError(where, raw, f"reference {raw!r} changed while it was read; try again")
        data = handle.read(MAX_REFERENCE_BYTES + 1)
    if len(data) > MAX_REFERENCE_BYTES:
        raise SpecError(where, raw, f"reference {raw!r} is more than {MAX_REFERENCE_BYTES} bytes")
    return data


def _load_reference(base: Path, raw: str, where: str) -> tuple[ReferenceImage, list[str]]:
    path = _resolve_reference(base, raw, where)
    data = _read_reference(path, raw, where)
    png, notes = decode_image(data, where, raw)
    return ReferenceImage(sha256=hashlib.sha256(data).hexdigest(), png=png), notes


def load_references(
    storyboard: Storyboard, base: Path
) -> tuple[dict[str, list[ReferenceImage]], ReferenceImage | None, list[str]]:
    base = Path(os.path.realpath(base))
    notes: list[str] = []
    references: dict[str, list[ReferenceImage]] = {}
    for i, character in enumerate(storyboard.characters):
        images = []
        for j, raw in enumerate(character.references):
            image, found = _load_reference(base, raw, f"characters[{i}].references[{j}]")
            images.append(image)
            notes.extend(found)
        references[character.id] = images
    style = None
    if storyboard.style is not None and storyboard.style.reference is not None:
        style, found = _load_reference(base, storyboard.style.reference, "style.reference")
        notes.extend(found)
    return references, style, notes


def spec_hash(
    storyboard: Storyboard,
    references: dict[str, list[ReferenceImage]],
    style: ReferenceImage | None,
) -> str:
    digest = hashlib.sha256()
    digest.update(storyboard.model_dump_json().encode())
    for character_id in sorted(references):
        for image in references[character_id]:
            digest.update(f"{character_id}:{image.sha256}".encode())
    if style is not None:
        digest.update(f"style:{style.sha256}".encode())
    return digest.hexdigest()


def load_spec_text(text: str, base: Path, *, is_json: bool = False) -> LoadedSpec:
    """Validate spec text whose relative references resolve against `base`."""
    storyboard = validate_document(parse_document(text, is_json=is_json))
    references, style, notes = load_references(storyboard, base)
    for note in notes:
        logger.warning("%s", note)
    return LoadedSpec(
        storyboard=storyboard,
        references=references,
        style=style,
        sha256=spec_hash(storyboard, references, style),
        warnings=notes,
    )


def load_spec(path: str | Path) -> LoadedSpec:
    """Load and fully check a spec file; raise SpecError naming the problem."""
    path = Path(path)
    label = str(path)
    try:
        info = path.stat()
    except FileNotFoundError:
        raise SpecError("", label, f"spec file not found: {label!r}") from None
    except OSError as exc:
        raise SpecError("", label, f"cannot read spec file {label!r}: {exc.strerror}") from None
    if not stat.S_ISREG(info.st_mode):
        raise SpecError("", label, f"spec {label!r} is not a regular file")
    if info.st_size > MAX_SPEC_BYTES:
        raise SpecError("", label, f"spec file is {info.st_size} bytes, more than {MAX_SPEC_BYTES}")
    raw = path.read_bytes()
    try:
        # utf-8-sig drops the byte order mark that some Windows editors write.
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SpecError(
            "", label, f"spec file is not UTF-8 text (byte {exc.start}); save it as UTF-8"
        ) from None
    loaded = load_spec_text(text, path.resolve().parent, is_json=path.suffix.lower() == ".json")
    return LoadedSpec(
        storyboard=loaded.storyboard,
        references=loaded.references,
        style=loaded.style,
        sha256=loaded.sha256,
        source=path.resolve(),
        warnings=loaded.warnings,
    )
