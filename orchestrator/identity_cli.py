"""`onmodel identity`: score one image against reference photos, calibrate thresholds.

User errors (a missing file, a file that is not an image, a model that does
not load, an invalid spec) exit with code 2 and one line on stderr. A
successful score exits 0 whatever the verdict.
"""

from __future__ import annotations

import hashlib
import io
import logging
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from PIL import Image, ImageOps, UnidentifiedImageError

from orchestrator import output
from schemas.errors import OnModelError
from schemas.records import FrameScore, ReferenceImage

logger = logging.getLogger(__name__)

app = typer.Typer(
    help="Score images against reference photos and calibrate identity thresholds.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

# The character id under which `score` passes its references to the worker.
CHARACTER_ID = "character"


def _fail(message: str) -> NoReturn:
    output.error(message)
    raise typer.Exit(2)


def _read_image(path: Path, label: str) -> bytes:
    """Read an image file and return it as PNG bytes, rotated upright per its EXIF orientation."""
    if not path.is_file():
        _fail(f"{label}: file not found: {str(path)!r}")
    try:
        with Image.open(path) as image:
            upright = ImageOps.exif_transpose(image).convert("RGB")
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as error:
        _fail(f"{label}: {str(path)!r} is not a readable image ({error}); pass PNG or JPEG")
    buffer = io.BytesIO()
    upright.save(buffer, format="PNG")
    return buffer.getvalue()


def _reference(path: Path, index: int) -> ReferenceImage:
    png = _read_image(path, f"--reference #{index + 1}")
    return ReferenceImage(sha256=hashlib.sha256(png).hexdigest(), png=png)


def _load_worker(scorer: str, model: str | None) -> Any:
    # Imported here: loading the scorer pulls in dlib (or torch), which other
    # `onmodel` commands do not need.
    from actors.identity import IdentityWorker

    try:
        return IdentityWorker(scorer=scorer, model=model)
    except OnModelError as error:
        _fail(str(error))


@app.command()
def score(
    image: Annotated[Path, typer.Argument(help="Image to check, PNG or JPEG.")],
    reference: Annotated[
        list[Path] | None,
        typer.Option(
            "--reference", "-r", help="Reference photo of the character; repeat for several."
        ),
    ] = None,
    scorer: Annotated[
        str, typer.Option(help="Identity scorer: dlib, onnx-face or embedding.")
    ] = "dlib",
    model: Annotated[
        str | None,
        typer.Option(help="Local model file or folder, for the onnx-face and embedding scorers."),
    ] = None,
    threshold: Annotated[
        float | None,
        typer.Option(help="Similarity in [0, 1] a face must reach; default: the scorer's own."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Check whether IMAGE shows the character of the reference photos."""
    # 1. Inputs, checked before the model loads so that mistakes fail fast.
    if not reference:
        _fail("--reference: give at least one reference photo, e.g. -r ana.jpg")
    if threshold is not None and not 0.0 <= threshold <= 1.0:
        _fail(f"--threshold: {threshold} is outside [0, 1]; similarity thresholds are fractions")
    references = [_reference(path, index) for index, path in enumerate(reference)]
    frame = _read_image(image, "IMAGE")

    # 2. Score.
    worker = _load_worker(scorer, model)
    thresholds = {} if threshold is None else {CHARACTER_ID: threshold}
    result = worker.score(frame, {CHARACTER_ID: references}, thresholds)

    # 3. Report.
    if as_json:
        output.json_line(_score_json(result))
    else:
        _print_score(result)


def _score_json(result: FrameScore) -> dict[str, Any]:
    data = result.model_dump(mode="json")
    data["score"] = result.score
    return data


def _print_score(result: FrameScore) -> None:
    character = result.characters[0]
    output.line(f"verdict: {result.verdict.value}")
    if character.score is not None:
        output.line(
            f"score: {character.score:.3f} (threshold {character.threshold:.3f}, "
            f"scorer {result.scorer})"
        )
    else:
        output.line(f"score: - (threshold {character.threshold:.3f}, scorer {result.scorer})")
    output.line(f"faces found: {result.faces_found}")
    if character.box is not None:
        output.line(f"face box: {character.box}")
    if result.detail:
        output.line(f"detail: {result.detail}")
    output.line(f"seconds: {result.seconds:.2f}")


@app.command()
def calibrate(
    spec: Annotated[Path, typer.Argument(help="Storyboard spec, YAML or JSON.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Measure how alike each character's references are and suggest a threshold."""
    from actors.identity.calibration import calibrate as run_calibration
    from orchestrator.spec import load_spec

    # 1. The spec and its scorer settings.
    try:
        loaded = load_spec(spec)
    except OnModelError as error:
        _fail(str(error))
    consistency = loaded.storyboard.consistency
    if consistency.scorer.value == "none":
        _fail("consistency.scorer: 'none' turns the identity gate off; set a scorer to calibrate")
    worker = _load_worker(consistency.scorer.value, consistency.model)

    # 2. Thresholds in force: the character's own, else the storyboard's, else the default.
    thresholds: dict[str, float] = {}
    for character in loaded.storyboard.characters:
        value = character.threshold if character.threshold is not None else consistency.threshold
        if value is not None:
            thresholds[character.id] = value

    # 3. Measure and report.
    result = run_calibration(worker, loaded.references, thresholds)
    if as_json:
        output.json_line(_calibration_json(result))
        return
    _print_calibration(result)


def _calibration_json(result: Any) -> dict[str, Any]:
    def described(measured: Any) -> dict[str, Any] | None:
        if measured is None:
            return None
        return {"low": measured.low, "high": measured.high, "pairs": measured.pairs}

    return {
        "scorer": result.scorer,
        "default_threshold": result.default_threshold,
        "suggested_threshold": result.suggested_threshold,
        "basis": result.basis,
        "within": {key: described(value) for key, value in result.within.items()},
        "between": [
            {"characters": list(key), **(described(value) or {})}
            for key, value in result.between.items()
        ],
        "unusable": result.unusable,
        "warnings": result.warnings,
    }


def _print_calibration(result: Any) -> None:
    output.line(f"scorer: {result.scorer} (default threshold {result.default_threshold:.3f})")
    output.line("same character (similarity of its references to each other):")
    for character_id, measured in result.within.items():
        if measured is None:
            output.line(f"  {character_id}: fewer than two usable references")
        else:
            output.line(
                f"  {character_id}: {measured.low:.3f} to {measured.high:.3f} "
                f"({measured.pairs} pair(s))"
            )
    if result.between:
        output.line("different characters (similarity across their references):")
        for (first, second), measured in result.between.items():
            output.line(f"  {first} / {second}: {measured.low:.3f} to {measured.high:.3f}")
    output.line(f"suggested threshold: {result.suggested_threshold:.3f}, {result.basis}")
    for warning in result.warnings:
        output.line(f"warning: {warning}")
