"""The embedding scorer's loading path, with tiny random DINOv2 and CLIP models."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from identity_photos import photo_bytes, reference
from transformers import (
    BitImageProcessor,
    CLIPConfig,
    CLIPImageProcessor,
    CLIPModel,
    CLIPVisionConfig,
    CLIPVisionModelWithProjection,
    Dinov2Config,
    Dinov2Model,
)

from actors.identity import IdentityWorker
from schemas.errors import BackendLoadError
from schemas.records import Verdict

torch.set_num_threads(1)

TINY_VISION = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "image_size": 32,
    "patch_size": 8,
}
PROCESSOR_SIZE = {"size": {"shortest_edge": 32}, "crop_size": {"height": 32, "width": 32}}


def save_tiny_dinov2(folder: Path) -> Path:
    torch.manual_seed(0)
    Dinov2Model(Dinov2Config(**TINY_VISION)).save_pretrained(folder)
    BitImageProcessor(**PROCESSOR_SIZE).save_pretrained(folder)
    return folder


def save_tiny_clip_vision(folder: Path) -> Path:
    torch.manual_seed(0)
    config = CLIPVisionConfig(**TINY_VISION, projection_dim=16)
    CLIPVisionModelWithProjection(config).save_pretrained(folder)
    CLIPImageProcessor(**PROCESSOR_SIZE).save_pretrained(folder)
    return folder


def save_tiny_clip(folder: Path) -> Path:
    torch.manual_seed(0)
    text = {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "vocab_size": 100,
        "bos_token_id": 0,
        "eos_token_id": 1,
        "pad_token_id": 1,
    }
    config = CLIPConfig(text_config=text, vision_config=TINY_VISION, projection_dim=16)
    CLIPModel(config).save_pretrained(folder)
    CLIPImageProcessor(**PROCESSOR_SIZE).save_pretrained(folder)
    return folder


SAVERS = {
    "dinov2": save_tiny_dinov2,
    "clip-vision": save_tiny_clip_vision,
    "clip": save_tiny_clip,
}
EXPECTED_SIZE = {"dinov2": 32, "clip-vision": 16, "clip": 16}


@pytest.fixture(scope="module")
def model_folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("embedding")
    return {name: save(root / name) for name, save in SAVERS.items()}


@pytest.mark.parametrize("family", sorted(SAVERS))
def test_model_family_loads_and_scores(model_folders: dict[str, Path], family: str) -> None:
    worker = IdentityWorker("embedding", str(model_folders[family]))
    characters = {"cat": [reference("cat_chelsea.png")]}

    result = worker.score(photo_bytes("flower.jpg"), characters, {})

    assert worker.default_threshold == pytest.approx(0.7)
    entry = worker.references([reference("cat_chelsea.png")])[0]
    assert entry.subject is not None
    assert entry.subject.embedding.shape == (EXPECTED_SIZE[family],)
    score = result.characters[0].score
    assert score is not None
    assert 0.0 <= score <= 1.0
    assert result.verdict in (Verdict.ON_MODEL, Verdict.DRIFTED)
    # Whole-image backends find no faces; the frame is one subject.
    assert result.faces_found == 0


def test_threshold_decides_between_on_model_and_drifted(model_folders: dict[str, Path]) -> None:
    worker = IdentityWorker("embedding", str(model_folders["dinov2"]))
    characters = {"cat": [reference("cat_chelsea.png")]}
    frame = photo_bytes("flower.jpg")

    lenient = worker.score(frame, characters, {"cat": 0.0})
    strict = worker.score(frame, characters, {"cat": 1.0})

    assert lenient.verdict == Verdict.ON_MODEL
    assert strict.verdict == Verdict.DRIFTED


def test_every_character_is_scored_against_whole_frame(model_folders: dict[str, Path]) -> None:
    worker = IdentityWorker("embedding", str(model_folders["dinov2"]))
    characters = {"cat": [reference("cat_chelsea.png")], "flower": [reference("flower.jpg")]}

    result = worker.score(photo_bytes("sunak.jpg"), characters, {"cat": 0.0, "flower": 0.0})

    assert [character.verdict for character in result.characters] == [Verdict.ON_MODEL] * 2
    assert result.characters[0].box == result.characters[1].box


def test_reference_itself_as_frame_is_a_copy(model_folders: dict[str, Path]) -> None:
    worker = IdentityWorker("embedding", str(model_folders["dinov2"]))
    characters = {"cat": [reference("cat_chelsea.png")]}

    result = worker.score(photo_bytes("cat_chelsea.png"), characters, {})

    assert result.verdict == Verdict.COPY
    assert "frame copies reference" in result.detail


def test_missing_model_setting_names_consistency_model() -> None:
    with pytest.raises(BackendLoadError, match="set consistency.model"):
        IdentityWorker("embedding")


def test_hub_id_is_not_downloaded() -> None:
    with pytest.raises(BackendLoadError, match="is not a folder"):
        IdentityWorker("embedding", "facebook/dinov2-small")


def test_folder_without_model_is_reported(tmp_path: Path) -> None:
    with pytest.raises(BackendLoadError, match="cannot load a transformers vision model"):
        IdentityWorker("embedding", str(tmp_path))
