"""The copy guard: a reference pasted, resized or recompressed is a copy, a new photo is not."""

from __future__ import annotations

import io
import itertools

import numpy as np
import pytest
from identity_photos import FACES, PEOPLE, as_reference, encode, photo_bytes, reference
from PIL import Image

from actors.identity import IdentityWorker, copy_guard
from schemas.records import Verdict


def resized_jpeg(name: str, scale: float, quality: int) -> bytes:
    with Image.open(FACES / name) as image:
        rgb = image.convert("RGB")
    size = (round(rgb.width * scale), round(rgb.height * scale))
    return encode(rgb.resize(size, Image.Resampling.LANCZOS), "JPEG", quality=quality)


def pasted_on_canvas(name: str) -> bytes:
    with Image.open(FACES / name) as image:
        rgb = image.convert("RGB")
    rgb.thumbnail((600, 600))
    canvas = Image.new("RGB", (1024, 1024), (40, 120, 60))
    canvas.paste(rgb, (300, 200))
    return encode(canvas, "JPEG", quality=85)


def cropped(name: str) -> bytes:
    with Image.open(FACES / name) as image:
        rgb = image.convert("RGB")
    width, height = rgb.size
    box = (width // 20, height // 20, width - width // 20, height - height // 20)
    return encode(rgb.crop(box), "JPEG", quality=80)


COPIES = {
    "resized 0.6x, JPEG 60": lambda name: resized_jpeg(name, 0.6, 60),
    "resized 1.5x, JPEG 75": lambda name: resized_jpeg(name, 1.5, 75),
    "JPEG 30": lambda name: resized_jpeg(name, 1.0, 30),
    "pasted on a canvas": pasted_on_canvas,
    "cropped 5% per side": cropped,
}


# The smallest photo (macron_2014, 204x244), one with a false face detection
# (collins_astronaut) and a typical portrait; the measurement test covers all.
COPY_SUBJECTS = ["macron_2014.jpg", "collins_astronaut.png", "ardern_2018.jpg"]


@pytest.mark.parametrize("name", COPY_SUBJECTS)
@pytest.mark.parametrize("kind", sorted(COPIES))
def test_copy_of_reference_is_flagged(dlib_worker: IdentityWorker, name: str, kind: str) -> None:
    frame = COPIES[kind](name)

    result = dlib_worker.score(frame, {"c": [reference(name)]}, {})

    assert result.verdict == Verdict.COPY, result.detail
    assert result.characters[0].verdict == Verdict.COPY
    assert "copies reference" in result.detail


def test_copy_of_other_characters_reference_is_flagged(dlib_worker: IdentityWorker) -> None:
    characters = {"ardern": [reference("ardern_2018.jpg")], "sunak": [reference("sunak.jpg")]}

    result = dlib_worker.score(resized_jpeg("sunak.jpg", 0.8, 70), characters, {})

    assert result.verdict == Verdict.COPY, result.detail


def test_fixture_fingerprints_separate_copies_from_new_photos(
    dlib_worker: IdentityWorker,
) -> None:
    """The measurement behind the copy-guard thresholds, rerun on every test run."""
    originals = {name: dlib_worker.references([reference(name)])[0] for name in PEOPLE}

    different_faces, different_frames = [], []
    for first, second in itertools.combinations(PEOPLE, 2):
        a, b = originals[first], originals[second]
        assert a.subject is not None and b.subject is not None
        assert a.subject.fingerprint is not None and b.subject.fingerprint is not None
        different_faces.append(copy_guard.correlation(a.subject.fingerprint, b.subject.fingerprint))
        different_frames.append(copy_guard.correlation(a.fingerprint, b.fingerprint))

    copy_faces = []
    for name, make in itertools.product(PEOPLE, COPIES.values()):
        copy = dlib_worker.references([as_reference(make(name))])[0]
        original = originals[name]
        assert copy.subject is not None and original.subject is not None
        assert copy.subject.fingerprint is not None and original.subject.fingerprint is not None
        copy_faces.append(
            copy_guard.correlation(copy.subject.fingerprint, original.subject.fingerprint)
        )

    print(
        f"face correlation: different photos max {max(different_faces):.3f}, "
        f"copies min {min(copy_faces):.3f}; whole frames of different photos max "
        f"{max(different_frames):.3f}"
    )
    assert max(different_faces) < copy_guard.FACE_THRESHOLD - 0.2
    assert min(copy_faces) > copy_guard.FACE_THRESHOLD + 0.03
    assert max(different_frames) < copy_guard.FRAME_THRESHOLD - 0.2


def test_fingerprint_of_flat_image_correlates_zero() -> None:
    flat = Image.new("RGB", (64, 64), (90, 90, 90))
    textured = Image.open(io.BytesIO(photo_bytes("sunak.jpg"))).convert("RGB")

    first = copy_guard.fingerprint(np.asarray(flat), copy_guard.FRAME_SIDE)
    second = copy_guard.fingerprint(np.asarray(textured), copy_guard.FRAME_SIDE)

    assert copy_guard.correlation(first, second) == 0.0
