"""Image decoding and resizing shared by every identity backend."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError


def decode_rgb(data: bytes, label: str) -> np.ndarray:
    """Decode image bytes (PNG, JPEG or any format Pillow reads) to an RGB uint8 array.

    `label` names the image in the error, for example "frame" or "reference 3f2a...".
    Raises ValueError when the bytes are not a readable image.
    """
    try:
        with Image.open(io.BytesIO(data)) as image:
            # Photos from cameras store their rotation in EXIF; dlib expects upright faces.
            upright = ImageOps.exif_transpose(image)
            rgb = upright.convert("RGB")
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as error:
        raise ValueError(
            f"{label}: cannot decode image ({len(data)} bytes): {error}; pass PNG or JPEG bytes"
        ) from error
    return np.ascontiguousarray(np.asarray(rgb, dtype=np.uint8))


def fit_within(image: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    """Downscale `image` so that its longer side is at most `max_side` pixels.

    Returns the image and the scale applied (1.0 when it already fits), so that
    coordinates found on the result map back by dividing by the scale.
    """
    height, width = image.shape[:2]
    longest = max(height, width)
    if longest <= max_side:
        return image, 1.0
    scale = max_side / longest
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    resized = Image.fromarray(image).resize(size, Image.Resampling.BILINEAR)
    return np.ascontiguousarray(np.asarray(resized)), scale
