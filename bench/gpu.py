"""Time FLUX.1 Kontext frames on one GPU for each speed setting, with random weights.

Usage:
    python bench/gpu.py [--modes plain,cached,...] [--images N] [--steps N] [--decode]
    python bench/gpu.py --tiny      # the same code at 64x64 on the CPU, in seconds

The transformer is the full FLUX.1 Kontext [dev] architecture (19 double
and 38 single blocks, 24 heads of 128, 11.9B parameters) built from its
published config with random bf16 weights directly on the GPU, so nothing is
downloaded. The VAE has the FLUX.1 config, also random. The text encoders
are one-layer models with the real output widths (T5: 512 tokens x 4096,
CLIP pooled: 768). So the transformer receives inputs of the real shapes,
while prompt encoding costs almost nothing. The real T5-XXL encoder would
add its own time to every uncached prompt.

Each frame is 1024x1024 with a 1024x1024 reference for 28 steps, generated
through the product's `KontextPipelineBackend`, so the reference latent
tokens are concatenated to the frame's tokens as FluxKontextPipeline does.
Every mode is the plain path plus one setting. A mode that cannot run here
prints "skipped:" and the reason. A time budget (--budget-s) skips the
modes that would not finish in it, so a run fits its slot on a GPU machine.

Printed per mode: the first call (warm-up, which includes compilation),
seconds per image (median of --images), the fraction of the GPU's dense
bf16 peak that the transformer FLOPs of one image reach in that time, and
the peak GPU memory.
"""

from __future__ import annotations

import argparse
import gc
import io
import json
import logging
import resource
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from diffusers import AutoencoderKL, FluxKontextPipeline, FluxTransformer2DModel  # noqa: E402
from PIL import Image  # noqa: E402
from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel  # noqa: E402

from actors.backends.options import parse_fast_path_options  # noqa: E402
from actors.backends.pipeline import KontextPipelineBackend, build_pipeline_backend  # noqa: E402
from actors.tiny import build_tiny_kontext_pipeline  # noqa: E402
from schemas.errors import BackendLoadError  # noqa: E402
from schemas.records import GenerationRequest  # noqa: E402

# FLUX.1 Kontext [dev] transformer config, as published with its weights.
FULL_TRANSFORMER: dict[str, Any] = {
    "patch_size": 1,
    "in_channels": 64,
    "num_layers": 19,
    "num_single_layers": 38,
    "attention_head_dim": 128,
    "num_attention_heads": 24,
    "joint_attention_dim": 4096,
    "pooled_projection_dim": 768,
    "guidance_embeds": True,
    "axes_dims_rope": (16, 56, 56),
}
# FLUX.1 VAE config: 16 latent channels, 8x downsampling.
FULL_VAE: dict[str, Any] = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "up_block_types": ("UpDecoderBlock2D",) * 4,
    "block_out_channels": (128, 256, 512, 512),
    "layers_per_block": 2,
    "latent_channels": 16,
    "norm_num_groups": 32,
    "sample_size": 1024,
    "scaling_factor": 0.3611,
    "shift_factor": 0.1159,
    "use_quant_conv": False,
    "use_post_quant_conv": False,
}
# Widths of the real text encoders' outputs: T5-XXL hidden states, CLIP-L pooled.
T5_WIDTH = 4096
CLIP_WIDTH = 768
FULL_TEXT_TOKENS = 512

# Dense (no sparsity) bf16 tensor-core peaks in TFLOPS, matched against
# torch.cuda.get_device_name, first match wins. NVIDIA's H100 table gives
# 1,979 (SXM) and 1,513 (PCIe) TFLOPS with sparsity, half that without.
# The H200 has the H100 SXM's compute with more memory. A100: 312, as
# published by NVIDIA (not rechecked here).
PEAK_BF16_TFLOPS = (
    ("H100 PCIe", 756.0),
    ("H200", 989.0),
    ("H100", 989.0),
    ("A100", 312.0),
)

# Each mode is the plain path plus one setting; "plain" encodes the prompt
# and the reference in every frame, as diffusers does.
PLAIN = {"cache_reference_latents": False, "cache_prompt_embeds": False}
MODES: dict[str, dict[str, Any]] = {
    "plain": {},
    "cached": {"cache_reference_latents": True, "cache_prompt_embeds": True},
    "compiled": {"compile": "full"},
    "regional": {"compile": "regional"},
    "fp8": {"fp8": "weight"},
    "fp8-dynamic": {"fp8": "dynamic"},
    "fbc": {"first_block_cache": None},  # threshold from --fbc-threshold
}
# Order of execution: modes that change the transformer's weights or need
# compilation run late, so the budget cuts the most uncertain ones first.
DEFAULT_MODES = ("plain", "cached", "fbc", "fp8", "fp8-dynamic", "compiled", "regional")
# Seconds allowed for compiling in the budget estimate (an estimate for the
# full transformer with inductor on one H100-class GPU).
COMPILE_ALLOWANCE_S = 180.0
WARMUP_STEPS = 2

logger = logging.getLogger("bench.gpu")


@dataclass
class Scale:
    """Sizes of one benchmark run."""

    device: torch.device
    dtype: torch.dtype
    width: int
    height: int
    text_tokens: int


@dataclass
class ModeResult:
    mode: str
    status: str
    first_call_s: float | None = None
    seconds_per_image: float | None = None
    peak_fraction: float | None = None
    peak_memory_gib: float | None = None
    note: str = ""


# --- building the model --------------------------------------------------------


def build_transformer(config: dict[str, Any], scale: Scale, seed: int) -> FluxTransformer2DModel:
    """Create the transformer with random weights directly on the device, in its dtype."""
    torch.manual_seed(seed)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(scale.dtype)
    try:
        with torch.device(scale.device):
            transformer = FluxTransformer2DModel.from_config(config)
    finally:
        torch.set_default_dtype(previous)
    return transformer.eval().requires_grad_(False)


def build_full_pipeline(scale: Scale) -> FluxKontextPipeline:
    """Build a Kontext pipeline without a transformer: the full VAE and thin text encoders.

    The text encoders have one layer each and the real output widths.
    """
    tiny = build_tiny_kontext_pipeline(0)
    clip = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tiny.tokenizer),
            hidden_size=CLIP_WIDTH,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=2,
            max_position_embeddings=tiny.tokenizer.model_max_length,
            bos_token_id=tiny.tokenizer.bos_token_id,
            eos_token_id=tiny.tokenizer.eos_token_id,
            pad_token_id=tiny.tokenizer.pad_token_id,
        )
    )
    t5 = T5EncoderModel(
        T5Config(
            vocab_size=len(tiny.tokenizer_2),
            d_model=T5_WIDTH,
            d_kv=8,
            d_ff=64,
            num_layers=1,
            num_heads=2,
            pad_token_id=tiny.tokenizer_2.pad_token_id,
            eos_token_id=tiny.tokenizer_2.eos_token_id,
        )
    )
    vae = AutoencoderKL(**FULL_VAE)
    for module in (clip, t5, vae):
        module.eval().requires_grad_(False).to(device=scale.device, dtype=scale.dtype)
    return FluxKontextPipeline(
        scheduler=tiny.scheduler,
        vae=vae,
        text_encoder=clip,
        tokenizer=tiny.tokenizer,
        text_encoder_2=t5,
        tokenizer_2=tiny.tokenizer_2,
        # Each mode builds its own transformer.
        transformer=None,
    )


# --- FLOPs and peaks -----------------------------------------------------------


def tokens_per_step(config: dict[str, Any], scale: Scale, with_reference: bool) -> tuple[int, int]:
    """Return (image tokens incl. reference, text tokens) of one transformer call."""
    # 8x VAE downsampling, then 2x2 packing: one token per 16x16 pixels.
    frame = (scale.width // 16) * (scale.height // 16)
    image = frame * (2 if with_reference else 1)
    return image, scale.text_tokens


def transformer_flops(config: dict[str, Any], image_tokens: int, text_tokens: int) -> float:
    """Estimate the FLOPs of one transformer call from its config and token counts.

    Both block types hold 12 d^2 weights used once per token. A double block
    has qkv 3d^2, output 1d^2 and MLP 8d^2 per stream, a single block qkv
    3d^2, MLP input 4d^2 and output 5d^2. Joint attention costs 4 L^2 d for
    QK^T and PV, with L all tokens. Embedding and output layers add under 1 percent
    and are counted too. One multiply-add is two FLOPs.
    """
    width = config["num_attention_heads"] * config["attention_head_dim"]
    tokens = image_tokens + text_tokens
    blocks = config["num_layers"] + config["num_single_layers"]
    per_block = 2 * 12 * width * width * tokens + 4 * tokens * tokens * width
    embeddings = (
        2
        * width
        * (
            config["in_channels"] * image_tokens * 2  # x_embedder and proj_out
            + config["joint_attention_dim"] * text_tokens
        )
    )
    return float(blocks * per_block + embeddings)


def format_flops(flops: float) -> str:
    for unit, scale in (("PFLOP", 1e15), ("TFLOP", 1e12), ("GFLOP", 1e9), ("MFLOP", 1e6)):
        if flops >= scale:
            return f"{flops / scale:.2f} {unit}"
    return f"{flops:.0f} FLOP"


def peak_for_name(name: str) -> float | None:
    """Return the dense bf16 peak in TFLOPS of the GPU called `name`, None when unknown."""
    for marker, tflops in PEAK_BF16_TFLOPS:
        if marker in name:
            return tflops
    return None


def peak_tflops(device: torch.device) -> tuple[str, float | None]:
    """Return the device's name and dense bf16 peak in TFLOPS, None when unknown."""
    if device.type != "cuda":
        return "CPU", None
    name = torch.cuda.get_device_name(device)
    return name, peak_for_name(name)


# --- running modes ---------------------------------------------------------------


def reference_png(scale: Scale) -> bytes:
    values = np.random.default_rng(0).integers(0, 256, (scale.height, scale.width, 3), np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(values).save(buffer, format="PNG")
    return buffer.getvalue()


def make_request(scale: Scale, steps: int, seed: int, reference: bytes) -> GenerationRequest:
    return GenerationRequest(
        frame_key="bench",
        attempt=1,
        prompt="Ana pours latte art at the counter, close-up on her face",
        backend="diffusers",
        model="random-flux-kontext",
        width=scale.width,
        height=scale.height,
        steps=steps,
        guidance=2.5,
        seed=seed,
        conditioning_png=reference,
        options={"max_sequence_length": scale.text_tokens},
    )


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_memory_gib(device: torch.device) -> float:
    """Return the peak GPU memory since the last reset, or on the CPU the process's peak RSS."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def release(pipeline: FluxKontextPipeline, device: torch.device) -> None:
    """Drop the mode's transformer and compiled graphs before the next mode builds its own."""
    pipeline.transformer = None
    torch._dynamo.reset()
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def run_mode(
    name: str,
    pipeline: FluxKontextPipeline,
    config: dict[str, Any],
    scale: Scale,
    args: argparse.Namespace,
    flops_per_image: float,
    peak: float | None,
) -> ModeResult:
    """Build a fresh transformer, apply the mode's setting, warm up, then time --images frames."""
    options = {**PLAIN, **MODES[name], "compile_backend": args.compile_backend}
    if name == "fbc":
        options["first_block_cache"] = args.fbc_threshold
    fast_path = parse_fast_path_options(options)

    pipeline.transformer = build_transformer(config, scale, seed=0)
    try:
        backend = build_pipeline_backend(
            "diffusers", "random-flux-kontext", pipeline, scale.device, scale.text_tokens, fast_path
        )
    except BackendLoadError as exc:
        return ModeResult(name, f"skipped: {exc}")

    counter = _StepCounter(pipeline.transformer) if name == "fbc" else None
    reference = reference_png(scale)
    generate: Callable[[GenerationRequest], Any] = (
        backend.generate if args.decode else backend.generate_latents
    )

    started = time.perf_counter()
    generate(make_request(scale, WARMUP_STEPS, seed=0, reference=reference))
    synchronize(scale.device)
    first_call = time.perf_counter() - started
    if counter is not None:
        counter.reset()

    durations = []
    for index in range(args.images):
        started = time.perf_counter()
        generate(make_request(scale, args.steps, seed=index + 1, reference=reference))
        synchronize(scale.device)
        durations.append(time.perf_counter() - started)

    seconds = statistics.median(durations)
    result = ModeResult(
        mode=name,
        status="ok",
        first_call_s=first_call,
        seconds_per_image=seconds,
        peak_fraction=flops_per_image / seconds / (peak * 1e12) if peak else None,
        peak_memory_gib=peak_memory_gib(scale.device),
        note=_mode_note(backend, counter, args.steps * args.images),
    )
    return result


class _StepCounter:
    """Counter of the steps in which the last single block ran, for First Block Cache skips."""

    def __init__(self, transformer: FluxTransformer2DModel) -> None:
        self.computed = 0
        # The block's attention runs only when the cache decides to compute.
        transformer.single_transformer_blocks[-1].attn.register_forward_hook(self._count)

    def _count(self, *_: object) -> None:
        self.computed += 1

    def reset(self) -> None:
        self.computed = 0


def _mode_note(backend: KontextPipelineBackend, counter: _StepCounter | None, steps: int) -> str:
    stats = backend.stats()
    notes = []
    if counter is not None:
        notes.append(f"blocks computed in {counter.computed}/{steps} steps")
    if stats["reference_cache_hits"]:
        notes.append(f"reference cache hits {stats['reference_cache_hits']}")
    if stats["compiled_graphs"] is not None:
        notes.append(f"compiled graphs {stats['compiled_graphs']}")
    return ", ".join(notes)


def estimate_seconds(name: str, plain: ModeResult | None, images: int) -> float | None:
    """Estimate a mode's wall time from the plain mode's figures; None before plain has run."""
    if plain is None or plain.seconds_per_image is None or plain.first_call_s is None:
        return None
    estimate = plain.first_call_s + plain.seconds_per_image * (images + 0.5)
    if MODES[name].get("compile"):
        estimate += COMPILE_ALLOWANCE_S
    return estimate


# --- entry point -----------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--tiny", action="store_true", help="64x64 frames of the tiny model on the CPU"
    )
    parser.add_argument(
        "--modes", default=",".join(DEFAULT_MODES), help="comma-separated modes, run in order"
    )
    parser.add_argument(
        "--images", type=int, default=2, help="timed images per mode (median is printed)"
    )
    parser.add_argument(
        "--steps", type=int, default=None, help="denoising steps (28; 4 with --tiny)"
    )
    parser.add_argument(
        "--size",
        type=int,
        default=None,
        help="frame and reference side in pixels (1024; 64 with --tiny)",
    )
    parser.add_argument(
        "--decode", action="store_true", help="include VAE decoding and PNG encoding"
    )
    parser.add_argument(
        "--fbc-threshold", type=float, default=0.2, help="First Block Cache threshold"
    )
    parser.add_argument("--compile-backend", default="inductor", help="torch.compile backend")
    parser.add_argument(
        "--budget-s",
        type=float,
        default=450.0,
        help="skip modes that would end after this many seconds",
    )
    parser.add_argument(
        "--json", type=Path, default=None, help="also write the results to this file"
    )
    args = parser.parse_args(argv)

    unknown = [mode for mode in args.modes.split(",") if mode not in MODES]
    if unknown:
        parser.error(
            f"--modes: unknown mode(s) {', '.join(unknown)}; known modes are {', '.join(MODES)}"
        )
    if args.images < 1:
        parser.error(f"--images: must be at least 1, got {args.images}")
    if args.size is not None and (args.size < 16 or args.size % 16):
        parser.error(f"--size: must be a positive multiple of 16, got {args.size}")
    return args


def make_scale(args: argparse.Namespace) -> Scale:
    if args.tiny:
        size = args.size or 64
        return Scale(torch.device("cpu"), torch.float32, size, size, text_tokens=64)
    if not torch.cuda.is_available():
        raise SystemExit("bench/gpu.py needs a CUDA GPU; use --tiny to run it on the CPU")
    size = args.size or 1024
    return Scale(torch.device("cuda"), torch.bfloat16, size, size, text_tokens=FULL_TEXT_TOKENS)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    started = time.perf_counter()
    scale = make_scale(args)
    if args.tiny:
        torch.set_num_threads(1)
    args.steps = args.steps or (4 if args.tiny else 28)

    # 1. The shared pipeline parts, and the work of one image.
    if args.tiny:
        pipeline = build_tiny_kontext_pipeline(0)
        config = dict(pipeline.transformer.config)
    else:
        pipeline = build_full_pipeline(scale)
        config = dict(FULL_TRANSFORMER)
    image_tokens, text_tokens = tokens_per_step(config, scale, with_reference=True)
    flops_per_image = transformer_flops(config, image_tokens, text_tokens) * args.steps
    device_name, peak = peak_tflops(scale.device)
    print(f"device: {device_name}; dense bf16 peak: {f'{peak:.0f} TFLOPS' if peak else 'unknown'}")
    print(
        f"frame {scale.width}x{scale.height} + reference {scale.width}x{scale.height}, "
        f"{args.steps} steps, {image_tokens} image + {text_tokens} text tokens per step, "
        f"{format_flops(flops_per_image / args.steps)} per step, "
        f"{format_flops(flops_per_image)} per image; decode {'on' if args.decode else 'off'}"
    )
    release(pipeline, scale.device)

    # 2. Each mode on a fresh transformer, within the time budget.
    results: list[ModeResult] = []
    plain: ModeResult | None = None
    for name in args.modes.split(","):
        estimate = estimate_seconds(name, plain, args.images)
        elapsed = time.perf_counter() - started
        if estimate is not None and elapsed + estimate > args.budget_s:
            result = ModeResult(
                name,
                f"skipped: about {estimate:.0f} s needed, "
                f"{args.budget_s - elapsed:.0f} s of the budget left",
            )
        else:
            try:
                result = run_mode(name, pipeline, config, scale, args, flops_per_image, peak)
            finally:
                release(pipeline, scale.device)
        if name == "plain" and result.status == "ok":
            plain = result
        results.append(result)
        print_result(result)

    print(f"total {time.perf_counter() - started:.0f} s")
    if args.json:
        args.json.write_text(json.dumps([asdict(result) for result in results], indent=2) + "\n")
    return 0


def print_result(result: ModeResult) -> None:
    if result.status != "ok":
        print(f"{result.mode:<12} {result.status}")
        return
    fraction = (
        f"{result.peak_fraction:.1%} of peak"
        if result.peak_fraction is not None
        else "peak unknown"
    )
    print(
        f"{result.mode:<12} {result.seconds_per_image:8.3f} s/image  {fraction:>14}  "
        f"first call {result.first_call_s:7.1f} s  peak memory {result.peak_memory_gib:6.2f} GiB"
        + (f"  ({result.note})" if result.note else "")
    )


if __name__ == "__main__":
    sys.exit(main())
