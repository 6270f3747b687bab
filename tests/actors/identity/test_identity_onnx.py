"""The onnx-face scorer's loading path and pipeline, with a tiny random ONNX model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from identity_photos import photo_bytes, reference, side_by_side
from onnx import TensorProto, helper, numpy_helper

from actors.identity import IdentityWorker
from actors.identity.onnx_backend import (
    TEMPLATE_LEFT_EYE,
    TEMPLATE_RIGHT_EYE,
    _inverse_similarity,
    _read_input_layout,
)
from schemas.errors import BackendLoadError
from schemas.records import Verdict

EMBEDDING_SIZE = 16


def save_tiny_arcface(path: Path, batch: int | str = "batch", seed: int = 0) -> Path:
    """An ArcFace-shaped model: N x 3 x 112 x 112 in, N x 16 out, one random projection."""
    weights = np.random.default_rng(seed).standard_normal((3 * 112 * 112, EMBEDDING_SIZE))
    graph = helper.make_graph(
        [
            helper.make_node("Flatten", ["input.1"], ["flat"], axis=1),
            helper.make_node("MatMul", ["flat", "projection"], ["embedding"]),
        ],
        "tiny_arcface",
        [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [batch, 3, 112, 112])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, [batch, EMBEDDING_SIZE])],
        initializer=[numpy_helper.from_array(weights.astype(np.float32), "projection")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_arcface(tmp_path_factory.mktemp("onnx") / "tiny_arcface.onnx")


@pytest.fixture(scope="module")
def onnx_worker(tiny_model: Path) -> IdentityWorker:
    return IdentityWorker("onnx-face", str(tiny_model))


def test_loads_from_file_and_from_folder(tiny_model: Path) -> None:
    from_file = IdentityWorker("onnx-face", str(tiny_model))
    from_folder = IdentityWorker("onnx-face", str(tiny_model.parent))

    assert from_file.default_threshold == pytest.approx(0.35)
    assert from_folder.info()["scorer"] == "onnx-face"


def test_same_photo_scores_one_and_different_photo_less(onnx_worker: IdentityWorker) -> None:
    characters = {"ardern": [reference("ardern_2018.jpg")]}

    same = onnx_worker.score(photo_bytes("ardern_2018.jpg"), characters, {})
    other = onnx_worker.score(photo_bytes("sunak.jpg"), characters, {})

    assert same.characters[0].score == pytest.approx(1.0, abs=1e-4)
    # The frame is the reference itself, so the copy guard fires.
    assert same.verdict == Verdict.COPY
    assert other.characters[0].score is not None
    assert 0.0 <= other.characters[0].score < 1.0
    assert other.faces_found == 1


def test_threshold_decides_between_on_model_and_drifted(onnx_worker: IdentityWorker) -> None:
    frame = photo_bytes("ardern_2022.jpg")
    characters = {"ardern": [reference("ardern_2018.jpg")]}

    lenient = onnx_worker.score(frame, characters, {"ardern": 0.0})
    strict = onnx_worker.score(frame, characters, {"ardern": 1.0})

    assert lenient.verdict == Verdict.ON_MODEL
    assert strict.verdict == Verdict.DRIFTED


def test_frame_without_face_is_no_face(onnx_worker: IdentityWorker) -> None:
    result = onnx_worker.score(photo_bytes("flower.jpg"), {"c": [reference("sunak.jpg")]}, {})

    assert result.verdict == Verdict.NO_FACE


def test_fixed_batch_model_embeds_several_faces(tmp_path: Path) -> None:
    model = save_tiny_arcface(tmp_path / "batch1" / "model.onnx", batch=1)
    worker = IdentityWorker("onnx-face", str(model))
    frame, _ = side_by_side("ardern_2022.jpg", "macron_2025.jpg")
    characters = {
        "ardern": [reference("ardern_2018.jpg")],
        "macron": [reference("macron_2014.jpg")],
    }

    result = worker.score(frame, characters, {"ardern": 0.0, "macron": 0.0})

    assert result.faces_found == 2
    assert all(character.score is not None for character in result.characters)


def test_missing_model_setting_names_consistency_model() -> None:
    with pytest.raises(BackendLoadError, match="set consistency.model"):
        IdentityWorker("onnx-face", None)


def test_missing_model_path_is_reported(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.onnx"

    with pytest.raises(BackendLoadError, match="does not exist"):
        IdentityWorker("onnx-face", str(missing))


def test_folder_without_onnx_file_is_reported(tmp_path: Path) -> None:
    with pytest.raises(BackendLoadError, match="exactly one .onnx file, found none"):
        IdentityWorker("onnx-face", str(tmp_path))


def test_invalid_onnx_file_is_reported(tmp_path: Path) -> None:
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a protobuf")

    with pytest.raises(BackendLoadError, match="cannot load ONNX model"):
        IdentityWorker("onnx-face", str(broken))


@pytest.mark.parametrize(
    ("shape", "expected"),
    [
        (["N", 3, 112, 112], (False, 112, None)),
        ([1, 112, 112, 3], (True, 112, 1)),
        (["N", 3, "H", "W"], (False, 112, None)),
        ([4, 3, 128, 128], (False, 128, 4)),
    ],
)
def test_input_layout_is_read_from_model(
    shape: list[object], expected: tuple[bool, int, int | None]
) -> None:
    assert _read_input_layout(shape, Path("m.onnx")) == expected


def test_non_image_input_is_rejected() -> None:
    with pytest.raises(BackendLoadError, match="takes a 2-d input"):
        _read_input_layout(["N", 512], Path("m.onnx"))


def test_alignment_maps_template_eyes_onto_image_eyes() -> None:
    image_left, image_right = np.array([140.0, 210.0]), np.array([230.0, 190.0])

    inverse = _inverse_similarity(
        np.array(TEMPLATE_LEFT_EYE), np.array(TEMPLATE_RIGHT_EYE), image_left, image_right
    )

    for chip_point, image_point in (
        (TEMPLATE_LEFT_EYE, image_left),
        (TEMPLATE_RIGHT_EYE, image_right),
    ):
        mapped = inverse @ np.array([*chip_point, 1.0])
        np.testing.assert_allclose(mapped, image_point, atol=1e-9)
