"""The `tiny` backend: a Kontext pipeline with tiny random weights, built in memory.

It proves the whole path (Ray, storage, scoring, regeneration) without
downloading weights. Its frames are noise and contain no faces.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from actors.backends.pipeline import (
    KontextPipelineBackend,
    build_pipeline_backend,
    parse_backend_options,
    resolve_device,
)
from actors.tiny import build_tiny_kontext_pipeline

# Prompt length in T5 tokens. The real model reads 512. Random weights gain
# nothing from long prompts, and 64 halves the time of a small CPU frame.
TINY_MAX_SEQUENCE_LENGTH = 64
# The tiny weights are a fixed function of this seed, so every tiny worker
# produces the same image for the same request.
TINY_WEIGHTS_SEED = 0


def load_tiny_backend(model: str, options: Mapping[str, Any]) -> KontextPipelineBackend:
    """Build the tiny pipeline on the requested device.

    `model` is only a label: it is reported in results, and every model name
    gets the same tiny weights. The speed options apply as for real weights,
    so they can be tested on the CPU.
    """
    fast_path = parse_backend_options("tiny", options)
    device = resolve_device(options.get("device"))

    # The tiny model stays float32 on every device: it is small, and bfloat16
    # would only add rounding differences between CPU and GPU runs.
    pipeline = build_tiny_kontext_pipeline(TINY_WEIGHTS_SEED)
    return build_pipeline_backend(
        name="tiny",
        model=model,
        pipeline=pipeline,
        device=device,
        max_sequence_length=TINY_MAX_SEQUENCE_LENGTH,
        options=fast_path,
    )
