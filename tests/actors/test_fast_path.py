"""The speed settings of the pipeline backends, on the tiny pipeline and the CPU.

Each reuse (reference latents, prompt embeddings) must give the image of the
plain path and must skip the encoder it saves. Compilation must not
recompile across frames of one size.
"""

from __future__ import annotations

import io
import sys
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from actors.backends import BACKENDS
from actors.backends.fast_path import compiled_graph_count, quantize_fp8
from actors.backends.options import FastPathOptions, parse_fast_path_options, parse_sizes
from actors.backends.pipeline import KontextPipelineBackend, _LruCache
from actors.backends.tiny import load_tiny_backend
from actors.compose import compose_canvas
from actors.generator import GeneratorWorker
from schemas.errors import BackendLoadError
from schemas.records import GenerationRequest

# Another busy core slows two torch threads down many times over.
torch.set_num_threads(1)

# Images from the cached and the plain path may differ by float rounding,
# which can move a pixel by one unit of 8 bits.
PIXEL_TOLERANCE = 1


def make_request(
    width: int = 64,
    height: int = 64,
    seed: int = 1,
    prompt: str = "Ana waves at the camera",
    conditioning_png: bytes | None = None,
    **changes: object,
) -> GenerationRequest:
    fields: dict[str, object] = {
        "frame_key": "frame-1",
        "attempt": 1,
        "prompt": prompt,
        "backend": "tiny",
        "model": "tiny",
        "width": width,
        "height": height,
        "steps": 3,
        "guidance": 2.5,
        "seed": seed,
        "conditioning_png": conditioning_png,
    }
    fields.update(changes)
    return GenerationRequest.model_validate(fields)


def noise_png(width: int, height: int, seed: int = 0) -> bytes:
    values = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(values).save(buffer, format="PNG")
    return buffer.getvalue()


def pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.int16)


def load(**options: Any) -> KontextPipelineBackend:
    return load_tiny_backend("tiny", {"device": "cpu", **options})


class CallCounter:
    """Counter of a module's forward calls, through a forward hook."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.calls = 0
        self._handle = module.register_forward_hook(self._count)

    def _count(self, *_: object) -> None:
        self.calls += 1

    def remove(self) -> None:
        self._handle.remove()


@pytest.fixture
def canvas() -> bytes:
    return compose_canvas([noise_png(40, 80, seed=1), noise_png(48, 48, seed=2)], 64, 64)


@pytest.fixture
def reset_dynamo() -> Iterator[None]:
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


# --- reference latents -------------------------------------------------------


def test_cached_reference_gives_plain_image(canvas: bytes) -> None:
    plain = load(cache_reference_latents=False, cache_prompt_embeds=False)
    cached = load(cache_reference_latents=True, cache_prompt_embeds=False)

    for seed in (1, 2):
        request = make_request(seed=seed, conditioning_png=canvas)
        expected = pixels(plain.generate(request).png)
        actual = pixels(cached.generate(request).png)
        assert np.abs(actual - expected).max() <= PIXEL_TOLERANCE


def test_reference_encoded_once_per_image_and_size(canvas: bytes) -> None:
    backend = load(cache_reference_latents=True)
    encoder = CallCounter(backend.pipeline.vae.encoder)

    for attempt, seed in enumerate((1, 2, 3), start=1):
        backend.generate(make_request(seed=seed, attempt=attempt, conditioning_png=canvas))
    assert encoder.calls == 1

    backend.generate(make_request(48, 32, conditioning_png=canvas))
    assert encoder.calls == 2
    other = compose_canvas([noise_png(40, 80, seed=9)], 64, 64)
    backend.generate(make_request(conditioning_png=other))
    assert encoder.calls == 3

    stats = backend.stats()
    assert stats["reference_cache_hits"] == 2
    assert stats["reference_cache_misses"] == 3
    assert stats["reference_cache_entries"] == 3


def test_uncached_reference_encodes_every_frame(canvas: bytes) -> None:
    backend = load(cache_reference_latents=False)
    encoder = CallCounter(backend.pipeline.vae.encoder)

    for seed in (1, 2, 3):
        backend.generate(make_request(seed=seed, conditioning_png=canvas))

    assert encoder.calls == 3
    assert backend.stats()["reference_cache_misses"] == 0


def test_cached_reference_of_other_aspect_matches(canvas: bytes) -> None:
    # fit_to_area resizes a wide reference for a tall frame; the cache must
    # encode exactly what the pipeline would.
    wide = noise_png(120, 40, seed=4)
    request = make_request(32, 64, conditioning_png=wide)
    plain = load(cache_reference_latents=False).generate(request)
    cached = load(cache_reference_latents=True).generate(request)

    assert np.abs(pixels(cached.png) - pixels(plain.png)).max() <= PIXEL_TOLERANCE


def test_undecodable_reference_is_rejected_with_cache() -> None:
    backend = load(cache_reference_latents=True)

    with pytest.raises(ValueError, match=r"request\.conditioning_png: not a decodable image"):
        backend.generate(make_request(conditioning_png=b"not an image"))


# --- prompt embeddings -------------------------------------------------------


def test_cached_prompt_gives_plain_image(canvas: bytes) -> None:
    plain = load(cache_prompt_embeds=False, cache_reference_latents=False)
    cached = load(cache_prompt_embeds=True, cache_reference_latents=False)

    for request in (make_request(seed=5), make_request(seed=5, conditioning_png=canvas)):
        expected = pixels(plain.generate(request).png)
        assert np.abs(pixels(cached.generate(request).png) - expected).max() <= PIXEL_TOLERANCE
        # A second attempt reads the embeddings from the cache.
        assert np.abs(pixels(cached.generate(request).png) - expected).max() <= PIXEL_TOLERANCE


def test_prompt_encoded_once_across_attempts() -> None:
    backend = load(cache_prompt_embeds=True)
    t5 = CallCounter(backend.pipeline.text_encoder_2)
    clip = CallCounter(backend.pipeline.text_encoder)

    for attempt in (1, 2, 3):
        backend.generate(make_request(seed=attempt, attempt=attempt))
    assert (t5.calls, clip.calls) == (1, 1)

    backend.generate(make_request(prompt="Leo reads a newspaper"))
    assert (t5.calls, clip.calls) == (2, 2)
    backend.generate(make_request(options={"max_sequence_length": 16}))
    assert (t5.calls, clip.calls) == (3, 3)

    stats = backend.stats()
    assert stats["prompt_cache_hits"] == 2
    assert stats["prompt_cache_misses"] == 3


def test_uncached_prompt_encodes_every_frame() -> None:
    backend = load(cache_prompt_embeds=False)
    t5 = CallCounter(backend.pipeline.text_encoder_2)

    for seed in (1, 2):
        backend.generate(make_request(seed=seed))

    assert t5.calls == 2


def test_both_caches_give_plain_image(canvas: bytes) -> None:
    request = make_request(48, 80, seed=3, conditioning_png=canvas)
    plain = load(cache_prompt_embeds=False, cache_reference_latents=False).generate(request)
    fast = load()
    fast.generate(request)
    again = fast.generate(request)

    assert np.abs(pixels(again.png) - pixels(plain.png)).max() <= PIXEL_TOLERANCE
    assert fast.stats()["reference_cache_hits"] == 1
    assert fast.stats()["prompt_cache_hits"] == 1


def test_lru_cache_drops_least_recent() -> None:
    cache: _LruCache[str, int] = _LruCache(2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1
    cache.put("c", 3)

    assert cache.get("b") is None
    assert cache.get("a") == 1
    assert cache.get("c") == 3
    assert (cache.hits, cache.misses, len(cache)) == (3, 1, 2)


# --- torch.compile -----------------------------------------------------------


@pytest.mark.usefixtures("reset_dynamo")
def test_compiled_frames_of_one_size_do_not_recompile(canvas: bytes) -> None:
    plain = load()
    backend = load(compile="full", compile_backend="eager")
    before = compiled_graph_count()

    first = backend.generate(make_request(conditioning_png=canvas))
    after_first = compiled_graph_count()
    for seed, prompt in ((2, "Leo waves"), (3, "Ana smiles"), (4, "Ana waves")):
        other = compose_canvas([noise_png(32, 32, seed=seed)], 64, 64)
        backend.generate(make_request(seed=seed, prompt=prompt, conditioning_png=other))
    after_same_size = compiled_graph_count()
    backend.generate(make_request(48, 80, conditioning_png=canvas))
    after_new_size = compiled_graph_count()

    assert after_first - before == 1
    assert after_same_size == after_first
    assert after_new_size - after_same_size == 1
    expected = pixels(plain.generate(make_request(conditioning_png=canvas)).png)
    assert np.abs(pixels(first.png) - expected).max() <= PIXEL_TOLERANCE


@pytest.mark.usefixtures("reset_dynamo")
def test_regional_compile_reuses_block_graphs(canvas: bytes) -> None:
    backend = load(compile="regional", compile_backend="eager")
    before = compiled_graph_count()

    backend.generate(make_request(conditioning_png=canvas))
    after_first = compiled_graph_count()
    backend.generate(make_request(seed=2, prompt="Leo waves", conditioning_png=canvas))

    assert after_first > before
    assert compiled_graph_count() == after_first


@pytest.mark.usefixtures("reset_dynamo")
def test_warm_up_compiles_at_load(canvas: bytes) -> None:
    before = compiled_graph_count()
    backend = load(compile="full", compile_backend="eager", warmup_sizes="64x64")
    after_load = compiled_graph_count()
    backend.generate(make_request(conditioning_png=canvas))

    assert after_load - before == 1
    assert compiled_graph_count() == after_load
    stats = backend.stats()
    assert stats["frames"] == 1
    assert stats["reference_cache_misses"] == 1


def test_warm_up_is_skipped_without_compile() -> None:
    backend = load(warmup_sizes="64x64")

    assert backend.stats()["compiled_graphs"] is None
    assert backend.stats()["frames"] == 0


# --- First Block Cache, VAE tiling ---------------------------------------------


def test_first_block_cache_is_repeatable(canvas: bytes) -> None:
    backend = load(first_block_cache=0.5)
    request = make_request(steps=6, conditioning_png=canvas)

    first = backend.generate(request)
    second = backend.generate(request)

    assert Image.open(io.BytesIO(first.png)).size == (64, 64)
    # The cache state is reset per frame, so a frame does not see the last one's residuals.
    assert first.png == second.png
    assert backend.pipeline.transformer.is_cache_enabled


def test_first_block_cache_skips_blocks(canvas: bytes) -> None:
    # A threshold close to 1 makes most steps reuse the cached residuals,
    # so the image differs from the full computation.
    request = make_request(steps=6, conditioning_png=canvas)
    plain = load().generate(request)
    cached = load(first_block_cache=0.99).generate(request)

    assert cached.png != plain.png


@pytest.mark.usefixtures("reset_dynamo")
def test_first_block_cache_with_compile_settles(canvas: bytes) -> None:
    # Dynamo specializes the hooked blocks on the cache's compute-or-reuse
    # decision, so the first frames compile a few graphs; then no more.
    backend = load(first_block_cache=0.5, compile="regional", compile_backend="eager")
    request = make_request(steps=4, conditioning_png=canvas)

    first = backend.generate(request)
    backend.generate(request)
    settled = compiled_graph_count()
    later = [backend.generate(request) for _ in range(2)]

    assert compiled_graph_count() == settled
    assert all(result.png == first.png for result in later)


def test_vae_tiles_from_min_side(canvas: bytes) -> None:
    backend = load(vae_tiling_min_side=64)

    small = backend.generate(make_request(48, 32, conditioning_png=canvas))
    assert backend.pipeline.vae.use_tiling is False
    large = backend.generate(make_request(64, 96, conditioning_png=canvas))
    assert backend.pipeline.vae.use_tiling is True

    assert Image.open(io.BytesIO(small.png)).size == (48, 32)
    assert Image.open(io.BytesIO(large.png)).size == (64, 96)


# --- device checks -------------------------------------------------------------


@pytest.mark.parametrize("mode", ["weight", "dynamic"])
def test_fp8_on_cpu_is_rejected(mode: str) -> None:
    with pytest.raises(BackendLoadError, match=r"options\.fp8: needs a CUDA device .* on cpu"):
        load(fp8=mode)


def test_cpu_offload_on_cpu_is_rejected() -> None:
    with pytest.raises(BackendLoadError, match=r"options\.cpu_offload: needs a CUDA device"):
        load(cpu_offload=True)


def test_fp8_without_torchao_names_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torchao", None)
    monkeypatch.setitem(sys.modules, "torchao.quantization", None)
    module = torch.nn.Linear(16, 16)

    with pytest.raises(BackendLoadError, match=r"needs the torchao package.*pip install torchao"):
        quantize_fp8(module, "weight")


def test_fp8_weight_quantizes_tiny_transformer(canvas: bytes) -> None:
    pytest.importorskip("torchao", reason="torchao is an optional extra")
    backend = load()
    expected = pixels(backend.generate(make_request(conditioning_png=canvas)).png)

    quantize_fp8(backend.pipeline.transformer, "weight")
    quantized = pixels(backend.generate(make_request(conditioning_png=canvas)).png)

    assert "Float8" in type(backend.pipeline.transformer.x_embedder.weight).__name__
    assert quantized.shape == expected.shape


# --- options -------------------------------------------------------------------


def test_default_options() -> None:
    assert parse_fast_path_options({}) == FastPathOptions()
    assert FastPathOptions().cache_reference_latents is True
    assert FastPathOptions().cache_prompt_embeds is True


def test_options_accept_switch_values() -> None:
    options = parse_fast_path_options(
        {"compile": True, "fp8": "Weight", "first_block_cache": 0.1, "warmup_sizes": [[64, 32]]}
    )

    assert options.compile == "full"
    assert options.fp8 == "weight"
    assert options.first_block_cache == 0.1
    assert options.warmup_sizes == ((64, 32),)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"compile": "max"}, r"options\.compile: must be one of off, full, regional; got 'max'"),
        ({"fp8": "int8"}, r"options\.fp8: must be one of off, weight, dynamic"),
        ({"first_block_cache": 1.5}, r"options\.first_block_cache: must be a threshold"),
        ({"first_block_cache": True}, r"options\.first_block_cache: must be a threshold"),
        ({"vae_tiling_min_side": 8}, r"options\.vae_tiling_min_side: must be an integer >= 16"),
        ({"cpu_offload": "yes"}, r"options\.cpu_offload: must be true or false"),
        ({"cache_prompt_embeds": 1}, r"options\.cache_prompt_embeds: must be true or false"),
        ({"compile_backend": ""}, r"options\.compile_backend: must be a torch\.compile backend"),
    ],
)
def test_invalid_option_is_rejected(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_fast_path_options(options)


def test_warmup_sizes_parse() -> None:
    assert parse_sizes("1024x1024, 768X1344") == ((1024, 1024), (768, 1344))
    assert parse_sizes("") == ()
    with pytest.raises(ValueError, match=r"options\.warmup_sizes: '1024' is not a size"):
        parse_sizes("1024")
    with pytest.raises(ValueError, match=r"not a positive multiple of 16"):
        parse_sizes("1000x1024")


def test_unknown_option_still_rejected() -> None:
    with pytest.raises(ValueError, match=r"'compile_mode' not supported by the 'tiny' backend"):
        load(compile_mode="max-autotune")


# --- the worker ------------------------------------------------------------------


def test_worker_passes_speed_options_and_reports_stats(canvas: bytes) -> None:
    worker = GeneratorWorker(
        "tiny", "tiny", {"device": "cpu", "torch_threads": 1, "cache_prompt_embeds": True}
    )
    worker.generate(make_request(conditioning_png=canvas))
    worker.generate(make_request(seed=2, attempt=2, conditioning_png=canvas))

    stats = worker.stats()
    assert stats["frames"] == 2
    assert stats["prompt_cache_hits"] == 1
    assert stats["reference_cache_hits"] == 1


def test_worker_drops_speed_options_for_other_backends(monkeypatch: pytest.MonkeyPatch) -> None:
    received: list[Mapping[str, Any]] = []

    class Remote:
        name = "bfl"
        model = "flux-kontext-pro"
        device = "remote"

    def factory(model: str, options: Mapping[str, Any]) -> Remote:
        received.append(dict(options))
        return Remote()

    monkeypatch.setitem(BACKENDS, "bfl", factory)
    worker = GeneratorWorker(
        "bfl", "flux-kontext-pro", {"compile": "full", "fp8": "off", "timeout_s": 30.0}
    )

    assert received == [{"timeout_s": 30.0}]
    assert worker.stats() == {}


# --- on a CUDA GPU (deselected by default: -m gpu) --------------------------------


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.usefixtures("reset_dynamo")
def test_cuda_fast_path_matches_plain(canvas: bytes) -> None:
    plain = load_tiny_backend("tiny", {"device": "cuda", "cache_reference_latents": False})
    fast = load_tiny_backend("tiny", {"device": "cuda", "compile": "full", "warmup_sizes": "64x64"})
    graphs = fast.stats()["compiled_graphs"]

    for seed in (1, 2):
        request = make_request(seed=seed, conditioning_png=canvas)
        expected = pixels(plain.generate(request).png)
        # Inductor's fused kernels round differently from eager ones.
        assert np.abs(pixels(fast.generate(request).png) - expected).max() <= 8
    assert fast.stats()["compiled_graphs"] == graphs


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_fp8_loads_or_names_reason(canvas: bytes) -> None:
    capability = torch.cuda.get_device_capability()
    try:
        import torchao  # noqa: F401
    except ImportError:
        pytest.skip("torchao is an optional extra")
    if capability < (8, 9):
        with pytest.raises(BackendLoadError, match=r"compute capability"):
            load_tiny_backend("tiny", {"device": "cuda", "fp8": "weight"})
        return

    backend = load_tiny_backend("tiny", {"device": "cuda", "fp8": "weight"})
    result = backend.generate(make_request(conditioning_png=canvas))

    assert Image.open(io.BytesIO(result.png)).size == (64, 64)
