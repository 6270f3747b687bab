"""Generation through a loaded diffusers FLUX.1 Kontext pipeline.

The `tiny` and `diffusers` backends differ only in how they load the
pipeline; both run frames through `KontextPipelineBackend`, built by
`build_pipeline_backend`.

Work that repeats across frames is done once per worker: a conditioning
image is encoded by the VAE once per (image, frame size), and a prompt by
the text encoders once per (prompt, max sequence length). Both results are
passed to the pipeline in place of the image and the prompt, which diffusers
accepts: FluxKontextPipeline (0.42.1) skips encoding when `image` is a
latent tensor and when `prompt_embeds` are given.
"""

from __future__ import annotations

import hashlib
import io
import logging
import math
import socket
import time
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any, Generic, TypeVar

import torch
from diffusers import FluxKontextPipeline
from PIL import Image

from actors.backends.fast_path import (
    compiled_graph_count,
    denoiser_context,
    prepare_pipeline,
    set_vae_tiling,
)
from actors.backends.options import PIPELINE_OPTIONS, FastPathOptions, parse_fast_path_options
from actors.compose import decode_rgb
from schemas.errors import BackendLoadError, GenerationError
from schemas.records import GenerationRequest, GenerationResult
from schemas.storyboard import Backend

logger = logging.getLogger(__name__)

__all__ = [
    "PIPELINE_OPTIONS",
    "KontextPipelineBackend",
    "build_pipeline_backend",
    "check_options",
    "fit_to_area",
    "resolve_device",
]

# Request options that a single generation may override.
REQUEST_OPTIONS = frozenset({"max_sequence_length"})
# FluxKontextPipeline rejects more T5 tokens than this (diffusers 0.42).
MAX_SEQUENCE_LENGTH_LIMIT = 512
# Cache sizes, in entries. At full size a prompt entry is 512 x 4096 bf16
# values (4 MiB) and a 1024x1024 reference is 16 x 128 x 128 bf16 (0.5 MiB),
# so the two caches hold at most 160 MiB of device memory.
PROMPT_CACHE_SIZE = 32
REFERENCE_CACHE_SIZE = 64
# Denoising steps of each warm-up generation: the first call compiles, the
# second shows that the compiled graph is reused.
WARMUP_STEPS = 2

_Key = TypeVar("_Key")
_Value = TypeVar("_Value")


def check_options(backend: str, options: Mapping[str, Any], allowed: frozenset[str]) -> None:
    """Raise ValueError if `options` contains a key that `backend` does not read."""
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise ValueError(
            f"options: {', '.join(map(repr, unknown))} not supported by the {backend!r} backend; "
            f"supported options are: {', '.join(sorted(allowed)) or 'none'}"
        )


def resolve_device(requested: str | None) -> torch.device:
    """Return the torch device for `requested`; None picks CUDA when present, else the CPU.

    Raises BackendLoadError when the device is invalid or CUDA is requested
    but not available on this node.
    """
    if requested is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(requested)
    except (RuntimeError, TypeError) as exc:
        raise BackendLoadError(
            f"options.device: invalid device {requested!r} ({exc}); use 'cpu', 'cuda' or 'cuda:N'"
        ) from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise BackendLoadError(
            f"options.device: {requested!r} requested but CUDA is not available on node "
            f"{socket.gethostname()!r}; use 'cpu' or run the worker on a GPU node"
        )
    return device


def fit_to_area(image: Image.Image, width: int, height: int, multiple: int) -> Image.Image:
    """Resize `image` to about the area of width x height, keeping its aspect ratio.

    Both sides are rounded down to `multiple` pixels, and are at least `multiple`.

    The pipeline otherwise uses the conditioning image at its own size. A
    large image costs time in every step, and a side under `multiple`
    pixels breaks the pipeline.
    """
    if image.size == (width, height):
        return image
    scale = math.sqrt((width * height) / (image.width * image.height))
    target_width = max(multiple, int(image.width * scale) // multiple * multiple)
    target_height = max(multiple, int(image.height * scale) // multiple * multiple)
    if image.size == (target_width, target_height):
        return image
    return image.resize((target_width, target_height), Image.Resampling.LANCZOS)


class _LruCache(Generic[_Key, _Value]):
    """A bounded mapping that drops the least recently used entry, counting hits and misses."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.hits = 0
        self.misses = 0
        self._entries: OrderedDict[_Key, _Value] = OrderedDict()

    def get(self, key: _Key) -> _Value | None:
        value = self._entries.get(key)
        if value is None:
            self.misses += 1
            return None
        self.hits += 1
        self._entries.move_to_end(key)
        return value

    def put(self, key: _Key, value: _Value) -> None:
        self._entries[key] = value
        self._entries.move_to_end(key)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)

    def clear(self) -> None:
        self._entries.clear()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)


class KontextPipelineBackend:
    """A loaded FluxKontextPipeline on one device, serving one frame at a time."""

    def __init__(
        self,
        name: str,
        model: str,
        pipeline: FluxKontextPipeline,
        device: torch.device,
        max_sequence_length: int,
        options: FastPathOptions | None = None,
    ) -> None:
        self.name = name
        self.model = model
        self.pipeline = pipeline
        self.device = str(device)
        self._torch_device = device
        self.max_sequence_length = max_sequence_length
        self.options = options or FastPathOptions()
        # The pipeline's latent grid: 8x VAE downsampling, then 2x2 patch packing.
        self.size_multiple = pipeline.vae_scale_factor * 2
        self._node = socket.gethostname()
        self._frames = 0
        # Dynamo counts graphs per process; the difference is this backend's.
        self._graphs_at_start = compiled_graph_count() if self.options.compile != "off" else 0
        # (prompt, max sequence length) -> (T5 embeddings, pooled CLIP embedding).
        self._prompt_cache: _LruCache[tuple[str, int], tuple[torch.Tensor, torch.Tensor]] = (
            _LruCache(PROMPT_CACHE_SIZE)
        )
        # (SHA-256 of the conditioning PNG, width, height) -> VAE latents.
        self._reference_cache: _LruCache[tuple[str, int, int], torch.Tensor] = _LruCache(
            REFERENCE_CACHE_SIZE
        )
        pipeline.set_progress_bar_config(disable=True)

    def _check_request(self, request: GenerationRequest) -> int:
        """Validate the request's sizes, steps and options; return the max sequence length."""
        for field in ("width", "height"):
            value = getattr(request, field)
            if value <= 0 or value % self.size_multiple:
                raise ValueError(
                    f"request.{field}: {value} is not a positive multiple of {self.size_multiple}; "
                    f"round it to a multiple of {self.size_multiple}"
                )
        if request.steps < 1:
            raise ValueError(f"request.steps: must be at least 1, got {request.steps}")

        check_options(self.name, request.options, REQUEST_OPTIONS)
        length = request.options.get("max_sequence_length", self.max_sequence_length)
        valid_type = isinstance(length, int) and not isinstance(length, bool)
        if not valid_type or not 1 <= length <= MAX_SEQUENCE_LENGTH_LIMIT:
            raise ValueError(
                f"request.options.max_sequence_length: must be an integer from 1 to "
                f"{MAX_SEQUENCE_LENGTH_LIMIT}, got {length!r}"
            )
        return length

    # Inputs, cached or not

    def _conditioning_image(self, request: GenerationRequest) -> Image.Image:
        assert request.conditioning_png is not None
        image = decode_rgb(request.conditioning_png, "request.conditioning_png")
        return fit_to_area(image, request.width, request.height, self.size_multiple)

    def _embed_prompt(
        self, prompt: str, max_sequence_length: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        key = (prompt, max_sequence_length)
        cached = self._prompt_cache.get(key)
        if cached is not None:
            return cached
        prompt_embeds, pooled_prompt_embeds, _ = self.pipeline.encode_prompt(
            prompt=prompt,
            prompt_2=None,
            device=self.pipeline._execution_device,
            num_images_per_prompt=1,
            max_sequence_length=max_sequence_length,
        )
        self._prompt_cache.put(key, (prompt_embeds, pooled_prompt_embeds))
        return prompt_embeds, pooled_prompt_embeds

    def _reference_latents(self, request: GenerationRequest) -> torch.Tensor:
        assert request.conditioning_png is not None
        digest = hashlib.sha256(request.conditioning_png).hexdigest()
        key = (digest, request.width, request.height)
        cached = self._reference_cache.get(key)
        if cached is not None:
            return cached

        # The same preprocessing as FluxKontextPipeline.__call__ with
        # _auto_resize=False, so the latents equal those it would encode.
        pipeline = self.pipeline
        image = self._conditioning_image(request)
        processor = pipeline.image_processor
        image_height, image_width = processor.get_default_height_width(image)
        image_width = image_width // self.size_multiple * self.size_multiple
        image_height = image_height // self.size_multiple * self.size_multiple
        image = processor.resize(image, image_height, image_width)
        pixels = processor.preprocess(image, image_height, image_width)
        # The pipeline casts the image to the dtype of the prompt embeddings,
        # which is the CLIP encoder's dtype.
        encoder = (
            pipeline.text_encoder if pipeline.text_encoder is not None else pipeline.transformer
        )
        pixels = pixels.to(device=pipeline._execution_device, dtype=encoder.dtype)
        # The VAE returns the mode of its latent distribution here
        # (sample_mode="argmax"), so no generator is needed.
        latents = pipeline._encode_vae_image(image=pixels, generator=None)
        self._reference_cache.put(key, latents)
        return latents

    # Generation

    def _run_pipeline(self, request: GenerationRequest, output_type: str) -> Any:
        """Run the pipeline for one request; return its first output (an image or latents)."""
        # 1. Check the request and set the per-size VAE mode before any encoding.
        max_sequence_length = self._check_request(request)
        options = self.options
        set_vae_tiling(self.pipeline, request.width, request.height, options.vae_tiling_min_side)

        # 2. Encode the prompt and the conditioning image, or take them from the caches.
        inputs: dict[str, Any] = {}
        if options.cache_prompt_embeds:
            prompt_embeds, pooled = self._embed_prompt(request.prompt, max_sequence_length)
            inputs.update(prompt_embeds=prompt_embeds, pooled_prompt_embeds=pooled)
        else:
            inputs["prompt"] = request.prompt
        if request.conditioning_png is not None:
            if options.cache_reference_latents:
                inputs["image"] = self._reference_latents(request)
            else:
                inputs["image"] = self._conditioning_image(request)

        # 3. Denoise. The pipeline scales the output to max_area (one megapixel
        # by default), so max_area is the requested area. _auto_resize=False
        # stops it from resizing the conditioning image to about one megapixel.
        generator = torch.Generator(self._torch_device).manual_seed(request.seed)
        with denoiser_context(self.pipeline, options):
            output = self.pipeline(
                height=request.height,
                width=request.width,
                max_area=request.height * request.width,
                _auto_resize=False,
                num_inference_steps=request.steps,
                guidance_scale=request.guidance,
                generator=generator,
                max_sequence_length=max_sequence_length,
                output_type=output_type,
                **inputs,
            )
        self._frames += 1
        return output.images[0]

    def generate(self, request: GenerationRequest) -> GenerationResult:
        """Run one frame and return its PNG of exactly request.width x request.height."""
        started = time.perf_counter()
        image = self._run_pipeline(request, "pil").convert("RGB")
        seconds = time.perf_counter() - started

        if image.size != (request.width, request.height):
            raise GenerationError(
                f"frame {request.frame_key} attempt {request.attempt}: the pipeline returned "
                f"{image.width}x{image.height} instead of {request.width}x{request.height}"
            )
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")

        return GenerationResult(
            frame_key=request.frame_key,
            attempt=request.attempt,
            png=buffer.getvalue(),
            width=image.width,
            height=image.height,
            seconds=seconds,
            node=self._node,
            device=self.device,
            backend=request.backend,
            model=request.model,
        )

    def generate_latents(self, request: GenerationRequest) -> torch.Tensor:
        """Run one frame up to the packed latents, without VAE decoding; for benchmarks."""
        latents: torch.Tensor = self._run_pipeline(request, "latent")
        return latents

    def warm_up(self) -> None:
        """Generate one frame at each warm-up size, so compilation happens at start-up.

        Does nothing unless the transformer is compiled. The frames carry a
        grey conditioning canvas of the frame's size, as the runner's
        composed canvases have, so the compiled graphs match real frames.
        """
        if self.options.compile == "off" or not self.options.warmup_sizes:
            return
        for width, height in self.options.warmup_sizes:
            started = time.perf_counter()
            canvas = io.BytesIO()
            Image.new("RGB", (width, height), (128, 128, 128)).save(canvas, format="PNG")
            request = GenerationRequest(
                frame_key="warm-up",
                attempt=1,
                prompt="warm-up",
                backend=Backend(self.name),
                model=self.model,
                width=width,
                height=height,
                steps=WARMUP_STEPS,
                guidance=2.5,
                seed=0,
                conditioning_png=canvas.getvalue(),
            )
            self.generate(request)
            logger.info(
                "warmed up %s at %dx%d in %.1f s",
                self.name,
                width,
                height,
                time.perf_counter() - started,
            )
        self.reset_stats()

    def reset_stats(self) -> None:
        """Empty the caches and zero the counters."""
        self._prompt_cache.clear()
        self._reference_cache.clear()
        self._frames = 0

    def stats(self) -> dict[str, int | None]:
        """Return frame and cache counters since the last reset, and the compiled graph count.

        compiled_graphs counts the graphs dynamo compiled in this process
        since the backend was created, warm-up included; it is None when
        compilation is off.
        """
        return {
            "frames": self._frames,
            "prompt_cache_hits": self._prompt_cache.hits,
            "prompt_cache_misses": self._prompt_cache.misses,
            "prompt_cache_entries": len(self._prompt_cache),
            "reference_cache_hits": self._reference_cache.hits,
            "reference_cache_misses": self._reference_cache.misses,
            "reference_cache_entries": len(self._reference_cache),
            "compiled_graphs": (
                compiled_graph_count() - self._graphs_at_start
                if self.options.compile != "off"
                else None
            ),
        }


def build_pipeline_backend(
    name: str,
    model: str,
    pipeline: FluxKontextPipeline,
    device: torch.device,
    max_sequence_length: int,
    options: FastPathOptions,
) -> KontextPipelineBackend:
    """Place and speed up a loaded pipeline, wrap it in a backend and warm it up."""
    prepare_pipeline(pipeline, device, options)
    backend = KontextPipelineBackend(
        name=name,
        model=model,
        pipeline=pipeline,
        device=device,
        max_sequence_length=max_sequence_length,
        options=options,
    )
    backend.warm_up()
    return backend


def parse_backend_options(backend: str, options: Mapping[str, Any]) -> FastPathOptions:
    """Reject unknown worker options and return the validated speed options."""
    check_options(backend, options, PIPELINE_OPTIONS)
    return parse_fast_path_options(options)
