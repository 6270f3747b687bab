"""Speed settings applied to a loaded FLUX.1 Kontext pipeline.

`prepare_pipeline` places the pipeline on its device and applies, in this
order, FP8 quantization, the First Block Cache and `torch.compile`. The
order matters because the compiler must trace the quantized weights and
the cache hooks. The per-frame
parts (VAE tiling, the cache context) are applied by `KontextPipelineBackend`.
Each setting is described in docs/benchmarks.md.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

import torch
from diffusers import FluxKontextPipeline

from actors.backends.options import FastPathOptions
from schemas.errors import BackendLoadError

logger = logging.getLogger(__name__)

# Float8 matmuls and float8 weight casts need Ada (8.9), Hopper (9.0) or newer.
FP8_MIN_CAPABILITY = (8, 9)
# Compiled graphs kept per compiled function. Each frame size adds one graph,
# and past dynamo's default limit of 8 it silently runs the function eagerly.
COMPILE_RECOMPILE_LIMIT = 64
# Name of the cache context around the denoiser: Kontext runs one conditional
# transformer call per step (no negative prompt), so one context suffices.
CACHE_CONTEXT = "cond"


def place_pipeline(
    pipeline: FluxKontextPipeline, device: torch.device, options: FastPathOptions
) -> None:
    """Move the pipeline to `device`, or keep its models on the CPU until they run (cpu_offload)."""
    if not options.cpu_offload:
        pipeline.to(device)
        return
    if device.type != "cuda":
        raise BackendLoadError(
            f"options.cpu_offload: needs a CUDA device, but this worker runs on {device}; "
            "set cpu_offload to false"
        )
    # Accelerate moves each model to the GPU when it runs and back when the
    # next one starts, so only one model at a time takes GPU memory.
    pipeline.enable_model_cpu_offload(device=device)


def check_fp8_device(device: torch.device) -> None:
    """Raise BackendLoadError unless `device` is a CUDA device that supports float8."""
    needed = ".".join(map(str, FP8_MIN_CAPABILITY))
    if device.type != "cuda":
        raise BackendLoadError(
            f"options.fp8: needs a CUDA device of compute capability {needed} or higher, but this "
            f"worker runs on {device}; set fp8 to 'off'"
        )
    capability = torch.cuda.get_device_capability(device)
    if capability < FP8_MIN_CAPABILITY:
        name = torch.cuda.get_device_name(device)
        raise BackendLoadError(
            f"options.fp8: {name} has compute capability {capability[0]}.{capability[1]}, and "
            f"float8 needs {needed} or higher (Ada, Hopper or newer); set fp8 to 'off'"
        )


def quantize_fp8(transformer: torch.nn.Module, mode: str) -> None:
    """Quantize the transformer's linear layers to float8 in place with torchao.

    mode "weight" stores float8 weights and computes in bfloat16; "dynamic"
    also casts activations, so the matmuls run in float8. Raises
    BackendLoadError when torchao is not installed.
    """
    try:
        from torchao.quantization import (
            Float8DynamicActivationFloat8WeightConfig,
            Float8WeightOnlyConfig,
            quantize_,
        )
    except ImportError as exc:
        raise BackendLoadError(
            f"options.fp8: {mode!r} needs the torchao package, which is not installed; "
            "install it with `pip install torchao` or set fp8 to 'off'"
        ) from exc
    config = (
        Float8WeightOnlyConfig()
        if mode == "weight"
        else Float8DynamicActivationFloat8WeightConfig()
    )
    quantize_(transformer, config)


def enable_first_block_cache(transformer: torch.nn.Module, threshold: float) -> None:
    """Install diffusers' First Block Cache hooks on the transformer's blocks."""
    from diffusers.hooks import FirstBlockCacheConfig

    transformer.enable_cache(FirstBlockCacheConfig(threshold=threshold))


def _raise_recompile_limit() -> None:
    config = torch._dynamo.config
    # torch 2.7 renamed cache_size_limit to recompile_limit; both names work in 2.13.
    name = "recompile_limit" if hasattr(config, "recompile_limit") else "cache_size_limit"
    setattr(config, name, max(getattr(config, name), COMPILE_RECOMPILE_LIMIT))


def compile_transformer(
    transformer: torch.nn.Module, scope: str, backend: str, fullgraph: bool
) -> None:
    """Compile the transformer in place, for the whole model or per repeated block.

    dynamic=False specializes every graph to its input shapes, so frames of
    one size and one conditioning size reuse a graph, and a new size
    compiles a new graph once instead of a slower shape-generic one.
    """
    _raise_recompile_limit()
    kwargs = {"backend": backend, "dynamic": False, "fullgraph": fullgraph}
    if scope == "regional":
        transformer.compile_repeated_blocks(**kwargs)
    else:
        transformer.compile(**kwargs)


def compiled_graph_count() -> int:
    """Return how many graphs dynamo has compiled in this process."""
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


def prepare_pipeline(
    pipeline: FluxKontextPipeline, device: torch.device, options: FastPathOptions
) -> None:
    """Place the pipeline on `device` and apply the load-time speed settings.

    Raises BackendLoadError for a setting that this device or installation
    cannot run (FP8 without CUDA 8.9+ or torchao, CPU offload without CUDA).
    """
    # 1. Check the device before anything is moved, so a bad setting fails fast.
    if options.fp8 != "off":
        check_fp8_device(device)

    # 2. Place the models.
    place_pipeline(pipeline, device, options)

    # 3. Quantize on the device: torchao converts weights where they are.
    # NOTE: with cpu_offload the weights are converted on the CPU and moved by
    # accelerate's hooks; that pairing has not been run on a GPU.
    if options.fp8 != "off":
        quantize_fp8(pipeline.transformer, options.fp8)
        logger.info("transformer quantized to float8 (%s)", options.fp8)

    # 4. Cache hooks before compiling, so the compiled code includes them.
    if options.first_block_cache is not None:
        enable_first_block_cache(pipeline.transformer, options.first_block_cache)
        logger.info("First Block Cache on, threshold %s", options.first_block_cache)

    # 5. Compile. The cache hooks decide on the host (a `.item()` per step),
    # which breaks the graph, so a full graph is only required without them.
    if options.compile != "off":
        compile_transformer(
            pipeline.transformer,
            options.compile,
            options.compile_backend,
            fullgraph=options.first_block_cache is None,
        )
        logger.info(
            "transformer compiled lazily (%s, backend %s)", options.compile, options.compile_backend
        )


def set_vae_tiling(
    pipeline: FluxKontextPipeline, width: int, height: int, min_side: int | None
) -> bool:
    """Tile the VAE for frames whose longer side is at least `min_side`; return whether it tiles."""
    tile = min_side is not None and max(width, height) >= min_side
    if tile != pipeline.vae.use_tiling:
        if tile:
            pipeline.vae.enable_tiling()
        else:
            pipeline.vae.disable_tiling()
    return tile


@contextlib.contextmanager
def denoiser_context(pipeline: FluxKontextPipeline, options: FastPathOptions) -> Iterator[None]:
    """Give the First Block Cache a fresh state and its context for one generation.

    FluxKontextPipeline (diffusers 0.42.1) does not enter a cache context
    around its transformer calls, unlike FluxPipeline, and the cache hooks
    raise without one. The state is reset first because a generation that
    raised part-way leaves the previous frame's residuals behind.
    """
    if options.first_block_cache is None:
        yield
        return
    transformer = pipeline.transformer
    transformer._reset_stateful_cache()
    with transformer.cache_context(CACHE_CONTEXT):
        yield
