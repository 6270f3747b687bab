"""Real face photos for the identity tests, and images made from them."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

from PIL import Image

from schemas.records import ReferenceImage

FACES = Path(__file__).resolve().parents[2] / "fixtures" / "faces"

# Pairs of photos of one person taken years apart.
SAME_PERSON = [
    ("ardern_2018.jpg", "ardern_2022.jpg"),
    ("macron_2014.jpg", "macron_2025.jpg"),
]
# Every photo of a person; two photos whose `person` differs make a different-person pair.
PEOPLE = [
    "ardern_2018.jpg",
    "ardern_2022.jpg",
    "macron_2014.jpg",
    "macron_2025.jpg",
    "obama_senate.jpg",
    "sunak.jpg",
    "collins_astronaut.png",
]
NO_FACE = ["flower.jpg", "cat_chelsea.png"]


def person(name: str) -> str:
    return name.split("_")[0].split(".")[0]


def photo_bytes(name: str) -> bytes:
    return (FACES / name).read_bytes()


def reference(name: str) -> ReferenceImage:
    return as_reference(photo_bytes(name))


def as_reference(data: bytes) -> ReferenceImage:
    return ReferenceImage(sha256=hashlib.sha256(data).hexdigest(), png=data)


def encode(image: Image.Image, fmt: str = "PNG", **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def side_by_side(left: str, right: str, height: int = 480) -> tuple[bytes, int]:
    """Compose two photos on one canvas; returns PNG bytes and the x where `right` starts."""
    images = []
    for name in (left, right):
        with Image.open(FACES / name) as image:
            rgb = image.convert("RGB")
        width = round(rgb.width * height / rgb.height)
        images.append(rgb.resize((width, height), Image.Resampling.LANCZOS))
    canvas = Image.new("RGB", (images[0].width + images[1].width, height), (128, 128, 128))
    canvas.paste(images[0], (0, 0))
    canvas.paste(images[1], (images[0].width, 0))
    return encode(canvas), images[0].width
