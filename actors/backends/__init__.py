"""Generator backends: one loaded model that turns a GenerationRequest into a PNG.

`BACKENDS` maps a backend name to the factory that loads it. A factory takes
the model (hub id, local folder, or a label for backends that ignore it) and
the worker's options, and returns a `GeneratorBackend` or raises
BackendLoadError.

To add a backend, write a module with a factory and add an entry here that
imports the module when called, as the entries below do. Importing this
package must not import torch, because backends without a local model (a
hosted API) also run on machines without torch.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

from schemas.errors import BackendLoadError
from schemas.records import GenerationRequest, GenerationResult


class GeneratorBackend(Protocol):
    """A loaded model that serves one generation at a time."""

    name: str
    model: str
    # The torch device the model runs on ("cpu", "cuda:0"), or a label such
    # as "remote" for hosted backends.
    device: str

    def generate(self, request: GenerationRequest) -> GenerationResult:
        """Produce one PNG of exactly request.width x request.height."""
        ...


BackendFactory = Callable[[str, Mapping[str, Any]], GeneratorBackend]


def _load_tiny(model: str, options: Mapping[str, Any]) -> GeneratorBackend:
    from actors.backends.tiny import load_tiny_backend

    return load_tiny_backend(model, options)


def _load_diffusers(model: str, options: Mapping[str, Any]) -> GeneratorBackend:
    from actors.backends.diffusers import load_diffusers_backend

    return load_diffusers_backend(model, options)


def _load_bfl(model: str, options: Mapping[str, Any]) -> GeneratorBackend:
    from actors.backends.bfl import load_bfl_backend

    return load_bfl_backend(model, options)


BACKENDS: dict[str, BackendFactory] = {
    "tiny": _load_tiny,
    "diffusers": _load_diffusers,
    "bfl": _load_bfl,
}


def load_backend(
    name: str, model: str, options: Mapping[str, Any] | None = None
) -> GeneratorBackend:
    """Load the backend `name` for `model`; raise BackendLoadError if either is unusable."""
    factory = BACKENDS.get(str(name))
    if factory is None:
        available = ", ".join(sorted(BACKENDS))
        raise BackendLoadError(
            f"backend {str(name)!r}: unknown backend; available backends are: {available}"
        )
    return factory(model, options or {})


__all__ = ["BACKENDS", "BackendFactory", "GeneratorBackend", "load_backend"]
