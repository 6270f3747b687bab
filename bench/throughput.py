"""Compare frames per second of a plain diffusers loop with `onmodel run` on one actor.

Usage: python bench/throughput.py [--frames 64] [--size 256] [--steps 4] [--repeat 3]
    [--worker-niceness N] [--keep DIR]

All three measurements generate the same frames with the tiny Kontext
pipeline (random weights, CPU, one torch thread) from one storyboard of 8
scenes with `--frames / 8` variants each. Every frame has one or two
character references and a style image, composed onto one conditioning
canvas.

(a) a plain diffusers loop in this process: the pipeline is called with
    the prompt and the canvas image for every frame, and each image is
    encoded as PNG, as a user script would do it.
(b) the same frames through `KontextPipelineBackend.generate` in this
    process, with the caches that the actors use (reference latents and
    prompt embeddings encoded once), so (a) to (b) is what the caches save.
(c) the storyboard through the Runner, in process, with one generator
    actor: submit, dispatch, store and catalog every frame. Ray start-up
    and actor start-up (pipeline build) are timed separately and not
    counted, as they are paid once per driver and per actor.

The three are measured in turn in every repetition, and medians are
printed, so a ratio stays fair while the machine's speed drifts. The target
is (c) at 0.9 of (a) or better. The attempts' own generation seconds from
the catalog show how much of (c)'s wall time went to the driver, transfers
and queueing.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# Local Ray on loopback without token auth or usage reports; set before Ray is imported.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import torch  # noqa: E402
import yaml  # noqa: E402
from PIL import Image  # noqa: E402

from actors.backends.tiny import TINY_MAX_SEQUENCE_LENGTH, TINY_WEIGHTS_SEED, load_tiny_backend  # noqa: E402
from actors.compose import bind_prompt, compose_canvas  # noqa: E402
from actors.tiny import build_tiny_kontext_pipeline  # noqa: E402
from orchestrator.app_state import open_backends  # noqa: E402
from orchestrator.cluster import ensure_ray  # noqa: E402
from orchestrator.planner import TINY_MODEL, attempt_seed, plan  # noqa: E402
from orchestrator.runner import Runner  # noqa: E402
from orchestrator.settings import Settings  # noqa: E402
from orchestrator.spec import LoadedSpec, load_spec  # noqa: E402
from orchestrator.submit import submit  # noqa: E402
from schemas.records import GenerationRequest  # noqa: E402

REFERENCES = ROOT / "examples" / "coffee" / "refs"
SCENES = 8
# (prompt, characters) of the scenes, reused round-robin.
SCENE_TEXTS = (
    ("Ana orders a coffee at a busy counter", ["ana"]),
    ("Leo reads a newspaper by the cafe window", ["leo"]),
    ("Ana and Leo share a table and laugh over two cups", ["ana", "leo"]),
    ("Ana pours latte art as the barista, close-up on her face", ["ana"]),
)


def quiet_library_logs() -> None:
    """Keep diffusers and transformers to errors, as the generator actors do."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    diffusers_logging.set_verbosity_error()
    transformers_logging.set_verbosity_error()


def write_spec(folder: Path, frames: int, size: int, steps: int) -> Path:
    """Write a storyboard of `frames` frames (8 scenes) with the example references."""
    if frames % SCENES:
        raise SystemExit(f"--frames: must be a multiple of {SCENES}, got {frames}")
    shutil.copytree(REFERENCES, folder / "refs")
    scenes = []
    for index in range(SCENES):
        prompt, characters = SCENE_TEXTS[index % len(SCENE_TEXTS)]
        scenes.append({"id": f"s{index:02d}", "prompt": prompt, "characters": characters})
    spec = {
        "name": "throughput-bench",
        "characters": [
            {"id": "ana", "name": "Ana", "references": ["refs/ana_1.jpg"]},
            {"id": "leo", "name": "Leo", "references": ["refs/leo_1.jpg"]},
        ],
        "style": {"reference": "refs/style.jpg", "description": "warm watercolour"},
        "defaults": {
            "backend": "tiny",
            "width": size,
            "height": size,
            "steps": steps,
            "variants": frames // SCENES,
        },
        "scenes": scenes,
    }
    path = folder / "storyboard.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def frame_inputs(loaded: LoadedSpec) -> list[tuple[str, bytes, int, int, int, int]]:
    """Return (prompt, canvas PNG, width, height, steps, seed) per first attempt, in plan order."""
    storyboard = loaded.storyboard
    style = loaded.style.png if loaded.style is not None else None
    frames = []
    for task in plan(storyboard, loaded.sha256):
        names = [storyboard.character(c).name or c for c in task.characters]
        prompt = bind_prompt(task.prompt, names)
        if storyboard.style is not None and storyboard.style.description:
            prompt = f"{prompt} Style: {storyboard.style.description}."
        references = [loaded.references[c][0].png for c in task.characters]
        canvas = compose_canvas(references, task.width, task.height, style)
        seed = attempt_seed(task.seed, 1)
        frames.append((prompt, canvas, task.width, task.height, task.steps, seed))
    return frames


def time_plain_loop(frames: list[tuple[str, bytes, int, int, int, int]]) -> float:
    """(a): call the pipeline once per frame with the prompt and canvas image, encode PNG."""
    pipeline = build_tiny_kontext_pipeline(TINY_WEIGHTS_SEED)
    pipeline.set_progress_bar_config(disable=True)
    canvases = {canvas: Image.open(io.BytesIO(canvas)).convert("RGB") for _, canvas, *_ in frames}
    started = time.perf_counter()
    for prompt, canvas, width, height, steps, seed in frames:
        image = pipeline(
            image=canvases[canvas],
            prompt=prompt,
            height=height,
            width=width,
            max_area=width * height,
            _auto_resize=False,
            num_inference_steps=steps,
            guidance_scale=2.5,
            generator=torch.Generator("cpu").manual_seed(seed),
            max_sequence_length=TINY_MAX_SEQUENCE_LENGTH,
        ).images[0]
        image.save(io.BytesIO(), format="PNG")
    return time.perf_counter() - started


def time_backend_loop(frames: list[tuple[str, bytes, int, int, int, int]]) -> float:
    """(b): the actors' code path, in this process, caches on."""
    backend = load_tiny_backend(TINY_MODEL, {"device": "cpu"})
    started = time.perf_counter()
    for index, (prompt, canvas, width, height, steps, seed) in enumerate(frames):
        backend.generate(
            GenerationRequest(
                frame_key=f"frame-{index}",
                attempt=1,
                prompt=prompt,
                backend="tiny",
                model=TINY_MODEL,
                width=width,
                height=height,
                steps=steps,
                guidance=2.5,
                seed=seed,
                conditioning_png=canvas,
            )
        )
    return time.perf_counter() - started


class RunnerBench:
    """(c): Ray started once, then per run a fresh actor (timed apart) and the storyboard's run."""

    def __init__(self, folder: Path, spec_path: Path) -> None:
        import ray

        self.settings = Settings(home=folder / "home", actors=1, torch_threads=1)
        self.backends = open_backends(self.settings)
        self.loaded = load_spec(spec_path)
        # Ray is stopped at the end only if this bench started it.
        self.started_ray = not ray.is_initialized()
        started = time.perf_counter()
        ensure_ray(self.settings)
        self.ray_start_s = time.perf_counter() - started

    def run_once(self) -> dict[str, float]:
        """Run the storyboard on a fresh actor, so its caches start empty as in (b)."""
        figures: dict[str, float] = {}
        runner = Runner(self.settings, self.backends.catalog, self.backends.store)
        try:
            started = time.perf_counter()
            runner.generator_pool("tiny", TINY_MODEL)
            figures["actor_start_s"] = time.perf_counter() - started

            run_id = submit(self.backends.catalog, self.backends.store, self.loaded)
            started = time.perf_counter()
            runner.run(run_id)
            figures["run_s"] = time.perf_counter() - started
        finally:
            runner.shutdown()

        attempts = self.backends.catalog.list_attempts(run_id)
        figures["attempts"] = float(len(attempts))
        figures["actor_generate_s"] = sum(a.seconds_generate or 0.0 for a in attempts)
        return figures

    def close(self) -> None:
        import ray

        if self.started_ray:
            ray.shutdown()
        self.backends.close()


def measure(folder: Path, spec_path: Path, repeat: int) -> dict[str, float]:
    """Time (a), (b) and (c) in turn, `repeat` times; return the medians.

    Taking the three in turn in every repetition, and the median of the
    per-repetition ratios, keeps a ratio fair when the machine's speed drifts.
    """
    frames = frame_inputs(load_spec(spec_path))
    count = len(frames)
    bench = RunnerBench(folder, spec_path)
    rows: list[dict[str, float]] = []
    try:
        for _ in range(repeat):
            row = {"plain_s": time_plain_loop(frames), "backend_s": time_backend_loop(frames)}
            row.update(bench.run_once())
            row["ratio_run_plain"] = row["plain_s"] / row["run_s"]
            row["ratio_run_backend"] = row["backend_s"] / row["run_s"]
            rows.append(row)
    finally:
        bench.close()
    medians = {name: statistics.median(row[name] for row in rows) for name in rows[0]}
    medians["frames"] = float(count)
    medians["ray_start_s"] = bench.ray_start_s
    return medians


def print_report(figures: dict[str, float], args: argparse.Namespace) -> None:
    count = figures["frames"]
    niceness = "Ray's default" if args.worker_niceness is None else args.worker_niceness
    print(
        f"{int(count)} frames of {args.size}x{args.size}, {args.steps} steps, tiny pipeline, "
        f"1 torch thread; medians of {args.repeat} repetitions; worker niceness {niceness}"
    )
    rows = (
        ("(a) plain diffusers loop, one process", figures["plain_s"]),
        ("(b) backend loop with caches, one process", figures["backend_s"]),
        ("(c) onmodel run, one actor", figures["run_s"]),
    )
    for label, seconds in rows:
        print(f"{label:<43} {seconds:7.2f} s  {count / seconds:7.2f} frames/s")
    print(
        f"    not counted in (c): Ray start-up {figures['ray_start_s']:.1f} s, "
        f"actor start-up {figures['actor_start_s']:.1f} s"
    )
    print(
        f"ratio (c)/(a): {figures['ratio_run_plain']:.2f}  (c)/(b): "
        f"{figures['ratio_run_backend']:.2f}  (target (c)/(a) >= 0.90)"
    )
    other = figures["run_s"] - figures["actor_generate_s"]
    print(
        f"inside (c): {int(figures['attempts'])} attempts; generation "
        f"{figures['actor_generate_s']:.2f} s ({figures['actor_generate_s'] / count * 1000:.0f} ms "
        f"per frame); the rest {other:.2f} s ({other / count * 1000:.0f} ms per frame: PNG "
        "encoding, transfer, storage, catalog, idle)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--frames", type=int, default=64, help="frames to generate, a multiple of 8"
    )
    parser.add_argument(
        "--size", type=int, default=256, help="frame side in pixels, a multiple of 16"
    )
    parser.add_argument("--steps", type=int, default=4, help="denoising steps per frame")
    parser.add_argument("--repeat", type=int, default=3, help="repetitions; medians are printed")
    parser.add_argument(
        "--worker-niceness",
        type=int,
        default=None,
        help=(
            "nice value of Ray's worker processes (Ray's default is 15); "
            "(a) and (b) run at this process's"
        ),
    )
    parser.add_argument("--keep", type=Path, default=None, help="work in this folder and keep it")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error(f"--repeat: must be at least 1, got {args.repeat}")
    if args.worker_niceness is not None:
        # The raylet reads its config entry worker_niceness from this exact,
        # lower-case variable name when it starts.
        os.environ["RAY_worker_niceness"] = str(args.worker_niceness)  # noqa: SIM112
    torch.set_num_threads(1)
    quiet_library_logs()

    folder = args.keep or Path(tempfile.mkdtemp(prefix="onmodel-throughput-"))
    folder.mkdir(parents=True, exist_ok=True)
    try:
        spec_path = write_spec(folder, args.frames, args.size, args.steps)
        figures = measure(folder, spec_path, args.repeat)
    finally:
        if args.keep is None:
            shutil.rmtree(folder, ignore_errors=True)
    print_report(figures, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
