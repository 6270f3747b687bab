"""Print how long planning a matrix storyboard takes and how much memory it peaks at.

Usage: python bench/planner.py [--frames 10000 100000] [--catalog]

For each frame count, the storyboard is a one-scene matrix of two axes.
`plan` is consumed without keeping the tasks, as the catalog does, and
peak memory is measured with tracemalloc: Python allocations only, so
SQLite's own page cache is not counted. With
--catalog, the plan is also inserted into a fresh SQLite catalog with
`Catalog.create_run_batched` and, for comparison, with `create_run`, which
builds a list of the whole plan.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from orchestrator.planner import plan  # noqa: E402
from schemas.storyboard import Storyboard  # noqa: E402
from storage.catalog import Catalog  # noqa: E402


def matrix_storyboard(frames: int) -> Storyboard:
    """Return a storyboard that plans exactly `frames` frames (a multiple of 100 or less)."""
    products = min(100, frames)
    markets = math.ceil(frames / products)
    if markets * products != frames:
        raise SystemExit(f"--frames {frames}: use a multiple of 100")
    return Storyboard.model_validate(
        {
            "name": f"bench-{frames}",
            "characters": [{"id": "ana", "references": ["a.jpg"]}],
            "matrix": {
                "market": [{"id": f"m{i}", "text": f"in city number {i}"} for i in range(markets)],
                "product": [f"product {i}" for i in range(products)],
            },
            "scenes": [
                {"id": "s1", "prompt": "Ana holds a {product} {market}", "characters": ["ana"]}
            ],
        }
    )


def measure(action: Callable[[], object]) -> tuple[float, int]:
    """Return (seconds, peak bytes allocated) of `action`.

    The time comes from a run without tracemalloc, which slows allocation
    about twofold; the peak from a second run under tracemalloc.
    """
    started = time.perf_counter()
    action()
    seconds = time.perf_counter() - started
    tracemalloc.start()
    try:
        action()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return seconds, peak


def consume(storyboard: Storyboard) -> int:
    return sum(1 for _ in plan(storyboard, "bench-sha256", "bench"))


def plan_list(storyboard: Storyboard) -> int:
    return len(list(plan(storyboard, "bench-sha256", "bench")))


def insert(storyboard: Storyboard, batched: bool) -> None:
    with tempfile.TemporaryDirectory() as folder:
        catalog = Catalog(f"sqlite:///{folder}/catalog.db")
        catalog.upgrade()
        spec = storyboard.model_dump(mode="json")
        storyboard_id = catalog.put_storyboard(storyboard.name, spec, "bench-sha256")
        frames = plan(storyboard, "bench-sha256", storyboard_id)
        create = catalog.create_run_batched if batched else catalog.create_run
        create(storyboard_id, frames, {})
        catalog.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--catalog", action="store_true", help="also time catalog inserts")
    args = parser.parse_args()

    print(f"{'frames':>8} {'step':<28} {'seconds':>8} {'peak KiB':>9}")
    for frames in args.frames:
        storyboard = matrix_storyboard(frames)
        steps: list[tuple[str, Callable[[], object]]] = [
            ("plan (generator, consumed)", partial(consume, storyboard)),
            ("plan into a list", partial(plan_list, storyboard)),
        ]
        if args.catalog:
            steps += [
                ("create_run_batched (SQLite)", partial(insert, storyboard, batched=True)),
                ("create_run (SQLite)", partial(insert, storyboard, batched=False)),
            ]
        for label, action in steps:
            seconds, peak = measure(action)
            print(f"{frames:>8} {label:<28} {seconds:>8.2f} {peak / 1024:>9.0f}")


if __name__ == "__main__":
    main()
