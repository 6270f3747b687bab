"""ArcFace-style face embeddings from a local ONNX model (for example AuraFace).

Faces are found and landmarked with dlib, then aligned to the ArcFace template
and normalised the way ArcFace models were trained: RGB, (x - 127.5) / 127.5,
NCHW. The model's first output is the embedding; it is L2-normalised and
compared by cosine similarity.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from actors.identity.backend import FaceBackend, cosine_similarity, l2_normalise
from actors.identity.faces import eye_centres
from schemas.errors import BackendLoadError

logger = logging.getLogger(__name__)

# An estimate, to be calibrated per model with `onmodel identity calibrate`.
# The AdvFaces authors give 0.28 as the ArcFace cosine threshold at a 0.1%
# false accept rate on LFW, and 0.35 leans stricter than that.
DEFAULT_THRESHOLD = 0.35
# Eye centres of the insightface ArcFace template on a 112x112 chip.
TEMPLATE_SIZE = 112
TEMPLATE_LEFT_EYE = (38.2946, 51.6963)
TEMPLATE_RIGHT_EYE = (73.5318, 51.5014)


def find_onnx_file(model: str | None) -> Path:
    """Resolve `consistency.model` to one .onnx file: the path itself or the only one inside it."""
    if model is None:
        raise BackendLoadError(
            "consistency.model: the onnx-face scorer needs a local ArcFace-style .onnx file "
            "or a folder containing one; set consistency.model in the storyboard "
            "(or --model on the command line)"
        )
    path = Path(model).expanduser()
    if not path.exists():
        raise BackendLoadError(
            f"consistency.model: {model!r} does not exist; give the path of a local .onnx file "
            "or of a folder containing one"
        )
    if path.is_file():
        return path
    candidates = sorted(path.glob("*.onnx"))
    if len(candidates) != 1:
        found = ", ".join(candidate.name for candidate in candidates) or "none"
        raise BackendLoadError(
            f"consistency.model: folder {model!r} must contain exactly one .onnx file, "
            f"found {found}; point consistency.model at the file itself"
        )
    return candidates[0]


class OnnxFaceBackend(FaceBackend):
    name = "onnx-face"
    default_threshold = DEFAULT_THRESHOLD

    def __init__(self, model: str | None) -> None:
        path = find_onnx_file(model)
        try:
            import onnxruntime
        except ImportError as error:
            raise BackendLoadError(
                "onnx-face scorer: package onnxruntime is not installed; "
                "install it with `pip install onnxruntime`"
            ) from error
        super().__init__()

        options = onnxruntime.SessionOptions()
        # Ray sets OMP_NUM_THREADS to an actor's CPU count; without a limit
        # onnxruntime would start one thread per core of the machine.
        options.intra_op_num_threads = int(os.environ.get("OMP_NUM_THREADS", "0") or 0)
        providers = [
            provider
            for provider in ("CUDAExecutionProvider", "CPUExecutionProvider")
            if provider in onnxruntime.get_available_providers()
        ]
        try:
            self._session = onnxruntime.InferenceSession(
                str(path), sess_options=options, providers=providers
            )
        except Exception as error:  # onnxruntime raises its own untyped errors
            raise BackendLoadError(
                f"consistency.model: cannot load ONNX model {str(path)!r}: {error}"
            ) from error

        model_input = self._session.get_inputs()[0]
        self._input_name = model_input.name
        self._channels_last, self._size, self._batch = _read_input_layout(model_input.shape, path)
        logger.info(
            "onnx-face model %s: input %s %s, %s",
            path,
            model_input.name,
            model_input.shape,
            "NHWC" if self._channels_last else "NCHW",
        )

    def cut_chip(self, image: np.ndarray, landmarks: Any) -> np.ndarray:
        # NOTE: dlib's 5 points give the eyes and the nose base but not the mouth
        # corners of the ArcFace template, so the chip is aligned on the two eye
        # centres only. That is close to insightface's 5-point alignment, not equal.
        left, right = eye_centres(landmarks)
        scale = self._size / TEMPLATE_SIZE
        target_left = np.array(TEMPLATE_LEFT_EYE) * scale
        target_right = np.array(TEMPLATE_RIGHT_EYE) * scale
        inverse = _inverse_similarity(target_left, target_right, left, right)
        chip = Image.fromarray(image).transform(
            (self._size, self._size),
            Image.Transform.AFFINE,
            tuple(inverse.ravel()),
            resample=Image.Resampling.BILINEAR,
        )
        return np.asarray(chip)

    def embed(self, chips: list[np.ndarray]) -> np.ndarray:
        if not chips:
            return np.zeros((0, 0), dtype=np.float32)
        batch = (np.stack(chips).astype(np.float32) - 127.5) / 127.5
        if not self._channels_last:
            batch = batch.transpose(0, 3, 1, 2)
        # Models exported with a fixed batch of 1 take one chip per call.
        step = self._batch or len(chips)
        outputs = [
            self._session.run(None, {self._input_name: batch[start : start + step]})[0]
            for start in range(0, len(chips), step)
        ]
        embeddings = np.concatenate(outputs).reshape(len(chips), -1)
        return l2_normalise(embeddings)

    def similarity(self, first: np.ndarray, second: np.ndarray) -> float:
        return cosine_similarity(first, second)


def _read_input_layout(shape: list[Any], path: Path) -> tuple[bool, int, int | None]:
    """Return (channels last, chip side, fixed batch size or None) of a 4-d image input."""
    if len(shape) != 4:
        raise BackendLoadError(
            f"consistency.model: {str(path)!r} takes a {len(shape)}-d input {shape}; "
            "an ArcFace-style model takes a batch of images, N x 3 x 112 x 112"
        )
    channels_last = shape[3] == 3 and shape[1] != 3
    side = shape[1] if channels_last else shape[2]
    size = side if isinstance(side, int) and side > 0 else TEMPLATE_SIZE
    batch = shape[0] if isinstance(shape[0], int) and shape[0] > 0 else None
    return channels_last, size, batch


def _inverse_similarity(
    output_left: np.ndarray,
    output_right: np.ndarray,
    input_left: np.ndarray,
    input_right: np.ndarray,
) -> np.ndarray:
    """Build the 2x3 affine map from chip pixels back to image pixels, as Pillow's AFFINE expects.

    The map is the similarity transform (rotation, uniform scale, shift) that
    takes the chip's eye centres onto the image's eye centres.
    """
    chip_vector = output_right - output_left
    image_vector = input_right - input_left
    # Complex division gives rotation and scale in one step: z_image = a * z_chip + b.
    a = complex(*image_vector) / complex(*chip_vector)
    b = complex(*input_left) - a * complex(*output_left)
    return np.array([[a.real, -a.imag, b.real], [a.imag, a.real, b.imag]])
