"""Worker options of the pipeline backends (`tiny`, `diffusers`), checked without torch.

`GeneratorWorker` imports this module to tell pipeline options from the
options of other backends, and must not import torch, so nothing here does.
The options that change speed are described in docs/benchmarks.md with the
figures behind their defaults.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# Scopes of `torch.compile` for the transformer: the whole model, or each
# repeated block class once ("regional"), which compiles in a fraction of
# the time because the 57 blocks of FLUX.1 share two block classes.
COMPILE_SCOPES = ("off", "full", "regional")
# "weight": float8 weights, bf16 compute; halves transformer memory.
# "dynamic": float8 weights and activations, so matmuls run in float8.
FP8_MODES = ("off", "weight", "dynamic")

# The speed options and their defaults. Every key is a worker option.
FAST_PATH_DEFAULTS: dict[str, Any] = {
    "compile": "off",
    "compile_backend": "inductor",
    "warmup_sizes": (),
    "fp8": "off",
    "first_block_cache": None,
    "vae_tiling_min_side": None,
    "cpu_offload": False,
    "cache_reference_latents": True,
    "cache_prompt_embeds": True,
}
FAST_PATH_OPTIONS = frozenset(FAST_PATH_DEFAULTS)
# Every worker option that the pipeline backends read.
PIPELINE_OPTIONS = FAST_PATH_OPTIONS | {"device"}
# Backends built on a local diffusers pipeline; other backends ignore the speed options.
PIPELINE_BACKENDS = frozenset({"tiny", "diffusers"})

_SIZE_PATTERN = re.compile(r"^\s*(\d+)\s*[xX]\s*(\d+)\s*$")


@dataclass(frozen=True)
class FastPathOptions:
    """Speed settings of a pipeline backend, validated.

    compile: "off", "full" or "regional" (see COMPILE_SCOPES); True means "full".
    compile_backend: the `torch.compile` backend; "inductor" generates kernels,
        "eager" and "aot_eager" only trace, for tests on the CPU.
    warmup_sizes: (width, height) pairs generated once when the worker starts,
        so their compilation happens at start-up instead of in a frame.
    fp8: "off", "weight" or "dynamic" (see FP8_MODES); needs torchao and a CUDA
        device of compute capability 8.9 or higher.
    first_block_cache: the First Block Cache threshold, or None for off.
        Steps whose first-block residual changed by less than this fraction
        reuse the previous step's output of the other blocks.
    vae_tiling_min_side: frames whose longer side is at least this many
        pixels are encoded and decoded by the VAE in tiles; None for never.
    cpu_offload: keep each model on the CPU until it runs (CUDA only).
    cache_reference_latents: encode each conditioning image once per frame size.
    cache_prompt_embeds: encode each prompt once per max sequence length.
    """

    compile: str = "off"
    compile_backend: str = "inductor"
    warmup_sizes: tuple[tuple[int, int], ...] = ()
    fp8: str = "off"
    first_block_cache: float | None = None
    vae_tiling_min_side: int | None = None
    cpu_offload: bool = False
    cache_reference_latents: bool = True
    cache_prompt_embeds: bool = True


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_bool(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"options.{name}: must be true or false, got {value!r}")
    return value


def _check_choice(name: str, value: object, choices: Sequence[str]) -> str:
    # True and False stand for the first non-off choice and "off", so a
    # boolean switch in a config file also works.
    if value is True:
        return choices[1]
    if value is False or value is None:
        return "off"
    if not isinstance(value, str) or value.strip().lower() not in choices:
        raise ValueError(f"options.{name}: must be one of {', '.join(choices)}; got {value!r}")
    return value.strip().lower()


def _check_threshold(value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1:
        raise ValueError(
            f"options.first_block_cache: must be a threshold between 0 and 1 (exclusive) "
            f"or null to turn it off, got {value!r}"
        )
    return float(value)


def _check_min_side(value: object) -> int | None:
    if value is None:
        return None
    if not _is_int(value) or value < 16:  # type: ignore[operator]
        raise ValueError(
            f"options.vae_tiling_min_side: must be an integer >= 16 (pixels) or null to "
            f"turn tiling off, got {value!r}"
        )
    return int(value)  # type: ignore[call-overload]


def parse_sizes(value: object) -> tuple[tuple[int, int], ...]:
    """Parse frame sizes from "WxH,WxH" text or a list of [width, height] pairs.

    Raises ValueError naming options.warmup_sizes when a size is malformed or
    a side is not a positive multiple of 16.
    """
    if value is None or value == "":
        return ()
    items: list[object]
    if isinstance(value, str):
        items = [part for part in value.split(",") if part.strip()]
    elif isinstance(value, Sequence):
        items = list(value)
    else:
        raise ValueError(
            f"options.warmup_sizes: must be text such as '1024x1024,768x1344' or a list of "
            f"[width, height] pairs, got {value!r}"
        )

    sizes: list[tuple[int, int]] = []
    for item in items:
        pair: tuple[object, ...]
        if isinstance(item, str):
            match = _SIZE_PATTERN.match(item)
            if match is None:
                raise ValueError(
                    f"options.warmup_sizes: {item!r} is not a size; write WIDTHxHEIGHT, "
                    "for example 1024x1024"
                )
            pair = (int(match.group(1)), int(match.group(2)))
        elif isinstance(item, Sequence) and len(item) == 2:
            pair = tuple(item)
        else:
            raise ValueError(f"options.warmup_sizes: {item!r} is not a size; give [width, height]")
        if not all(_is_int(side) and side > 0 and side % 16 == 0 for side in pair):  # type: ignore[operator]
            raise ValueError(
                f"options.warmup_sizes: {item!r} has a side that is not a positive multiple of 16"
            )
        sizes.append((int(pair[0]), int(pair[1])))  # type: ignore[call-overload]
    return tuple(sizes)


def parse_fast_path_options(options: Mapping[str, Any]) -> FastPathOptions:
    """Validate the speed options in a worker's options; missing keys take their defaults.

    Keys that are not speed options (such as `device`) are ignored here.
    Raises ValueError naming the option, the value and the accepted values.
    """
    values = {**FAST_PATH_DEFAULTS, **{k: v for k, v in options.items() if k in FAST_PATH_OPTIONS}}
    compile_backend = values["compile_backend"]
    if not isinstance(compile_backend, str) or not compile_backend:
        raise ValueError(
            f"options.compile_backend: must be a torch.compile backend name such as "
            f"'inductor', got {compile_backend!r}"
        )
    return FastPathOptions(
        compile=_check_choice("compile", values["compile"], COMPILE_SCOPES),
        compile_backend=compile_backend,
        warmup_sizes=parse_sizes(values["warmup_sizes"]),
        fp8=_check_choice("fp8", values["fp8"], FP8_MODES),
        first_block_cache=_check_threshold(values["first_block_cache"]),
        vae_tiling_min_side=_check_min_side(values["vae_tiling_min_side"]),
        cpu_offload=_check_bool("cpu_offload", values["cpu_offload"]),
        cache_reference_latents=_check_bool(
            "cache_reference_latents", values["cache_reference_latents"]
        ),
        cache_prompt_embeds=_check_bool("cache_prompt_embeds", values["cache_prompt_embeds"]),
    )
