"""The storyboard spec: what a user writes in YAML or JSON.

These models check structure and values only. Checks that need the file
system (reference files exist, stay inside the spec's folder, decode as
images) live in `orchestrator.spec`.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# Kontext works in 16-pixel units: 8x VAE downsampling, then 2x2 latent packing.
SIZE_MULTIPLE = 16
# Largest side accepted. FLUX.1 Kontext is trained up to about 2 megapixels.
MAX_SIDE = 2048
MAX_STEPS = 200
MAX_VARIANTS = 64
MAX_TEXT = 4000

Identifier = Annotated[str, Field(pattern=r"^[a-z0-9_-]+$", min_length=1, max_length=64)]
Text = Annotated[str, Field(max_length=MAX_TEXT)]


class Backend(StrEnum):
    TINY = "tiny"
    DIFFUSERS = "diffusers"
    BFL = "bfl"


class ScorerName(StrEnum):
    # "none" turns the identity gate off: every frame is accepted as unscored.
    NONE = "none"
    DLIB = "dlib"
    ONNX_FACE = "onnx-face"
    EMBEDDING = "embedding"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Character(_Strict):
    """A character with the reference photos that define how it must look."""

    id: Identifier
    name: Text = ""
    description: Text = ""
    references: list[Annotated[str, Field(min_length=1, max_length=1024)]] = Field(min_length=1)
    # Per-character override of the identity threshold (score units of the scorer).
    threshold: float | None = Field(default=None, ge=0.0, le=1.0)


class Style(_Strict):
    """A style reference image and/or a description applied to every frame."""

    reference: str | None = Field(default=None, min_length=1, max_length=1024)
    description: Text = ""


def _check_size(value: int | None) -> int | None:
    if value is None:
        return value
    if value <= 0 or value % SIZE_MULTIPLE or value > MAX_SIDE:
        raise ValueError(
            f"must be a positive multiple of {SIZE_MULTIPLE} and at most {MAX_SIDE}, got {value}"
        )
    return value


class GenerationParams(_Strict):
    """Generation settings a scene may override; `None` means inherit."""

    width: int | None = None
    height: int | None = None
    steps: int | None = Field(default=None, ge=1, le=MAX_STEPS)
    guidance: float | None = Field(default=None, ge=0.0, le=30.0)
    seed: int | None = Field(default=None, ge=0, lt=2**63)
    variants: int | None = Field(default=None, ge=1, le=MAX_VARIANTS)

    _sizes = field_validator("width", "height")(_check_size)


class Defaults(_Strict):
    """Storyboard-wide generation settings."""

    backend: Backend = Backend.TINY
    model: str = Field(default="black-forest-labs/FLUX.1-Kontext-dev", min_length=1, max_length=1024)
    width: int = 512
    height: int = 512
    steps: int = Field(default=28, ge=1, le=MAX_STEPS)
    guidance: float = Field(default=2.5, ge=0.0, le=30.0)
    seed: int = Field(default=1234, ge=0, lt=2**63)
    variants: int = Field(default=1, ge=1, le=MAX_VARIANTS)

    _sizes = field_validator("width", "height")(_check_size)


class Consistency(_Strict):
    """The identity gate: which scorer, which threshold, how many attempts."""

    scorer: ScorerName = ScorerName.DLIB
    # None: the scorer's default threshold.
    threshold: float | None = Field(default=None, ge=0.0, le=1.0)
    max_attempts: int = Field(default=4, ge=1, le=32)
    # Local folder of the model for the onnx-face and embedding scorers.
    model: str | None = Field(default=None, max_length=1024)


class Scene(GenerationParams):
    """One scene: a prompt, the characters in it, optional overrides and edits."""

    id: Identifier
    prompt: Text = Field(min_length=1)
    characters: list[Identifier] = Field(default_factory=list)
    # Edit instructions applied in order; step k edits the accepted image of step k-1.
    edits: list[Annotated[str, Field(min_length=1, max_length=MAX_TEXT)]] = Field(
        default_factory=list, max_length=32
    )


class Storyboard(_Strict):
    """A whole storyboard spec as parsed from YAML or JSON."""

    name: Annotated[str, Field(min_length=1, max_length=200)]
    characters: list[Character] = Field(min_length=1, max_length=64)
    style: Style | None = None
    defaults: Defaults = Defaults()
    consistency: Consistency = Consistency()
    scenes: list[Scene] = Field(min_length=1, max_length=10_000)

    @model_validator(mode="after")
    def _check_ids(self) -> Storyboard:
        # Errors raised here carry their field path in the message; the loader
        # turns them into SpecError with the same path.
        seen: dict[str, int] = {}
        for i, character in enumerate(self.characters):
            if character.id in seen:
                raise ValueError(
                    f"characters[{i}].id: duplicate character id {character.id!r} "
                    f"(also characters[{seen[character.id]}]); give each character its own id"
                )
            seen[character.id] = i
        scene_ids: dict[str, int] = {}
        for i, scene in enumerate(self.scenes):
            if scene.id in scene_ids:
                raise ValueError(
                    f"scenes[{i}].id: duplicate scene id {scene.id!r} "
                    f"(also scenes[{scene_ids[scene.id]}]); give each scene its own id"
                )
            scene_ids[scene.id] = i
            for j, character_id in enumerate(scene.characters):
                if character_id not in seen:
                    defined = ", ".join(sorted(seen))
                    raise ValueError(
                        f"scenes[{i}].characters[{j}]: unknown character {character_id!r}; "
                        f"defined characters are: {defined}"
                    )
        return self

    def character(self, character_id: str) -> Character:
        for character in self.characters:
            if character.id == character_id:
                return character
        raise KeyError(character_id)
