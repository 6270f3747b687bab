"""Style similarity: measured by the embedding scorer, recorded as not measured otherwise."""

from __future__ import annotations

import hashlib
import io
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from photo_generators import FACES, PhotoGenerator, captured_messages
from PIL import Image
from ray import cloudpickle
from transformers import BitImageProcessor, Dinov2Config, Dinov2Model

from orchestrator.app_state import open_backends
from orchestrator.runner import Runner
from orchestrator.settings import Settings
from orchestrator.spec import load_spec
from orchestrator.style import STYLE_KEY, record_style, submit_style_score
from orchestrator.submit import submit
from schemas.records import FrameScore, GenerationRequest, ReferenceImage, Verdict

torch.set_num_threads(1)

TINY_VISION = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "image_size": 32,
    "patch_size": 8,
}


def png_of(path: Path) -> bytes:
    buffer = io.BytesIO()
    Image.open(path).convert("RGB").save(buffer, format="PNG")
    return buffer.getvalue()


def reference(path: Path) -> ReferenceImage:
    data = png_of(path)
    return ReferenceImage(sha256=hashlib.sha256(data).hexdigest(), png=data)


@pytest.fixture(scope="module")
def tiny_dinov2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("dinov2")
    torch.manual_seed(0)
    Dinov2Model(Dinov2Config(**TINY_VISION)).save_pretrained(folder)
    BitImageProcessor(
        size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
    ).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def embedding_actor(tiny_dinov2: Path, ray_session: None) -> Any:
    import ray

    from actors.identity import IdentityWorker

    actor = ray.remote(IdentityWorker).options(num_cpus=1).remote("embedding", str(tiny_dinov2))
    yield actor
    ray.kill(actor)


def unscored() -> FrameScore:
    return FrameScore(verdict=Verdict.ON_MODEL, scorer="embedding", detail="ana: fine")


def test_embedding_scorer_measures_style(embedding_actor: Any) -> None:
    style = reference(FACES / "flower.jpg")

    same = record_style(
        unscored(),
        submit_style_score(embedding_actor, "embedding", style.png, style),
        "embedding",
        style,
    )
    other_png = png_of(FACES / "ardern_2022.jpg")
    other = record_style(
        unscored(),
        submit_style_score(embedding_actor, "embedding", other_png, style),
        "embedding",
        style,
    )

    assert same.style_similarity is not None
    assert same.style_similarity == pytest.approx(1.0, abs=1e-4)
    assert other.style_similarity is not None
    assert 0.0 <= other.style_similarity < same.style_similarity
    assert other.detail.startswith("ana: fine | style similarity 0.")
    assert other.verdict == Verdict.ON_MODEL


def test_face_scorer_records_not_measured() -> None:
    style = reference(FACES / "flower.jpg")

    ref = submit_style_score(object(), "dlib", b"frame", style)
    score = record_style(unscored(), ref, "dlib", style)

    assert ref is None
    assert score.style_similarity is None
    assert "style similarity not measured (scorer dlib compares faces" in score.detail


def test_no_style_image_leaves_score_unchanged() -> None:
    score = unscored()

    assert submit_style_score(object(), "embedding", b"frame", None) is None
    assert record_style(score, None, "embedding", None) == score


def test_style_key_cannot_be_a_character_id() -> None:
    from pydantic import ValidationError

    from schemas.storyboard import Character

    with pytest.raises(ValidationError):
        Character(id=STYLE_KEY, references=["a.jpg"])


class StyleGenerator(PhotoGenerator):
    """Returns the style image for prompts containing "copy the style", a face otherwise."""

    def image(self, request: GenerationRequest) -> Image.Image:
        return self.photo("flower.jpg" if "copy the style" in request.prompt else "ardern_2022.jpg")


# Ray workers cannot import this test module, so its classes travel by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])


def test_run_records_style_similarity_per_frame(
    tmp_path: Path, tiny_dinov2: Path, ray_session: None
) -> None:
    refs = tmp_path / "spec" / "refs"
    refs.mkdir(parents=True)
    shutil.copy(FACES / "ardern_2018.jpg", refs / "ana.jpg")
    shutil.copy(FACES / "flower.jpg", refs / "style.jpg")
    doc = {
        "name": "style",
        "characters": [
            {"id": "ana", "name": "Ana", "references": ["refs/ana.jpg"], "threshold": 0.0}
        ],
        "style": {"reference": "refs/style.jpg"},
        "defaults": {"backend": "tiny", "width": 64, "height": 64, "steps": 1},
        "consistency": {"scorer": "embedding", "model": str(tiny_dinov2), "max_attempts": 1},
        "scenes": [
            {"id": "copy", "prompt": "Ana and copy the style", "characters": ["ana"]},
            {"id": "face", "prompt": "Ana smiles", "characters": ["ana"]},
        ],
    }
    spec = tmp_path / "spec" / "spec.yaml"
    spec.write_text(yaml.safe_dump(doc))
    settings = Settings(home=tmp_path / "home")
    backends = open_backends(settings)
    run_id = submit(backends.catalog, backends.store, load_spec(spec))
    runner = Runner(settings, backends.catalog, backends.store, generator_cls=StyleGenerator)
    with captured_messages() as lines:
        try:
            runner.run(run_id)
        finally:
            runner.shutdown()

    frames = {f.key: f.scene_id for f in backends.catalog.list_frames(run_id)}
    styles = {}
    for line in lines:
        if " verdict=" in line:
            key = line.split("frame=")[1].split()[0]
            styles[frames[key]] = line.rsplit("style=", 1)[1]
    assert set(styles) == {"copy", "face"}
    assert float(styles["copy"]) == pytest.approx(1.0, abs=1e-3)
    assert 0.0 <= float(styles["face"]) < float(styles["copy"])

    # The catalog keeps the same figures on each attempt and asset.
    assets = {a.scene_id: a for a in backends.catalog.list_assets(run_id=run_id)}
    assert assets["copy"].style_similarity == pytest.approx(float(styles["copy"]), abs=1e-3)
    assert assets["face"].style_similarity == pytest.approx(float(styles["face"]), abs=1e-3)
    attempts = backends.catalog.list_attempts(run_id)
    assert all(a.style_similarity is not None for a in attempts)
