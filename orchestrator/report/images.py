"""Decoding, fitting and inlining of report images."""

from __future__ import annotations

import base64
import io
import logging

from PIL import Image, UnidentifiedImageError

from schemas.errors import NotFoundError
from storage.objects import ObjectStore

logger = logging.getLogger(__name__)

# Maximum side of an inlined page thumbnail in pixels: sharp on a
# high-density screen at the page's 128-256 CSS pixel image sizes.
THUMBNAIL_SIDE = 256
# JPEG quality of the page thumbnails. At 80, a 256 px noise frame of the tiny
# backend (the worst case for JPEG) takes about 17 KB.
THUMBNAIL_QUALITY = 80


def decode(data: bytes) -> Image.Image:
    """Decode image bytes into an RGB image; raise ValueError if they are not an image."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.convert("RGB")
    except (UnidentifiedImageError, OSError) as exc:
        raise ValueError(f"stored object is not a readable image: {exc}") from exc


def fit(image: Image.Image, width: int, height: int, background: str) -> Image.Image:
    """Scale `image` to fit inside width x height, centred on a `background` canvas."""
    ratio = min(width / image.width, height / image.height)
    size = (max(1, round(image.width * ratio)), max(1, round(image.height * ratio)))
    # Enlarged small frames keep hard pixel edges, so nothing looks sharper than it is.
    resample = Image.Resampling.LANCZOS if ratio < 1 else Image.Resampling.NEAREST
    scaled = image.resize(size, resample)
    canvas = Image.new("RGB", (width, height), background)
    canvas.paste(scaled, ((width - scaled.width) // 2, (height - scaled.height) // 2))
    return canvas


def jpeg_data_uri(image: Image.Image, side: int = THUMBNAIL_SIDE) -> str:
    """Return a `data:image/jpeg;base64,...` URI of `image` shrunk to at most `side` pixels."""
    thumbnail = image.copy()
    thumbnail.thumbnail((side, side), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    thumbnail.save(buffer, format="JPEG", quality=THUMBNAIL_QUALITY, optimize=True)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


class ImageSource:
    """Reads images from the object store, caching each page thumbnail by object key."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store
        self._uris: dict[str, str | None] = {}

    def image(self, key: str, run_id: str) -> Image.Image | None:
        """Return the decoded image at `key`, or None (logged) when it is missing or broken."""
        try:
            return decode(self.store.get(key))
        except (NotFoundError, ValueError) as exc:
            logger.warning("run %s: image %s not shown in the report: %s", run_id, key, exc)
            return None

    def data_uri(self, key: str, run_id: str) -> str | None:
        """Return the inlined JPEG thumbnail of the image at `key`, or None as `image` does."""
        if key not in self._uris:
            image = self.image(key, run_id)
            self._uris[key] = jpeg_data_uri(image) if image is not None else None
        return self._uris[key]
