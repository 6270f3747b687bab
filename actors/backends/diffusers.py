"""The `diffusers` backend: FLUX.1 Kontext weights from a hub id or a local folder.

Weights load in bfloat16 on CUDA, as in the FluxKontextPipeline example of
diffusers, and in float32 on the CPU.
Every loading failure becomes one BackendLoadError whose message names the
model and what to do.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from diffusers import FluxKontextPipeline
from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

from actors.backends.pipeline import (
    KontextPipelineBackend,
    build_pipeline_backend,
    parse_backend_options,
    resolve_device,
)
from schemas.errors import BackendLoadError

logger = logging.getLogger(__name__)

# Prompt length in T5 tokens: the pipeline's default and its maximum.
MAX_SEQUENCE_LENGTH = 512

_TRUE_VALUES = {"1", "true", "yes", "on"}


def _hub_offline() -> bool:
    # huggingface_hub (2.4) reads HF_HUB_OFFLINE once, at import. Reading it
    # again here honours a value set later, so an offline process does not
    # try the network for a hub id.
    value = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return value.strip().lower() in _TRUE_VALUES


def _looks_like_path(model: str) -> bool:
    # A hub id is exactly "namespace/name", so anything else is a folder path.
    return (
        model.startswith(("/", ".", "~"))
        or model.count("/") != 1
        or "\\" in model
        or Path(model).exists()
    )


def _check_local_folder(model: str) -> Path | None:
    """Return the folder that a path-like `model` names, or None for a hub id.

    Raises BackendLoadError when the folder is missing or has no pipeline in it.
    """
    if not _looks_like_path(model):
        return None
    folder = Path(model).expanduser()
    if not folder.is_dir():
        raise BackendLoadError(
            f"model {model!r}: local folder not found; check the path, or give a hub id "
            "such as 'black-forest-labs/FLUX.1-Kontext-dev'"
        )
    if not (folder / "model_index.json").is_file():
        raise BackendLoadError(
            f"model {model!r}: the folder has no model_index.json; give a folder written by "
            "save_pretrained or downloaded with `hf download`"
        )
    return folder


def _explain_failure(model: str, exc: BaseException, offline: bool) -> str:
    """Turn an exception from from_pretrained into one line naming the model and the fix."""
    if isinstance(exc, GatedRepoError):
        return (
            f"model {model!r}: the repository is gated; accept its license on huggingface.co, "
            "log in with `hf auth login`, or give a local folder"
        )
    if isinstance(exc, RepositoryNotFoundError):
        return (
            f"model {model!r}: not found on the Hugging Face Hub; check the id, log in with "
            "`hf auth login` if it is private, or give a local folder"
        )
    if isinstance(exc, torch.OutOfMemoryError):
        return f"model {model!r}: out of memory while loading; free the device or use a larger one"
    if isinstance(exc, OSError):
        where = "offline mode is on (HF_HUB_OFFLINE)" if offline else "the Hub could not be reached"
        return (
            f"model {model!r}: not found as a local folder and not in the Hugging Face cache, "
            f"and {where}; download it with `hf download {model}` or give a local folder"
        )
    first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return (
        f"model {model!r}: loading FluxKontextPipeline failed: {type(exc).__name__}: {first_line}"
    )


def load_diffusers_backend(model: str, options: Mapping[str, Any]) -> KontextPipelineBackend:
    """Load FluxKontextPipeline weights from `model` onto the requested device.

    The speed options (compile, fp8, first_block_cache, vae_tiling_min_side,
    cpu_offload and the two caches) are applied after loading; see
    `actors.backends.options.FastPathOptions`.
    """
    fast_path = parse_backend_options("diffusers", options)
    device = resolve_device(options.get("device"))
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    folder = _check_local_folder(model)
    offline = _hub_offline()

    source = f"local folder {str(folder)!r}" if folder else "the Hugging Face cache or Hub"
    logger.info("loading model %r from %s as %s on %s", model, source, dtype, device)
    try:
        pipeline = FluxKontextPipeline.from_pretrained(
            str(folder) if folder else model,
            dtype=dtype,
            local_files_only=offline,
        )
    # Every loading failure becomes one message that names the model, with
    # the original error chained as its cause.
    except Exception as exc:
        raise BackendLoadError(_explain_failure(model, exc, offline)) from exc

    try:
        return build_pipeline_backend(
            name="diffusers",
            model=model,
            pipeline=pipeline,
            device=device,
            max_sequence_length=MAX_SEQUENCE_LENGTH,
            options=fast_path,
        )
    except torch.OutOfMemoryError as exc:
        raise BackendLoadError(_explain_failure(model, exc, offline)) from exc
