"""Copy guard: spot frames that reuse a reference image's pixels.

A frame that is the reference pasted, resized or recompressed scores a perfect
identity match and is still a failed generation. The guard compares pixel
fingerprints, independent of the identity model: a small grayscale thumbnail,
mean-subtracted and L2-normalised, compared by normalised correlation (1.0 for
the same picture, near 0 for unrelated ones).

Two comparisons, each with its own threshold:

- the whole frame against each whole reference image (a 32x32 thumbnail);
- each face in the frame against each face in the references, both cut as
  dlib chips (aligned by the 5 eye and nose landmarks) and shrunk to 16x16, which
  catches a reference face pasted into a new background.

Thresholds come from the photos in tests/fixtures/faces, measured again by
tests/actors/identity/test_copy_guard.py. Face chips of different photos,
including the same person photographed years apart, correlated at most 0.49.
Copies of one photo correlated at least 0.97: resized 0.6x to 1.5x, saved as
JPEG at quality 30 to 85, cropped 5% per side or pasted into a larger canvas.
Whole frames of different photos correlated at most 0.58, and resized copies
at least 0.997.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

# Whole-image comparison.
FRAME_SIDE = 32
FRAME_THRESHOLD = 0.95
# Face comparison: dlib chip geometry, thumbnail side and threshold.
CHIP_SIZE = 150
CHIP_PADDING = 0.25
FACE_SIDE = 16
FACE_THRESHOLD = 0.90


def fingerprint(image: np.ndarray, side: int) -> np.ndarray:
    """Shrink an RGB image to a side x side grayscale thumbnail, zero mean, unit norm.

    A flat image has no pattern to compare and returns all zeros, which
    correlates 0 with everything.
    """
    gray = Image.fromarray(image).convert("L").resize((side, side), Image.Resampling.BOX)
    values = np.asarray(gray, dtype=np.float64)
    values = values - values.mean()
    norm = np.linalg.norm(values)
    if norm < 1e-9:
        return np.zeros_like(values)
    return values / norm


def correlation(first: np.ndarray, second: np.ndarray) -> float:
    """Normalised correlation of two fingerprints, in [-1, 1]."""
    # NOTE: a mirrored copy is not caught. Comparing mirrored fingerprints too
    # raised two different formal portraits (macron_2025, sunak) to 0.78, too
    # close to the face threshold.
    return float(np.sum(first * second))
