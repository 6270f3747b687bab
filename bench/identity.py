"""Time the dlib identity scorer on one 1024x1024 frame, stage by stage, on one core.

Usage: python bench/identity.py [--runs N] [--photo PATH]

The frame is a fixture portrait scaled onto a 1024x1024 canvas (face about
300 px wide). Each stage is timed separately, then the whole
`IdentityWorker.score` call with the reference already cached, which is the
cost per frame from the runner's second frame on. Figures are medians over N runs.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

# Pin to one core before numpy or dlib start any threads.
if hasattr(os, "sched_setaffinity"):
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
os.environ.setdefault("OMP_NUM_THREADS", "1")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from PIL import Image  # noqa: E402

from actors.identity import IdentityWorker, copy_guard  # noqa: E402
from actors.identity.backend import FaceBackend  # noqa: E402
from actors.identity.images import decode_rgb  # noqa: E402
from schemas.records import ReferenceImage  # noqa: E402

FACES = ROOT / "tests" / "fixtures" / "faces"
# Target for one frame on one core, so that a scorer keeps up with the
# generators: a GPU Kontext frame takes several seconds.
TARGET_SECONDS = 0.5


def make_frame(photo: Path) -> bytes:
    canvas = Image.new("RGB", (1024, 1024), (96, 110, 120))
    with Image.open(photo) as image:
        portrait = image.convert("RGB")
    portrait.thumbnail((700, 880))
    canvas.paste(portrait, ((1024 - portrait.width) // 2, 1024 - portrait.height))
    buffer = io.BytesIO()
    canvas.save(buffer, format="PNG")
    return buffer.getvalue()


def median_seconds(function: Callable[[], Any], runs: int) -> tuple[float, Any]:
    times = []
    result = None
    for _ in range(runs):
        started = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="timed runs per stage")
    parser.add_argument("--photo", type=Path, default=FACES / "ardern_2022.jpg")
    parser.add_argument("--reference", type=Path, default=FACES / "ardern_2018.jpg")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error(f"--runs must be an integer >= 1, got {args.runs}")

    frame_png = make_frame(args.photo)
    reference_png = args.reference.read_bytes()
    reference = ReferenceImage(sha256=hashlib.sha256(reference_png).hexdigest(), png=reference_png)

    started = time.perf_counter()
    worker = IdentityWorker("dlib")
    load_seconds = time.perf_counter() - started
    backend = worker.backend
    if not isinstance(backend, FaceBackend):
        raise TypeError(f"expected a face backend, got {type(backend).__name__}")
    characters = {"subject": [reference]}
    worker.score(frame_png, characters, {})  # warm-up, and caches the reference

    frame = decode_rgb(frame_png, "frame")
    decode, _ = median_seconds(lambda: decode_rgb(frame_png, "frame"), args.runs)
    detect, faces = median_seconds(lambda: backend.detect(frame), args.runs)
    align, aligned = median_seconds(lambda: backend.align(frame, faces), args.runs)
    chips = [face.chip for face in aligned]
    embed, _ = median_seconds(lambda: backend.embed(chips), args.runs)
    guard, _ = median_seconds(
        lambda: (
            copy_guard.fingerprint(frame, copy_guard.FRAME_SIDE),
            [backend.fingerprint(frame, face) for face in aligned],
        ),
        args.runs,
    )
    total, result = median_seconds(lambda: worker.score(frame_png, characters, {}), args.runs)

    print(f"dlib scorer, 1024x1024 frame, {len(faces)} face(s), 1 core, median of {args.runs}")
    print(f"  load models   {load_seconds:7.3f} s (once per worker)")
    for name, seconds in (
        ("decode PNG", decode),
        ("detect", detect),
        ("align", align),
        ("embed", embed),
        ("copy guard", guard),
    ):
        print(f"  {name:13s} {seconds:7.3f} s")
    verdict = "within" if total <= TARGET_SECONDS else "over"
    print(f"  total score() {total:7.3f} s ({verdict} the {TARGET_SECONDS} s target)")
    print(f"  verdict {result.verdict.value}, score {result.score:.3f}")


if __name__ == "__main__":
    main()
