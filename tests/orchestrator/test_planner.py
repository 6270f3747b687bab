"""The planner: deterministic frame keys and seeds, edit chains in order."""

from __future__ import annotations

from orchestrator.planner import attempt_seed, frame_key, plan
from schemas.storyboard import Storyboard


def storyboard(**scene_extra: object) -> Storyboard:
    return Storyboard.model_validate(
        {
            "name": "plan",
            "characters": [{"id": "ana", "references": ["a.jpg"]}],
            "defaults": {"seed": 10, "variants": 2, "width": 64, "height": 64},
            "scenes": [
                {"id": "s1", "prompt": "one", "characters": ["ana"], **scene_extra},
                {"id": "s2", "prompt": "two", "characters": [], "variants": 1, "seed": 500},
            ],
        }
    )


def test_plan_is_deterministic() -> None:
    first = list(plan(storyboard(), "hash"))
    second = list(plan(storyboard(), "hash"))

    assert first == second
    assert len(first) == 3
    assert len({task.key for task in first}) == 3


def test_keys_depend_on_spec_hash() -> None:
    assert frame_key("a", "s1", 0, 0) != frame_key("b", "s1", 0, 0)
    assert frame_key("a", "s1", 0, 0) != frame_key("a", "s1", 0, 1)


def test_variant_seeds_start_at_scene_seed() -> None:
    tasks = list(plan(storyboard(), "hash"))

    assert [t.seed for t in tasks] == [10, 11, 500]


def test_scene_overrides_apply() -> None:
    tasks = list(plan(storyboard(width=128, steps=3), "hash"))

    assert tasks[0].width == 128
    assert tasks[0].height == 64
    assert tasks[0].steps == 3
    assert tasks[2].width == 64


def test_edit_chain_steps_link_to_parents() -> None:
    tasks = list(plan(storyboard(edits=["make her laugh", "add sunglasses"], variants=1), "hash"))
    chain = [t for t in tasks if t.scene_id == "s1"]

    assert [t.edit_step for t in chain] == [0, 1, 2]
    assert chain[0].parent_key is None
    assert chain[1].parent_key == chain[0].key
    assert chain[2].parent_key == chain[1].key
    assert chain[2].prompt == "add sunglasses"


def test_attempt_seeds_are_reproducible_and_distinct() -> None:
    seeds = [attempt_seed(1234, n) for n in range(1, 6)]

    assert seeds[0] == 1234
    assert len(set(seeds)) == 5
    assert seeds == [attempt_seed(1234, n) for n in range(1, 6)]
