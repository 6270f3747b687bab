"""The storyboard spec: what a user writes in YAML or JSON.

These models check structure and values only. Checks that need the file
system (reference files exist, stay inside the spec's folder, decode as
images) live in `orchestrator.spec`.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

# Kontext works in 16-pixel units: 8x VAE downsampling, then 2x2 latent packing.
SIZE_MULTIPLE = 16
# Largest side accepted. FLUX.1 Kontext is trained up to about 2 megapixels.
MAX_SIDE = 2048
MAX_STEPS = 200
MAX_VARIANTS = 64
MAX_TEXT = 4000

# Control characters (C0 and C1) and lone UTF-16 surrogates. Controls can
# hide or rewrite text in terminals and logs; a lone surrogate is not valid
# Unicode, so encoding it for the catalog or a file path fails. Free text may
# keep newlines and tabs; one-line values (names, paths, model ids) may not.
_CONTROL_OR_SURROGATE = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def _reject_characters(value: str, allowed: str) -> str:
    for match in _CONTROL_OR_SURROGATE.finditer(value):
        char = match.group()
        if char in allowed:
            continue
        kind = "a lone surrogate" if "\ud800" <= char <= "\udfff" else "the control character"
        keep = "only newline and tab are allowed" if allowed else "it must be one line"
        raise ValueError(
            f"contains {kind} U+{ord(char):04X} at character {match.start()}; remove it ({keep})"
        )
    return value


def _check_text(value: str) -> str:
    return _reject_characters(value, "\n\t")


def _check_line(value: str) -> str:
    return _reject_characters(value, "")


Identifier = Annotated[str, Field(pattern=r"^[a-z0-9_-]+$", min_length=1, max_length=64)]
Text = Annotated[str, Field(max_length=MAX_TEXT), AfterValidator(_check_text)]
# A name, file path or model id: one line of text.
Line = Annotated[str, AfterValidator(_check_line)]


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
    references: list[Annotated[Line, Field(min_length=1, max_length=1024)]] = Field(min_length=1)
    # Per-character override of the identity threshold (score units of the scorer).
    threshold: float | None = Field(default=None, ge=0.0, le=1.0)


class Style(_Strict):
    """A style reference image and/or a description applied to every frame."""

    reference: Line | None = Field(default=None, min_length=1, max_length=1024)
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


class BflOptions(_Strict):
    """Request fields of the hosted `bfl` backend (FLUX.1 Kontext [pro] and [max]).

    The request seed is the frame's seed, so it is not set here. Other
    backends ignore this block.
    """

    # "W:H" between 21:9 and 9:21. None: derived from the frame's width:height.
    aspect_ratio: str | None = Field(default=None, pattern=r"^[1-9][0-9]{0,2}:[1-9][0-9]{0,2}$")
    # Format the provider encodes; the backend stores every frame as PNG either way.
    output_format: Literal["png", "jpeg"] = "png"
    # 0 is the strictest moderation, 6 the most permissive. None: the provider's default.
    safety_tolerance: int | None = Field(default=None, ge=0, le=6)
    # The provider rewrites the prompt when True, so results are less reproducible.
    prompt_upsampling: bool = False

    @field_validator("aspect_ratio")
    @classmethod
    def _check_aspect_ratio(cls, value: str | None) -> str | None:
        if value is None:
            return value
        width, height = (int(part) for part in value.split(":"))
        if not 9 / 21 <= width / height <= 21 / 9:
            raise ValueError(f"must be between 21:9 and 9:21, got {value!r}")
        return value


class Defaults(_Strict):
    """Storyboard-wide generation settings."""

    backend: Backend = Backend.TINY
    model: Line = Field(
        default="black-forest-labs/FLUX.1-Kontext-dev", min_length=1, max_length=1024
    )
    width: int = 512
    height: int = 512
    steps: int = Field(default=28, ge=1, le=MAX_STEPS)
    guidance: float = Field(default=2.5, ge=0.0, le=30.0)
    seed: int = Field(default=1234, ge=0, lt=2**63)
    variants: int = Field(default=1, ge=1, le=MAX_VARIANTS)
    bfl: BflOptions = BflOptions()

    _sizes = field_validator("width", "height")(_check_size)


class Consistency(_Strict):
    """The identity gate: which scorer, which threshold, how many attempts."""

    scorer: ScorerName = ScorerName.DLIB
    # None: the scorer's default threshold.
    threshold: float | None = Field(default=None, ge=0.0, le=1.0)
    max_attempts: int = Field(default=4, ge=1, le=32)
    # Local folder of the model for the onnx-face and embedding scorers.
    model: Line | None = Field(default=None, max_length=1024)


# Matrix: named axes whose values fill `{axis}` placeholders in prompts and
# edits. Every combination of a scene's axes is planned as its own frames.

MAX_AXES = 8
MAX_AXIS_VALUES = 1000
# Frames one matrix storyboard may plan. Every frame is a catalog row and a
# runner keeps a small record per frame of the run in memory.
MAX_MATRIX_FRAMES = 100_000
# A matrix frame's scene label is `scene.value1.value2`; the catalog stores
# scene labels in 255-character columns.
MAX_SCENE_LABEL = 255
PLACEHOLDER_FIELDS = ("id", "text")
# `{{` and `}}` are literal braces; `{...}` is a placeholder; a lone brace is an error.
_TEMPLATE_TOKEN = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")
_PLACEHOLDER = re.compile(r"^([a-z0-9_-]+)(?:\.([a-z]+))?$")

# A parsed template: literal text, and (axis, field) pairs for placeholders.
TemplatePart = str | tuple[str, str]


def _admit_shorthand(schema: dict[str, Any]) -> None:
    # The JSON Schema of a matrix value also admits the plain-string and number shorthand.
    value_object = {k: v for k, v in schema.items() if k not in ("title", "description")}
    for key in value_object:
        del schema[key]
    # `text` may be left out of the object: it defaults to the id.
    value_object["required"] = ["id"]
    schema["anyOf"] = [value_object, {"type": "string", "minLength": 1}, {"type": "number"}]


class MatrixValue(_Strict):
    """One value of a matrix axis: `id` labels its frames, `text` fills its placeholders.

    A plain string (or number) is accepted as shorthand: its text is the
    string and its id is the string lower-cased, with every run of other
    characters than a-z, 0-9, `_` and `-` replaced by `-`.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, json_schema_extra=_admit_shorthand)

    id: Identifier
    text: Text

    @model_validator(mode="before")
    @classmethod
    def _from_shorthand(cls, data: object) -> object:
        if isinstance(data, int | float) and not isinstance(data, bool):
            data = str(data)
        if isinstance(data, str):
            slug = re.sub(r"[^a-z0-9_-]+", "-", data.lower()).strip("-")[:64]
            if not slug:
                raise ValueError(
                    f"value {data!r} has no letter or digit to make an id from; "
                    "write it as {id: ..., text: ...}"
                )
            return {"id": slug, "text": data}
        if isinstance(data, dict) and "text" not in data and "id" in data:
            return {**data, "text": data["id"]}
        return data


AxisValues = Annotated[list[MatrixValue], Field(min_length=1, max_length=MAX_AXIS_VALUES)]


def parse_template(text: str) -> list[TemplatePart]:
    """Split a matrix prompt into literal text and (axis, field) placeholders.

    `{market}` is shorthand for `{market.text}`. Raises ValueError naming a
    stray brace or a malformed placeholder.
    """
    parts: list[TemplatePart] = []
    literal: list[str] = []
    position = 0
    for match in _TEMPLATE_TOKEN.finditer(text):
        literal.append(text[position : match.start()])
        position = match.end()
        token = match.group(0)
        if token in ("{{", "}}"):
            literal.append(token[0])
            continue
        if match.group(1) is None:
            raise ValueError(
                f"unmatched {token!r} at character {match.start()}; "
                f"write {token * 2!r} for a literal brace"
            )
        placeholder = _PLACEHOLDER.match(match.group(1))
        if placeholder is None or (placeholder.group(2) or "text") not in PLACEHOLDER_FIELDS:
            raise ValueError(
                f"invalid placeholder {token!r}; write {{axis}}, {{axis.id}} or {{axis.text}}"
            )
        if literal:
            parts.append("".join(literal))
            literal = []
        parts.append((placeholder.group(1), placeholder.group(2) or "text"))
    literal.append(text[position:])
    if any(literal):
        parts.append("".join(literal))
    return parts


class Scene(GenerationParams):
    """One scene: a prompt, the characters in it, optional overrides and edits."""

    id: Identifier
    prompt: Text = Field(min_length=1)
    characters: list[Identifier] = Field(default_factory=list)
    # Edit instructions applied in order; step k edits the accepted image of step k-1.
    edits: list[Annotated[Text, Field(min_length=1)]] = Field(default_factory=list, max_length=32)
    # Matrix axes this scene is planned over. None: every axis; []: planned once.
    axes: list[Identifier] | None = Field(default=None, max_length=MAX_AXES)


class Storyboard(_Strict):
    """A whole storyboard spec as parsed from YAML or JSON."""

    name: Annotated[Line, Field(min_length=1, max_length=200)]
    characters: list[Character] = Field(min_length=1, max_length=64)
    style: Style | None = None
    defaults: Defaults = Defaults()
    consistency: Consistency = Consistency()
    scenes: list[Scene] = Field(min_length=1, max_length=10_000)
    # Axis name -> values, in the order combinations are planned. None: no matrix.
    matrix: dict[Identifier, AxisValues] | None = Field(
        default=None, min_length=1, max_length=MAX_AXES
    )

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

    @model_validator(mode="after")
    def _check_frame_count(self) -> Storyboard:
        # Variants and edit steps multiply scenes into frames, and each frame
        # is a catalog row, so a storyboard without a matrix has the same
        # budget as one with a matrix (whose frames `_check_matrix` counts).
        if self.matrix is not None:
            return self
        total = sum(
            (scene.variants or self.defaults.variants) * (len(scene.edits) + 1)
            for scene in self.scenes
        )
        if total > MAX_MATRIX_FRAMES:
            raise ValueError(
                f"scenes: the storyboard plans {total} frames, more than {MAX_MATRIX_FRAMES}; "
                "split it into several storyboards or use fewer variants and edits"
            )
        return self

    def scene_axes(self, scene: Scene) -> list[str]:
        """Return the matrix axes a scene is planned over, in matrix order of declaration."""
        if self.matrix is None:
            return []
        return list(self.matrix) if scene.axes is None else list(scene.axes)

    @model_validator(mode="after")
    def _check_matrix(self) -> Storyboard:
        if self.matrix is None:
            for i, scene in enumerate(self.scenes):
                if scene.axes is not None:
                    raise ValueError(
                        f"scenes[{i}].axes: the storyboard has no matrix; "
                        "declare the axes under `matrix` or remove `axes`"
                    )
            return self
        for axis, values in self.matrix.items():
            seen: dict[str, int] = {}
            for j, value in enumerate(values):
                if value.id in seen:
                    raise ValueError(
                        f"matrix.{axis}[{j}].id: duplicate value id {value.id!r} "
                        f"(also matrix.{axis}[{seen[value.id]}]); give each value its own id"
                    )
                seen[value.id] = j
        total = sum(self._check_matrix_scene(i, scene) for i, scene in enumerate(self.scenes))
        if total > MAX_MATRIX_FRAMES:
            raise ValueError(
                f"matrix: the storyboard plans {total} frames, more than {MAX_MATRIX_FRAMES}; "
                "split it into several storyboards or use fewer axis values"
            )
        return self

    def _check_matrix_scene(self, i: int, scene: Scene) -> int:
        """Check one scene's axes and placeholders; return how many frames it plans."""
        assert self.matrix is not None
        axes = self.scene_axes(scene)
        for j, axis in enumerate(axes):
            if axis not in self.matrix:
                raise ValueError(
                    f"scenes[{i}].axes[{j}]: unknown axis {axis!r}; "
                    f"matrix axes are: {', '.join(self.matrix)}"
                )
            if axes.index(axis) != j:
                raise ValueError(
                    f"scenes[{i}].axes[{j}]: axis {axis!r} is listed twice; list it once"
                )

        texts = [("prompt", scene.prompt)] + [(f"edits[{k}]", e) for k, e in enumerate(scene.edits)]
        for where, text in texts:
            try:
                parts = parse_template(text)
            except ValueError as exc:
                raise ValueError(f"scenes[{i}].{where}: {exc}") from None
            for part in parts:
                if isinstance(part, str) or part[0] in axes:
                    continue
                axis = part[0]
                if axis not in self.matrix:
                    raise ValueError(
                        f"scenes[{i}].{where}: unknown placeholder {{{axis}}}; "
                        f"matrix axes are: {', '.join(self.matrix)}"
                    )
                raise ValueError(
                    f"scenes[{i}].{where}: placeholder {{{axis}}} uses an axis this scene is "
                    f"not planned over; add {axis!r} to scenes[{i}].axes"
                )

        label = len(scene.id) + sum(1 + max(len(v.id) for v in self.matrix[a]) for a in axes)
        if label > MAX_SCENE_LABEL:
            raise ValueError(
                f"scenes[{i}].id: scene labels of {scene.id!r} reach {label} characters, more "
                f"than {MAX_SCENE_LABEL}; shorten the scene id or the matrix value ids"
            )
        combinations = 1
        for axis in axes:
            combinations *= len(self.matrix[axis])
        variants = scene.variants or self.defaults.variants
        return combinations * variants * (len(scene.edits) + 1)
