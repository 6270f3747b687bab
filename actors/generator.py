"""Generator workers: one loaded model per worker, one frame at a time.

The runner wraps `GeneratorWorker` with `ray.remote(...)` and its own
resource options. Importing this module does not import torch. The backend
imports torch when the worker loads its model, so a driver that only
schedules workers stays light.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from typing import Any

from actors.backends import GeneratorBackend, load_backend
from actors.backends.options import FAST_PATH_DEFAULTS, PIPELINE_BACKENDS
from schemas.errors import BackendLoadError
from schemas.records import GenerationRequest, GenerationResult

logger = logging.getLogger(__name__)


def _set_torch_threads(value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"options.torch_threads: must be an integer >= 1, got {value!r}")
    import torch

    torch.set_num_threads(value)


class GeneratorWorker:
    """Holds one generator backend with its model loaded, and serves frames from it."""

    def __init__(self, backend: str, model: str, options: dict[str, Any] | None = None) -> None:
        """Load the backend's model once.

        options: `torch_threads` (int >= 1, CPU threads of torch in this
        process), `device` ("cpu", "cuda", "cuda:N", or None for CUDA when
        present, else the CPU), and the speed options of the pipeline
        backends (`compile`, `compile_backend`, `warmup_sizes`, `fp8`,
        `first_block_cache`, `vae_tiling_min_side`, `cpu_offload`,
        `cache_reference_latents`, `cache_prompt_embeds`; see
        `actors.backends.options.FastPathOptions`). Backends without a local
        pipeline get no speed options. Raises BackendLoadError with one
        message naming the model when the backend, device or model cannot
        load, and ValueError for an unknown or invalid option.
        """
        # Hosted backends never import diffusers, so they skip its 4 s import.
        if backend in PIPELINE_BACKENDS:
            _quiet_library_logs()
        backend_options = dict(options or {})
        torch_threads = backend_options.pop("torch_threads", None)
        if torch_threads is not None:
            _set_torch_threads(torch_threads)
        if backend not in PIPELINE_BACKENDS:
            _drop_speed_options(backend, backend_options)

        started = time.perf_counter()
        try:
            self._backend: GeneratorBackend = load_backend(backend, model, backend_options)
        except BackendLoadError as exc:
            cause = exc.__cause__
            detail = f" (cause: {type(cause).__name__}: {cause})" if cause else ""
            logger.error(
                "loading backend %s model %r failed after %.2f s: %s%s",
                backend,
                model,
                time.perf_counter() - started,
                exc,
                detail,
            )
            raise
        logger.info(
            "loaded backend %s model %r on %s in %.2f s (pid %d)",
            self._backend.name,
            model,
            self._backend.device,
            time.perf_counter() - started,
            os.getpid(),
        )

    def generate(self, request: GenerationRequest) -> GenerationResult:
        """Produce one PNG of exactly request.width x request.height.

        Raises ValueError when the request names another backend or model
        than this worker loaded, or has invalid sizes or options.
        """
        if str(request.backend) != self._backend.name or request.model != self._backend.model:
            raise ValueError(
                f"frame {request.frame_key} attempt {request.attempt}: request.backend/model "
                f"{str(request.backend)!r}/{request.model!r} does not match this worker's "
                f"{self._backend.name!r}/{self._backend.model!r}; "
                "send it to a worker for that model"
            )

        logger.debug(
            "frame %s attempt %d: generating %dx%d, %d steps, seed %d",
            request.frame_key,
            request.attempt,
            request.width,
            request.height,
            request.steps,
            request.seed,
        )
        result = self._backend.generate(request)
        logger.debug(
            "frame %s attempt %d: generated in %.2f s on %s",
            request.frame_key,
            request.attempt,
            result.seconds,
            result.device,
        )
        return result

    def stats(self) -> dict[str, Any]:
        """Return the backend's counters (frames, cache hits and misses, compiled graphs).

        Empty for backends that keep no counters.
        """
        stats = getattr(self._backend, "stats", None)
        return dict(stats()) if callable(stats) else {}

    def info(self) -> dict[str, Any]:
        """Return pid, node (hostname), device, backend and model, for logs and crash tests."""
        return {
            "pid": os.getpid(),
            "node": socket.gethostname(),
            "device": self._backend.device,
            "backend": self._backend.name,
            "model": self._backend.model,
        }


def _drop_speed_options(backend: str, options: dict[str, Any]) -> None:
    """Remove the pipeline speed options, which the runner sends to every backend.

    A value other than the default is logged at debug level, so a setting
    that does nothing for this backend can be traced.
    """
    for name, default in FAST_PATH_DEFAULTS.items():
        if name not in options:
            continue
        value = options.pop(name)
        if value != default:
            logger.debug(
                "backend %s has no local pipeline; ignoring options.%s=%r", backend, name, value
            )


def _quiet_library_logs() -> None:
    """Keep diffusers and transformers to errors: their per-frame truncation
    warnings would flood the driver's terminal through Ray's log forwarding."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    diffusers_logging.set_verbosity_error()
    transformers_logging.set_verbosity_error()
