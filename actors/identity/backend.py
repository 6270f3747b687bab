"""The interface every identity backend implements, and the shared face pipeline."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import numpy as np

from actors.identity import copy_guard
from actors.identity.faces import Box, DetectedFace, FaceDetector


@dataclass(frozen=True)
class AlignedFace:
    landmarks: Any  # dlib.full_object_detection, 5 points
    chip: np.ndarray


@dataclass(frozen=True)
class Subject:
    """One thing to compare in an image: a face, or the whole image for `embedding`."""

    box: Box
    # Detector confidence (dlib HOG score, above 0); 1.0 for whole images.
    confidence: float
    # The backend's identity vector; compare two with `ScorerBackend.similarity`.
    embedding: np.ndarray
    # A pixel fingerprint of the face for the copy guard, or None for whole images
    # (the guard compares whole images on its own).
    fingerprint: np.ndarray | None


class ScorerBackend(ABC):
    """Turns an image into subjects and compares their embeddings."""

    name: str
    # Similarity at or above which a subject counts as the same character.
    default_threshold: float
    # False for whole-image backends. They do not locate characters in the
    # frame, so each character is scored against the whole frame.
    localizes: bool = True

    @abstractmethod
    def subjects(self, image: np.ndarray) -> list[Subject]:
        """Find and embed every subject in an RGB image, largest face first."""

    @abstractmethod
    def similarity(self, first: np.ndarray, second: np.ndarray) -> float:
        """Similarity of two embeddings in [0, 1], higher is closer."""


class FaceBackend(ScorerBackend):
    """Detect faces with dlib, align each to a chip, embed the chips.

    Subclasses provide `align` and `embed`; the stages are public so that the
    benchmark can time each one.
    """

    def __init__(self) -> None:
        self.detector = FaceDetector()

    def detect(self, image: np.ndarray) -> list[DetectedFace]:
        return self.detector.detect(image)

    def align(self, image: np.ndarray, faces: list[DetectedFace]) -> list[AlignedFace]:
        """Locate the landmarks of each face and cut the chip that `embed` expects."""
        aligned = []
        for face in faces:
            landmarks = self.detector.landmarks(image, face)
            aligned.append(AlignedFace(landmarks=landmarks, chip=self.cut_chip(image, landmarks)))
        return aligned

    @abstractmethod
    def cut_chip(self, image: np.ndarray, landmarks: Any) -> np.ndarray:
        """Cut one face chip in the pose and size the embedding model was trained on."""

    @abstractmethod
    def embed(self, chips: list[np.ndarray]) -> np.ndarray:
        """Embed aligned chips; returns one row per chip."""

    def fingerprint(self, image: np.ndarray, face: AlignedFace) -> np.ndarray:
        # Always from a dlib chip, whatever the backend's own chip is, so that one
        # copy-guard threshold fits every face backend.
        chip = self.detector.chip(
            image, face.landmarks, size=copy_guard.CHIP_SIZE, padding=copy_guard.CHIP_PADDING
        )
        return copy_guard.fingerprint(chip, copy_guard.FACE_SIDE)

    def subjects(self, image: np.ndarray) -> list[Subject]:
        faces = self.detect(image)
        if not faces:
            return []
        aligned = self.align(image, faces)
        embeddings = self.embed([face.chip for face in aligned])
        return [
            Subject(
                box=face.box,
                confidence=face.confidence,
                embedding=embedding,
                fingerprint=self.fingerprint(image, chip),
            )
            for face, chip, embedding in zip(faces, aligned, embeddings, strict=True)
        ]


def cosine_similarity(first: np.ndarray, second: np.ndarray) -> float:
    """Cosine similarity of two L2-normalised vectors, clamped to [0, 1].

    Negative cosines (vectors pointing apart) all mean "not the same" and
    clamp to 0 so that every backend reports scores on the same scale.
    """
    return float(np.clip(np.dot(first, second), 0.0, 1.0))


def l2_normalise(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)
