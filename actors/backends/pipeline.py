"""Generation through a loaded diffusers FLUX.1 Kontext pipeline.

The `tiny` and `diffusers` backends differ only in how they load the
pipeline; both run frames through `KontextPipelineBackend`.
"""

from __future__ import annotations

import io
import math
import socket
import time
from collections.abc import Mapping
from typing import Any

import torch
from diffusers import FluxKontextPipeline
from PIL import Image

from actors.compose import decode_rgb
from schemas.errors import BackendLoadError, GenerationError
from schemas.records import GenerationRequest, GenerationResult

# Options that the pipeline backends read from the worker's options.
PIPELINE_OPTIONS = frozenset({"device"})
# Request options that a single generation may override.
REQUEST_OPTIONS = frozenset({"max_sequence_length"})
# FluxKontextPipeline rejects more T5 tokens than this (diffusers 0.42).
MAX_SEQUENCE_LENGTH_LIMIT = 512


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


class KontextPipelineBackend:
    """A loaded FluxKontextPipeline on one device, serving one frame at a time."""

    def __init__(
        self,
        name: str,
        model: str,
        pipeline: FluxKontextPipeline,
        device: torch.device,
        max_sequence_length: int,
    ) -> None:
        self.name = name
        self.model = model
        self.pipeline = pipeline
        self.device = str(device)
        self._torch_device = device
        self.max_sequence_length = max_sequence_length
        # The pipeline's latent grid: 8x VAE downsampling, then 2x2 patch packing.
        self.size_multiple = pipeline.vae_scale_factor * 2
        self._node = socket.gethostname()
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

    def generate(self, request: GenerationRequest) -> GenerationResult:
        """Run one frame and return its PNG of exactly request.width x request.height."""
        # 1. Check the request and decode the conditioning image.
        max_sequence_length = self._check_request(request)
        conditioning = None
        if request.conditioning_png is not None:
            conditioning = decode_rgb(request.conditioning_png, "request.conditioning_png")
            conditioning = fit_to_area(
                conditioning, request.width, request.height, self.size_multiple
            )

        # 2. Denoise. The pipeline scales the output to max_area (one megapixel
        # by default), so max_area is the requested area. _auto_resize=False
        # stops it from resizing the conditioning image to about one megapixel.
        started = time.perf_counter()
        generator = torch.Generator(self._torch_device).manual_seed(request.seed)
        output = self.pipeline(
            image=conditioning,
            prompt=request.prompt,
            height=request.height,
            width=request.width,
            max_area=request.height * request.width,
            _auto_resize=False,
            num_inference_steps=request.steps,
            guidance_scale=request.guidance,
            generator=generator,
            max_sequence_length=max_sequence_length,
            output_type="pil",
        )
        image = output.images[0].convert("RGB")
        seconds = time.perf_counter() - started

        # 3. Encode the frame.
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
