"""The conditioning canvas and the prompt that binds characters to their places."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from actors.compose import BACKGROUND, bind_prompt, compose_canvas

REPO_ROOT = Path(__file__).resolve().parents[2]
RED = (220, 30, 30)
BLUE = (30, 30, 220)
GREEN = (30, 200, 30)


def encode(image: Image.Image, image_format: str = "PNG", **save_options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=image_format, **save_options)
    return buffer.getvalue()


def solid(color: tuple[int, int, int], width: int, height: int) -> bytes:
    return encode(Image.new("RGB", (width, height), color))


def decode(png: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG"
    return image.convert("RGB")


def close_to(actual: tuple[int, ...], expected: tuple[int, ...], tolerance: int = 6) -> bool:
    return all(abs(a - e) <= tolerance for a, e in zip(actual, expected, strict=True))


# --- layout -------------------------------------------------------------------


def test_canvas_has_exact_size() -> None:
    canvas = decode(compose_canvas([solid(RED, 37, 91)], 144, 80))

    assert canvas.size == (144, 80)


def test_two_references_fill_left_and_right_halves() -> None:
    canvas = decode(compose_canvas([solid(RED, 40, 80), solid(BLUE, 80, 40)], 128, 64))

    assert close_to(canvas.getpixel((32, 32)), RED)
    assert close_to(canvas.getpixel((96, 32)), BLUE)
    # The blue reference is wide, so it is letterboxed with background above it.
    assert canvas.getpixel((96, 2)) == BACKGROUND
    # The red reference is tall, so background shows at the sides of its column.
    assert canvas.getpixel((2, 32)) == BACKGROUND


def test_three_references_keep_scene_order() -> None:
    references = [solid(RED, 50, 50), solid(GREEN, 50, 50), solid(BLUE, 50, 50)]
    canvas = decode(compose_canvas(references, 192, 64))

    assert close_to(canvas.getpixel((32, 32)), RED)
    assert close_to(canvas.getpixel((96, 32)), GREEN)
    assert close_to(canvas.getpixel((160, 32)), BLUE)


def test_references_are_separated_by_a_gutter() -> None:
    canvas = decode(compose_canvas([solid(RED, 100, 100), solid(BLUE, 100, 100)], 200, 400))

    # A 200-pixel canvas has a 4-pixel gutter, so the columns are x 0-97 and 102-199.
    assert close_to(canvas.getpixel((96, 200)), RED)
    assert canvas.getpixel((99, 200)) == BACKGROUND
    assert canvas.getpixel((100, 200)) == BACKGROUND
    assert close_to(canvas.getpixel((103, 200)), BLUE)


def test_style_takes_a_strip_at_the_right() -> None:
    canvas = decode(compose_canvas([solid(RED, 64, 64)], 160, 64, style=solid(GREEN, 32, 64)))

    # The strip is one fifth of the width: x from 128 to 160.
    assert close_to(canvas.getpixel((144, 32)), GREEN)
    assert close_to(canvas.getpixel((60, 32)), RED)
    assert not close_to(canvas.getpixel((120, 32)), GREEN)


def test_style_alone_fills_the_canvas() -> None:
    canvas = decode(compose_canvas([], 64, 64, style=solid(GREEN, 64, 64)))

    assert close_to(canvas.getpixel((2, 32)), GREEN)
    assert close_to(canvas.getpixel((62, 32)), GREEN)


def test_exif_orientation_is_applied() -> None:
    # The image is stored 40x20 with red on the left. EXIF orientation 6 means
    # "rotate 90 degrees clockwise to display", which puts red at the top.
    image = Image.new("RGB", (40, 20), BLUE)
    image.paste(RED, (0, 0, 20, 20))
    exif = Image.Exif()
    exif[0x0112] = 6
    canvas = decode(compose_canvas([encode(image, "JPEG", exif=exif, quality=95)], 64, 64))

    assert close_to(canvas.getpixel((32, 8)), RED, tolerance=30)
    assert close_to(canvas.getpixel((32, 56)), BLUE, tolerance=30)


# --- unusual image modes -----------------------------------------------------------


def _palette_image() -> Image.Image:
    return Image.new("RGB", (20, 20), RED).convert("P", palette=Image.Palette.ADAPTIVE)


@pytest.mark.parametrize(
    ("name", "data", "expected"),
    [
        ("cmyk-jpeg", encode(Image.new("CMYK", (20, 20), (0, 255, 255, 0)), "JPEG"), (255, 0, 0)),
        ("palette", encode(_palette_image()), RED),
        ("grey", encode(Image.new("L", (20, 20), 90)), (90, 90, 90)),
        ("grey-alpha", encode(Image.new("LA", (20, 20), (200, 255))), (200, 200, 200)),
        ("bilevel", encode(Image.new("1", (20, 20), 1)), (255, 255, 255)),
        ("16-bit-grey", encode(Image.new("I;16", (20, 20), 32768)), (128, 128, 128)),
        ("rgba", encode(Image.new("RGBA", (20, 20), (*BLUE, 255))), BLUE),
        ("webp", encode(Image.new("RGB", (20, 20), GREEN), "WEBP", lossless=True), GREEN),
    ],
)
def test_unusual_modes_convert_to_rgb(
    name: str, data: bytes, expected: tuple[int, int, int]
) -> None:
    canvas = decode(compose_canvas([data], 32, 32))

    assert canvas.size == (32, 32)
    assert close_to(canvas.getpixel((16, 16)), expected, tolerance=8), name


def test_transparent_areas_show_background() -> None:
    clear = encode(Image.new("RGBA", (20, 20), (*RED, 0)))
    palette = Image.new("P", (20, 20), 0)
    palette.putpalette([*RED, *BLUE])
    palette_clear = encode(palette, transparency=0)

    for data in (clear, palette_clear):
        assert decode(compose_canvas([data], 32, 32)).getpixel((16, 16)) == BACKGROUND


# --- invalid input --------------------------------------------------------------


def test_undecodable_reference_names_its_index() -> None:
    with pytest.raises(ValueError, match=r"references\[1\]: not a decodable image"):
        compose_canvas([solid(RED, 8, 8), b"not an image"], 64, 64)


def test_undecodable_style_is_named() -> None:
    with pytest.raises(ValueError, match=r"style: not a decodable image"):
        compose_canvas([solid(RED, 8, 8)], 64, 64, style=b"\x89PNG broken")


def test_nothing_to_compose_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"references: empty and no style image"):
        compose_canvas([], 64, 64)


@pytest.mark.parametrize(("width", "height"), [(0, 64), (64, -16), (64.0, 64)])
def test_invalid_canvas_size_is_rejected(width: object, height: object) -> None:
    with pytest.raises(ValueError, match=r"must be a positive integer number of pixels"):
        compose_canvas([solid(RED, 8, 8)], width, height)  # type: ignore[arg-type]


def test_too_many_references_for_width_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"references: 5 images do not fit side by side"):
        compose_canvas([solid(RED, 8, 8)] * 5, 4, 64)


def test_importing_compose_does_not_import_torch() -> None:
    code = "import sys, actors.compose; sys.exit('torch' in sys.modules)"

    assert subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT).returncode == 0


# --- bind_prompt --------------------------------------------------------------------


def test_bind_prompt_without_names_is_unchanged() -> None:
    assert bind_prompt("A quiet street at dawn.", []) == "A quiet street at dawn."


def test_bind_prompt_one_name() -> None:
    assert bind_prompt("Ana rides a bike.", ["Ana"]) == (
        "Keep Ana from the reference image exactly the same person. Ana rides a bike."
    )


def test_bind_prompt_two_names() -> None:
    assert bind_prompt("They shake hands.", ["Ana", "Leo"]) == (
        "The reference image shows Ana on the left and Leo on the right; "
        "keep each of them the same person. They shake hands."
    )


def test_bind_prompt_three_names() -> None:
    assert bind_prompt("They dine.", ["Ana", "Leo", "Mia"]) == (
        "The reference image shows Ana on the left, Leo in the middle and Mia on the right; "
        "keep each of them the same person. They dine."
    )


def test_bind_prompt_four_names_uses_positions() -> None:
    assert bind_prompt("A band photo.", ["Ana", "Leo", "Mia", "Zoe"]) == (
        "The reference image shows Ana at position 1 from the left, "
        "Leo at position 2 from the left, Mia at position 3 from the left "
        "and Zoe at position 4 from the left; keep each of them the same person. A band photo."
    )


def test_bind_prompt_rejects_blank_name() -> None:
    with pytest.raises(ValueError, match=r"names\[1\]: empty name"):
        bind_prompt("x", ["Ana", "  "])
