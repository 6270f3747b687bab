"""The generator side: the tiny pipeline, the backends and the worker, on the CPU."""

from __future__ import annotations

import io
import logging
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from actors.backends import BACKENDS, load_backend
from actors.backends.diffusers import load_diffusers_backend
from actors.backends.tiny import load_tiny_backend
from actors.compose import compose_canvas
from actors.generator import GeneratorWorker
from actors.tiny import build_tiny_kontext_pipeline
from schemas.errors import BackendLoadError
from schemas.records import GenerationRequest

# Another busy core slows two torch threads down many times over.
torch.set_num_threads(1)

REPO_ROOT = Path(__file__).resolve().parents[2]


def make_request(
    width: int = 64,
    height: int = 64,
    seed: int = 1,
    conditioning_png: bytes | None = None,
    backend: str = "tiny",
    model: str = "tiny",
    **changes: object,
) -> GenerationRequest:
    fields: dict[str, object] = {
        "frame_key": "frame-1",
        "attempt": 1,
        "prompt": "Ana waves at the camera",
        "backend": backend,
        "model": model,
        "width": width,
        "height": height,
        "steps": 2,
        "guidance": 2.5,
        "seed": seed,
        "conditioning_png": conditioning_png,
    }
    fields.update(changes)
    return GenerationRequest.model_validate(fields)


def solid_png(color: tuple[int, int, int], width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buffer, format="PNG")
    return buffer.getvalue()


def pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.int16)


@pytest.fixture(scope="module")
def tiny_backend():  # type: ignore[no-untyped-def]
    return load_tiny_backend("tiny", {"device": "cpu"})


# --- the tiny pipeline -------------------------------------------------------


def test_tiny_pipeline_builds_in_under_a_second() -> None:
    build_tiny_kontext_pipeline(0)  # The first build pays one-time lazy imports.
    started = time.perf_counter()
    build_tiny_kontext_pipeline(1)
    assert time.perf_counter() - started < 1.0


def test_tiny_pipeline_configs_fit_together() -> None:
    pipeline = build_tiny_kontext_pipeline()
    transformer = pipeline.transformer.config
    vae = pipeline.vae.config

    assert transformer.in_channels == 4 * vae.latent_channels
    assert transformer.joint_attention_dim == pipeline.text_encoder_2.config.d_model
    assert transformer.pooled_projection_dim == pipeline.text_encoder.config.hidden_size
    assert sum(transformer.axes_dims_rope) == transformer.attention_head_dim
    assert transformer.guidance_embeds is True
    assert pipeline.vae_scale_factor == 8
    assert pipeline.tokenizer.model_max_length == 77
    assert pipeline.text_encoder.config.eos_token_id == pipeline.tokenizer.eos_token_id


def test_tiny_clip_tokenizer_has_no_unknown_tokens() -> None:
    tokenizer = build_tiny_kontext_pipeline().tokenizer
    ids = tokenizer("Ana and Léo — 日本 🙂 tab\there")["input_ids"]

    assert tokenizer.unk_token_id not in ids[1:-1]


def test_tiny_weights_depend_only_on_seed() -> None:
    before = torch.random.get_rng_state()
    first = build_tiny_kontext_pipeline(3).transformer.state_dict()
    again = build_tiny_kontext_pipeline(3).transformer.state_dict()
    other = build_tiny_kontext_pipeline(4).transformer.state_dict()

    assert all(torch.equal(first[name], again[name]) for name in first)
    assert not all(torch.equal(first[name], other[name]) for name in first)
    assert torch.equal(torch.random.get_rng_state(), before)


# --- generating through the tiny backend -------------------------------------


@pytest.mark.parametrize(("width", "height"), [(64, 32), (32, 64), (48, 80)])
def test_tiny_output_has_requested_size(tiny_backend, width: int, height: int) -> None:  # type: ignore[no-untyped-def]
    result = tiny_backend.generate(make_request(width, height))
    image = Image.open(io.BytesIO(result.png))

    assert image.format == "PNG"
    assert image.size == (width, height)
    assert (result.width, result.height) == (width, height)
    assert result.frame_key == "frame-1"
    assert result.attempt == 1
    assert result.device == "cpu"
    assert result.backend == "tiny"
    assert result.seconds > 0


def test_same_seed_gives_identical_png(tiny_backend) -> None:  # type: ignore[no-untyped-def]
    first = tiny_backend.generate(make_request(seed=7)).png
    second = tiny_backend.generate(make_request(seed=7)).png

    assert first == second


def test_different_seed_gives_different_png(tiny_backend) -> None:  # type: ignore[no-untyped-def]
    first = tiny_backend.generate(make_request(seed=7)).png
    second = tiny_backend.generate(make_request(seed=8)).png

    assert first != second


def test_conditioning_image_changes_output(tiny_backend) -> None:  # type: ignore[no-untyped-def]
    canvas = compose_canvas([solid_png((220, 30, 30), 40, 80)], 64, 64)
    plain = tiny_backend.generate(make_request()).png
    conditioned = tiny_backend.generate(make_request(conditioning_png=canvas)).png

    assert plain != conditioned


@pytest.mark.parametrize("size", [(8, 8), (300, 90), (64, 64)])
def test_conditioning_of_any_size_keeps_output_size(tiny_backend, size) -> None:  # type: ignore[no-untyped-def]
    reference = solid_png((30, 30, 220), *size)
    result = tiny_backend.generate(make_request(64, 32, conditioning_png=reference))

    assert Image.open(io.BytesIO(result.png)).size == (64, 32)


def test_non_ascii_prompt_generates(tiny_backend) -> None:  # type: ignore[no-untyped-def]
    request = make_request(prompt="Léo smiles 🙂 at 日本 " + "long " * 200)

    assert Image.open(io.BytesIO(tiny_backend.generate(request).png)).size == (64, 64)


def test_size_not_multiple_of_16_is_rejected(tiny_backend) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=r"request\.width: 72 is not a positive multiple of 16"):
        tiny_backend.generate(make_request(width=72))


def test_undecodable_conditioning_is_rejected(tiny_backend) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=r"request\.conditioning_png: not a decodable image"):
        tiny_backend.generate(make_request(conditioning_png=b"not an image"))


def test_request_option_max_sequence_length(tiny_backend) -> None:  # type: ignore[no-untyped-def]
    short = tiny_backend.generate(make_request(options={"max_sequence_length": 8})).png
    default = tiny_backend.generate(make_request()).png

    assert short != default
    with pytest.raises(ValueError, match=r"request\.options\.max_sequence_length"):
        tiny_backend.generate(make_request(options={"max_sequence_length": 0}))


def test_unknown_request_option_is_rejected(tiny_backend) -> None:  # type: ignore[no-untyped-def]
    expected = r"options: 'strength' not supported by the 'tiny' backend"
    with pytest.raises(ValueError, match=expected):
        tiny_backend.generate(make_request(options={"strength": 0.5}))


# --- loading through the diffusers backend ------------------------------------


def test_diffusers_backend_loads_saved_pipeline(tiny_pipeline_dir: Path, tiny_backend) -> None:  # type: ignore[no-untyped-def]
    loaded = load_diffusers_backend(str(tiny_pipeline_dir), {"device": "cpu"})
    # The same prompt length as the tiny backend, whose default is shorter than the real 512.
    request = make_request(
        48,
        32,
        conditioning_png=solid_png((200, 120, 40), 48, 32),
        options={"max_sequence_length": 64},
    )

    from_disk = loaded.generate(request.model_copy(update={"backend": "diffusers"}))
    in_memory = tiny_backend.generate(request)

    assert loaded.pipeline.transformer.dtype == torch.float32
    assert from_disk.backend == "diffusers"
    assert from_disk.model == "tiny"
    assert (from_disk.width, from_disk.height) == (48, 32)
    # Reloaded weights round differently by about 1e-6, which can move a
    # pixel by one unit of 8 bits.
    assert np.abs(pixels(from_disk.png) - pixels(in_memory.png)).max() <= 1


def test_saved_pipeline_matches_in_memory_floats(tiny_pipeline_dir: Path, tiny_backend) -> None:  # type: ignore[no-untyped-def]
    loaded = load_diffusers_backend(str(tiny_pipeline_dir), {"device": "cpu"})
    arguments = {
        "prompt": "Ana waves",
        "height": 32,
        "width": 32,
        "max_area": 32 * 32,
        "_auto_resize": False,
        "num_inference_steps": 2,
        "guidance_scale": 2.5,
        "max_sequence_length": 64,
        "output_type": "np",
    }
    from_disk = loaded.pipeline(generator=torch.Generator("cpu").manual_seed(5), **arguments)
    in_memory = tiny_backend.pipeline(generator=torch.Generator("cpu").manual_seed(5), **arguments)

    np.testing.assert_allclose(from_disk.images, in_memory.images, atol=1e-3)


def test_missing_folder_gives_one_line_error(tmp_path: Path, no_network: list[str]) -> None:
    missing = str(tmp_path / "no-such-model")

    with pytest.raises(BackendLoadError) as caught:
        load_diffusers_backend(missing, {"device": "cpu"})

    message = str(caught.value)
    assert "\n" not in message
    assert f"model {missing!r}: local folder not found" in message
    assert no_network == []


def test_folder_without_model_index_gives_error(tmp_path: Path) -> None:
    with pytest.raises(BackendLoadError, match="the folder has no model_index.json"):
        load_diffusers_backend(str(tmp_path), {"device": "cpu"})


def test_uncached_hub_id_offline_gives_one_line_error(
    monkeypatch: pytest.MonkeyPatch, no_network: list[str]
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = "onmodel-tests/no-such-kontext-model"

    with pytest.raises(BackendLoadError) as caught:
        load_diffusers_backend(model, {"device": "cpu"})

    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"model {model!r}: not found as a local folder")
    assert f"`hf download {model}`" in message
    assert isinstance(caught.value.__cause__, OSError)
    assert no_network == []


def test_unknown_backend_is_rejected() -> None:
    with pytest.raises(BackendLoadError, match=r"backend 'dalle': unknown backend; available"):
        load_backend("dalle", "any")


def test_registry_lists_local_backends() -> None:
    assert {"tiny", "diffusers"} <= set(BACKENDS)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_cuda_without_cuda_is_rejected() -> None:
    with pytest.raises(BackendLoadError, match=r"options\.device: 'cuda' requested but CUDA"):
        load_tiny_backend("tiny", {"device": "cuda"})


def test_invalid_device_is_rejected() -> None:
    with pytest.raises(BackendLoadError, match=r"options\.device: invalid device 'gpu0'"):
        load_tiny_backend("tiny", {"device": "gpu0"})


def test_unknown_backend_option_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"'dtype' not supported by the 'tiny' backend"):
        load_tiny_backend("tiny", {"dtype": "bf16"})


# --- the worker --------------------------------------------------------------


def test_worker_generates_and_reports_info() -> None:
    worker = GeneratorWorker("tiny", "tiny", {"torch_threads": 1, "device": None})
    result = worker.generate(make_request(64, 32))
    info = worker.info()

    assert Image.open(io.BytesIO(result.png)).size == (64, 32)
    assert set(info) == {"pid", "node", "device", "backend", "model"}
    assert info["backend"] == "tiny"
    assert info["model"] == "tiny"
    assert info["device"] == ("cuda" if torch.cuda.is_available() else "cpu")
    assert result.node == info["node"]


def test_worker_rejects_request_for_other_model() -> None:
    worker = GeneratorWorker("tiny", "tiny", {"device": "cpu"})

    with pytest.raises(ValueError, match=r"does not match this worker's 'tiny'/'tiny'"):
        worker.generate(make_request(model="black-forest-labs/FLUX.1-Kontext-dev"))


@pytest.mark.parametrize("threads", [0, "2", True])
def test_worker_rejects_invalid_torch_threads(threads: object) -> None:
    with pytest.raises(ValueError, match=r"options\.torch_threads: must be an integer >= 1"):
        GeneratorWorker("tiny", "tiny", {"torch_threads": threads})


def test_worker_logs_load_and_generation(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="actors.generator")
    worker = GeneratorWorker("tiny", "tiny", {"device": "cpu"})
    worker.generate(make_request(attempt=3))

    messages = [record.getMessage() for record in caplog.records]
    assert any(m.startswith("loaded backend tiny model 'tiny' on cpu in ") for m in messages)
    assert any(m.startswith("frame frame-1 attempt 3: generating 64x64") for m in messages)


def test_worker_load_failure_is_logged(caplog: pytest.LogCaptureFixture, tmp_path: Path) -> None:
    caplog.set_level(logging.ERROR, logger="actors.generator")

    with pytest.raises(BackendLoadError):
        GeneratorWorker("diffusers", str(tmp_path / "absent"), {"device": "cpu"})

    assert "local folder not found" in caplog.text


def test_importing_generator_does_not_import_torch() -> None:
    code = "import sys, actors.generator; sys.exit('torch' in sys.modules)"

    assert subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT).returncode == 0


# --- the worker as a Ray actor -------------------------------------------------


@pytest.mark.usefixtures("ray_local")
def test_ray_actor_matches_local_worker() -> None:
    import ray

    remote_worker = ray.remote(GeneratorWorker).options(num_cpus=1)
    actor = remote_worker.remote("tiny", "tiny", {"torch_threads": 1, "device": "cpu"})
    try:
        request = make_request(64, 48, seed=11)
        remote = ray.get(actor.generate.remote(request), timeout=120)
        info = ray.get(actor.info.remote(), timeout=60)
    finally:
        ray.kill(actor)
    local = GeneratorWorker("tiny", "tiny", {"device": "cpu"}).generate(request)

    assert remote.png == local.png
    assert info["backend"] == "tiny"
    assert info["device"] == "cpu"
    assert remote.node == info["node"]


@pytest.mark.usefixtures("ray_local")
def test_ray_actor_load_failure_names_model(tmp_path: Path) -> None:
    import ray

    missing = str(tmp_path / "absent-model")
    remote_worker = ray.remote(GeneratorWorker).options(num_cpus=1, max_restarts=0)
    actor = remote_worker.remote("diffusers", missing, {"device": "cpu"})

    with pytest.raises(ray.exceptions.RayActorError) as caught:
        ray.get(actor.info.remote(), timeout=120)

    assert f"model {missing!r}: local folder not found" in str(caught.value)
