"""Whole-image embeddings from a local transformers vision model (DINOv2, CLIP, SigLIP).

For characters without a human face (animals, mascots, robots) no face
detector applies, so the whole frame is embedded and compared with each whole
reference image by cosine similarity.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from actors.identity.backend import ScorerBackend, Subject, cosine_similarity, l2_normalise
from schemas.errors import BackendLoadError

logger = logging.getLogger(__name__)

# An estimate, not a measurement: cosine similarity of DINOv2 or CLIP image
# features of one subject in different pictures is usually well above that of
# unrelated pictures, but the gap depends on the model and the art style.
# Calibrate with `onmodel identity calibrate` before relying on it.
DEFAULT_THRESHOLD = 0.7


class EmbeddingBackend(ScorerBackend):
    name = "embedding"
    default_threshold = DEFAULT_THRESHOLD
    localizes = False

    def __init__(self, model: str | None) -> None:
        path = _find_model_folder(model)
        try:
            import torch
            import transformers
        except ImportError as error:
            raise BackendLoadError(
                "embedding scorer: packages torch and transformers are required; "
                "install them with `pip install torch transformers`"
            ) from error
        self._torch = torch

        try:
            config = transformers.AutoConfig.from_pretrained(path)
            model_class = _model_class(transformers, config)
            self._model = model_class.from_pretrained(path).eval()
            self._processor = transformers.AutoImageProcessor.from_pretrained(path)
        except (OSError, ValueError, KeyError) as error:
            raise BackendLoadError(
                f"consistency.model: cannot load a transformers vision model from {str(path)!r}: "
                f"{error}; the folder needs config.json, the weights and "
                "preprocessor_config.json, as written by save_pretrained"
            ) from error
        logger.info("embedding model %s loaded as %s", path, type(self._model).__name__)

    def subjects(self, image: np.ndarray) -> list[Subject]:
        height, width = image.shape[:2]
        embedding = self.embed_images([image])[0]
        return [
            Subject(
                box=(0, 0, width, height), confidence=1.0, embedding=embedding, fingerprint=None
            )
        ]

    def embed_images(self, images: list[np.ndarray]) -> np.ndarray:
        inputs = self._processor(images=images, return_tensors="pt")
        with self._torch.inference_mode():
            features = _image_features(self._model, inputs["pixel_values"])
        return l2_normalise(features.float().cpu().numpy())

    def similarity(self, first: np.ndarray, second: np.ndarray) -> float:
        return cosine_similarity(first, second)


def _find_model_folder(model: str | None) -> Path:
    if model is None:
        raise BackendLoadError(
            "consistency.model: the embedding scorer needs a local folder with a DINOv2 or "
            "CLIP vision model (config.json, weights, preprocessor_config.json); set "
            "consistency.model in the storyboard (or --model on the command line)"
        )
    path = Path(model).expanduser()
    if not path.is_dir():
        raise BackendLoadError(
            f"consistency.model: {model!r} is not a folder; give a local folder written by "
            "save_pretrained (hub ids are not downloaded)"
        )
    return path


def _model_class(transformers: Any, config: Any) -> Any:
    """Pick the class that yields image features for the folder's config.

    AutoModel builds the base model (Dinov2Model, CLIPModel, ...), even from a
    classification checkpoint. A vision tower saved with its projection
    (CLIPVisionModelWithProjection) would lose the projection that way, so an
    `architectures` entry ending in WithProjection is loaded as named.
    """
    for name in getattr(config, "architectures", None) or []:
        model_class = getattr(transformers, name, None)
        if model_class is not None and name.endswith("WithProjection"):
            return model_class
    return transformers.AutoModel


def _image_features(model: Any, pixel_values: Any) -> Any:
    """One feature vector per image, whatever the model family returns."""
    # Dual encoders (CLIPModel, SiglipModel) project images into the shared space.
    if hasattr(model, "get_image_features"):
        features = model.get_image_features(pixel_values=pixel_values)
        return features if hasattr(features, "ndim") else features.pooler_output
    outputs = model(pixel_values=pixel_values)
    # CLIPVisionModelWithProjection returns projected image_embeds; DINOv2 and
    # plain vision encoders return the pooled CLS token.
    for name in ("image_embeds", "pooler_output"):
        value = getattr(outputs, name, None)
        if value is not None:
            return value
    return outputs.last_hidden_state.mean(dim=1)
