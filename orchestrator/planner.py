"""Expand a storyboard into frame tasks with deterministic keys and seeds.

A storyboard with a `matrix` plans every combination of a scene's axes as
its own frames. `plan` is a generator: a plan of 100,000 frames is never
held in memory at once, so the catalog can insert it in batches.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from schemas.records import FrameTask
from schemas.storyboard import (
    Backend,
    MatrixValue,
    Scene,
    Storyboard,
    TemplatePart,
    parse_template,
)

# The model name recorded for the tiny backend, whose weights are built in memory.
TINY_MODEL = "tiny-random-kontext"

# Seeds are kept below 2**63 so they fit a signed 64-bit database column.
SEED_MODULUS = 2**63

# Joins a scene id and its matrix value ids into a frame's scene label. Ids
# never contain a dot, so a label cannot collide with a plain scene id.
LABEL_SEPARATOR = "."


def frame_key(storyboard_sha256: str, scene_id: str, edit_step: int, variant: int) -> str:
    """Return the stable id of a frame: the same spec always plans the same keys."""
    material = f"{storyboard_sha256}\x1f{scene_id}\x1f{edit_step}\x1f{variant}"
    return hashlib.sha256(material.encode()).hexdigest()[:24]


def derive_seed(base_seed: int, *parts: int | str) -> int:
    """Derive a reproducible seed from a base seed and labels such as the attempt number."""
    if not parts:
        return base_seed
    material = "\x1f".join(str(p) for p in (base_seed, *parts))
    return int.from_bytes(hashlib.sha256(material.encode()).digest()[:8], "big") % SEED_MODULUS


def attempt_seed(frame_seed: int, attempt: int) -> int:
    """Return the seed of attempt `attempt` (1-based): the first uses the frame's own seed."""
    return frame_seed if attempt <= 1 else derive_seed(frame_seed, "attempt", attempt)


def scene_label(scene_id: str, combination: Sequence[MatrixValue]) -> str:
    """Return the scene label of one matrix combination, e.g. `s01-counter.fr.latte`."""
    return LABEL_SEPARATOR.join([scene_id, *(value.id for value in combination)])


def fill_template(parts: Sequence[TemplatePart], values: dict[str, MatrixValue]) -> str:
    """Fill parsed placeholders from one combination (axis -> value)."""
    pieces = []
    for part in parts:
        if isinstance(part, str):
            pieces.append(part)
        else:
            axis, field = part
            pieces.append(getattr(values[axis], field))
    return "".join(pieces)


@dataclass(frozen=True)
class _ScenePlan:
    """Settings shared by every frame of one scene, worked out once per scene."""

    scene: Scene
    axes: list[str]
    # Parsed prompt, then one parsed template per edit step; None without a matrix.
    templates: list[list[TemplatePart]] | None
    variants: int
    seed: int


def plan(
    storyboard: Storyboard, storyboard_sha256: str, storyboard_id: str = ""
) -> Iterator[FrameTask]:
    """Yield every frame of the storyboard in order.

    Variant v of a scene uses the scene's seed plus v, so the user's seed is
    the seed of the first variant. Edit step k of a variant edits step k-1,
    so steps are yielded in chain order and carry their parent's key.

    With a matrix, frames are yielded combination by combination in the
    order the axes and values are declared (the first axis varies slowest),
    and within a combination scene by scene. A combination's frames share
    the seeds of the scene's frames, so combinations differ only by their
    prompts. Their `scene_id` is the scene label, `scene.value-id...`.
    """
    scenes = [_scene_plan(storyboard, scene) for scene in storyboard.scenes]
    if storyboard.matrix is None:
        for scene_plan in scenes:
            yield from _scene_frames(storyboard, storyboard_sha256, storyboard_id, scene_plan, {})
        return

    matrix = storyboard.matrix
    axes = list(matrix)
    for combination in itertools.product(*(matrix[axis] for axis in axes)):
        values = dict(zip(axes, combination, strict=True))
        for scene_plan in scenes:
            # A scene planned over fewer axes has one frame set per combination
            # of its own axes: emit it when the other axes are at their first value.
            if any(values[a] is not matrix[a][0] for a in axes if a not in scene_plan.axes):
                continue
            yield from _scene_frames(
                storyboard, storyboard_sha256, storyboard_id, scene_plan, values
            )


def _scene_plan(storyboard: Storyboard, scene: Scene) -> _ScenePlan:
    defaults = storyboard.defaults
    templates = None
    if storyboard.matrix is not None:
        templates = [parse_template(text) for text in (scene.prompt, *scene.edits)]
    return _ScenePlan(
        scene=scene,
        axes=storyboard.scene_axes(scene),
        templates=templates,
        variants=scene.variants or defaults.variants,
        seed=scene.seed if scene.seed is not None else defaults.seed,
    )


def _scene_frames(
    storyboard: Storyboard,
    storyboard_sha256: str,
    storyboard_id: str,
    scene_plan: _ScenePlan,
    values: dict[str, MatrixValue],
) -> Iterator[FrameTask]:
    defaults = storyboard.defaults
    scene = scene_plan.scene
    model = TINY_MODEL if defaults.backend == Backend.TINY else defaults.model
    label = scene_label(scene.id, [values[axis] for axis in scene_plan.axes])
    if scene_plan.templates is None:
        prompts = [scene.prompt, *scene.edits]
    else:
        prompts = [fill_template(parts, values) for parts in scene_plan.templates]
    for variant in range(scene_plan.variants):
        parent: str | None = None
        for step, prompt in enumerate(prompts):
            key = frame_key(storyboard_sha256, label, step, variant)
            yield FrameTask(
                key=key,
                storyboard_id=storyboard_id,
                scene_id=label,
                edit_step=step,
                variant=variant,
                parent_key=parent,
                prompt=prompt,
                characters=list(scene.characters),
                backend=defaults.backend,
                model=model,
                width=scene.width or defaults.width,
                height=scene.height or defaults.height,
                steps=scene.steps or defaults.steps,
                guidance=scene.guidance if scene.guidance is not None else defaults.guidance,
                seed=(scene_plan.seed + variant + step) % SEED_MODULUS,
            )
            parent = key
