"""Expand a storyboard into frame tasks with deterministic keys and seeds."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

from schemas.records import FrameTask
from schemas.storyboard import Backend, Scene, Storyboard

# The model name recorded for the tiny backend, whose weights are built in memory.
TINY_MODEL = "tiny-random-kontext"

# Seeds are kept below 2**63 so they fit a signed 64-bit database column.
SEED_MODULUS = 2**63


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


def _scene_prompt(scene: Scene, step: int) -> str:
    return scene.prompt if step == 0 else scene.edits[step - 1]


def plan(storyboard: Storyboard, storyboard_sha256: str, storyboard_id: str = "") -> Iterator[FrameTask]:
    """Yield every frame of the storyboard in order.

    Variant v of a scene uses the scene's seed plus v, so the user's seed is
    the seed of the first variant. Edit step k of a variant edits step k-1,
    so steps are yielded in chain order and carry their parent's key.
    """
    defaults = storyboard.defaults
    model = TINY_MODEL if defaults.backend == Backend.TINY else defaults.model
    for scene in storyboard.scenes:
        variants = scene.variants or defaults.variants
        scene_seed = scene.seed if scene.seed is not None else defaults.seed
        for variant in range(variants):
            parent: str | None = None
            for step in range(len(scene.edits) + 1):
                key = frame_key(storyboard_sha256, scene.id, step, variant)
                yield FrameTask(
                    key=key,
                    storyboard_id=storyboard_id,
                    scene_id=scene.id,
                    edit_step=step,
                    variant=variant,
                    parent_key=parent,
                    prompt=_scene_prompt(scene, step),
                    characters=list(scene.characters),
                    backend=defaults.backend,
                    model=model,
                    width=scene.width or defaults.width,
                    height=scene.height or defaults.height,
                    steps=scene.steps or defaults.steps,
                    guidance=scene.guidance if scene.guidance is not None else defaults.guidance,
                    seed=(scene_seed + variant + step) % SEED_MODULUS,
                )
                parent = key
