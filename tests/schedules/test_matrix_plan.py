"""Planning a matrix storyboard: one frame set per combination, streamed in batches."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from schedule_specs import EXAMPLE

from orchestrator.planner import plan
from orchestrator.spec import load_spec, validate_document
from schemas.records import FrameTask
from schemas.storyboard import Storyboard
from storage.catalog import Catalog


def storyboard(markets: int = 2, products: int = 3, **scene: Any) -> Storyboard:
    return validate_document(
        {
            "name": "matrix",
            "characters": [{"id": "ana", "references": ["a.jpg"]}],
            "defaults": {"seed": 7, "variants": 2},
            "matrix": {
                "market": [{"id": f"m{i}", "text": f"in city {i}"} for i in range(markets)],
                "product": [f"p{i}" for i in range(products)],
            },
            "scenes": [
                {
                    "id": "s1",
                    "prompt": "Ana with {product} {market} ({market.id})",
                    "characters": ["ana"],
                    **scene,
                },
                {"id": "s2", "prompt": "pack shot of {product}", "axes": ["product"]},
                {"id": "s3", "prompt": "logo", "axes": []},
            ],
        }
    )


def test_every_combination_scene_and_variant_is_a_frame() -> None:
    tasks = list(plan(storyboard(), "hash", "sb"))

    s1 = [t for t in tasks if t.scene_id.startswith("s1.")]
    s2 = [t for t in tasks if t.scene_id.startswith("s2.")]
    s3 = [t for t in tasks if t.scene_id == "s3"]
    assert len(s1) == 2 * 3 * 2
    assert len(s2) == 3 * 2
    assert len(s3) == 2
    assert len(tasks) == len(s1) + len(s2) + len(s3)
    assert len({t.key for t in tasks}) == len(tasks)


def test_prompts_are_filled_from_the_combination() -> None:
    tasks = list(plan(storyboard(), "hash"))

    first = next(t for t in tasks if t.scene_id == "s1.m1.p2")
    assert first.prompt == "Ana with p2 in city 1 (m1)"
    assert {t.prompt for t in tasks if t.scene_id.startswith("s2.")} == {
        "pack shot of p0",
        "pack shot of p1",
        "pack shot of p2",
    }


def test_scene_labels_and_order_follow_the_declaration() -> None:
    tasks = list(plan(storyboard(), "hash"))
    labels = list(dict.fromkeys(t.scene_id for t in tasks))

    assert labels[:4] == ["s1.m0.p0", "s2.p0", "s3", "s1.m0.p1"]
    assert labels[-1] == "s1.m1.p2"


def test_keys_are_deterministic_and_include_the_combination() -> None:
    first = [t.key for t in plan(storyboard(), "hash")]
    second = [t.key for t in plan(storyboard(), "hash")]
    other_spec = [t.key for t in plan(storyboard(), "other")]

    assert first == second
    assert not set(first) & set(other_spec)


def test_combinations_share_the_scene_seeds() -> None:
    tasks = [t for t in plan(storyboard(), "hash") if t.scene_id.startswith("s1.")]

    for label in {t.scene_id for t in tasks}:
        assert sorted(t.seed for t in tasks if t.scene_id == label) == [7, 8]


def test_edit_chains_are_filled_and_linked_per_combination() -> None:
    tasks = list(plan(storyboard(edits=["more {product}"], variants=1), "hash"))
    chain = [t for t in tasks if t.scene_id == "s1.m0.p1"]

    assert [t.edit_step for t in chain] == [0, 1]
    assert chain[1].parent_key == chain[0].key
    assert chain[1].prompt == "more p1"


def test_plan_is_a_lazy_generator() -> None:
    big = storyboard(markets=100, products=100)
    frames = plan(big, "hash", "sb")

    assert isinstance(frames, Iterator)
    first = list(itertools.islice(frames, 3))
    assert [t.scene_id for t in first] == ["s1.m0.p0", "s1.m0.p0", "s2.p0"]


def test_plan_of_20000_frames_needs_little_memory() -> None:
    big = storyboard(markets=100, products=100)
    tracemalloc.start()
    try:
        count = sum(1 for _ in plan(big, "hash", "sb"))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert count == 100 * 100 * 2 + 100 * 2 + 2
    # A list of 20,000 FrameTasks would take about 40 MB.
    assert peak < 2_000_000


def test_batched_run_creation_streams_the_plan(catalog: Catalog) -> None:
    big = storyboard(markets=50, products=50)
    storyboard_id = catalog.put_storyboard("matrix", big.model_dump(mode="json"), "hash")
    consumed = 0

    def counting() -> Iterator[FrameTask]:
        nonlocal consumed
        for task in plan(big, "hash", storyboard_id):
            consumed += 1
            yield task

    run_id = catalog.create_run_batched(storyboard_id, counting(), {})

    expected = 50 * 50 * 2 + 50 * 2 + 2
    assert consumed == expected
    assert catalog.get_run(run_id).frames_total == expected
    summary = catalog.run_summary(run_id)
    assert summary.frames == expected
    assert summary.pending == expected
    frames = catalog.list_frames(run_id)
    assert [f.key for f in frames[:5]] == [t.key for t in itertools.islice(plan(big, "hash"), 5)]


def test_batched_run_creation_is_all_or_nothing(catalog: Catalog) -> None:
    small = storyboard()
    storyboard_id = catalog.put_storyboard("matrix", small.model_dump(mode="json"), "hash")
    tasks = list(plan(small, "hash", storyboard_id))
    # A duplicate key after the first batch must roll back the run and its frames.
    frames = tasks * (Catalog.FRAME_INSERT_BATCH // len(tasks) + 2)

    with pytest.raises(ValueError, match="duplicate frame key"):
        catalog.create_run_batched(storyboard_id, iter(frames), {})

    assert catalog.list_runs() == []


def test_runs_show_stays_readable_for_large_runs(tmp_path: Path, catalog: Catalog) -> None:
    big = storyboard(markets=70, products=70)
    storyboard_id = catalog.put_storyboard("matrix", big.model_dump(mode="json"), "hash")
    run_id = catalog.create_run_batched(storyboard_id, plan(big, "hash", storyboard_id), {})
    env = {**os.environ, "ONMODEL_DATABASE_URL": catalog.url, "ONMODEL_HOME": str(tmp_path)}

    result = subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", "runs", "show", run_id[:8]],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) < 10
    assert "9942" in result.stdout


def test_example_matrix_spec_plans_33_frames() -> None:
    loaded = load_spec(EXAMPLE / "storyboard-matrix.yaml")

    tasks = list(plan(loaded.storyboard, loaded.sha256))

    assert len(tasks) == 33
    assert tasks[0].prompt == "Ana orders a cup of latte at the counter in a Paris bistro"
