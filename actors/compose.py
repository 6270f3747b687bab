"""The conditioning canvas: several references composed onto one image.

FLUX.1 Kontext takes a single input image (diffusers treats a list of images
as a batch), so a frame with several characters gets one canvas that shows
all their references, and the prompt names the character in each column.

Canvas layout, `width` x `height` pixels on a neutral grey background:

    +--------+--------+--------+---+
    | ref 1  | ref 2  | ref 3  | s |
    |        |        |        | t |
    |        |        |        | y |
    |        |        |        | l |
    |        |        |        | e |
    +--------+--------+--------+---+

- References take equal-width columns, left to right in scene order.
- A style image, if given, takes a strip at the right edge, one fifth of
  the width; the references share the rest. Without references the style
  image takes the whole canvas.
- Columns are separated by a gutter of width // 50 pixels of background.
- Each image is scaled to fit its column with its aspect ratio kept
  (letterboxed) and centered. EXIF orientation is applied first, and
  transparent areas show the background.

Pillow only, no torch, so that the orchestrator can import this module.
"""

from __future__ import annotations

import functools
import io

from PIL import Image, ImageOps, UnidentifiedImageError

BACKGROUND = (128, 128, 128)
# Fraction of the canvas width that the style strip takes.
STYLE_STRIP_FRACTION = 0.2
# The gutter between columns, as a divisor of the canvas width.
GUTTER_DIVISOR = 50

_SIXTEEN_BIT_MODES = {"I", "I;16", "I;16B", "I;16L", "I;16N"}


def decode_rgb(
    data: bytes, field: str, background: tuple[int, int, int] = BACKGROUND
) -> Image.Image:
    """Decode image bytes into an upright RGB image, transparent areas filled with `background`.

    Raises ValueError naming `field` when the bytes are not a decodable image.
    """
    try:
        image: Image.Image = Image.open(io.BytesIO(data))
        image.load()
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise ValueError(
            f"{field}: not a decodable image ({len(data)} bytes: {exc}); "
            "pass PNG, JPEG or WebP bytes"
        ) from exc

    image = ImageOps.exif_transpose(image)

    if image.mode in _SIXTEEN_BIT_MODES:
        # Pillow's RGB conversion clips 16-bit values at 255 instead of scaling
        # them, which turns most of a 16-bit image white.
        image = image.convert("I").point(lambda value: value * (1 / 256)).convert("L")

    has_alpha = image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        image.mode == "P" and "transparency" in image.info
    )
    if not has_alpha:
        return image.convert("RGB")

    rgba = image.convert("RGBA")
    flattened = Image.new("RGB", rgba.size, background)
    flattened.paste(rgba, mask=rgba.getchannel("A"))
    return flattened


def _letterbox(image: Image.Image, box_width: int, box_height: int) -> tuple[Image.Image, int, int]:
    """Scale `image` to fit the box, aspect ratio kept; return it and its offset in the box."""
    scale = min(box_width / image.width, box_height / image.height)
    fitted_width = max(1, min(box_width, round(image.width * scale)))
    fitted_height = max(1, min(box_height, round(image.height * scale)))
    fitted = image.resize((fitted_width, fitted_height), Image.Resampling.LANCZOS)
    return fitted, (box_width - fitted_width) // 2, (box_height - fitted_height) // 2


def _column_bounds(left: int, right: int, count: int, gutter: int) -> list[tuple[int, int]]:
    """Split [left, right) into `count` equal columns with `gutter` pixels between them."""
    usable = right - left - gutter * (count - 1)
    bounds = []
    for index in range(count):
        start = left + index * gutter + (usable * index) // count
        end = left + index * gutter + (usable * (index + 1)) // count
        bounds.append((start, end))
    return bounds


def _check_size(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name}: must be a positive integer number of pixels, got {value!r}")


def compose_canvas(
    references: list[bytes], width: int, height: int, style: bytes | None = None
) -> bytes:
    """Compose the references (and the style image) onto one canvas; return it as PNG bytes.

    The module docstring describes the layout. Raises ValueError when there
    is nothing to compose, a size is invalid, the columns would be narrower
    than one pixel, or an image does not decode. Results are cached, because
    a run composes the same characters at the same size for many frames.
    """
    return _compose_cached(tuple(references), width, height, style)


# Each entry is one PNG canvas (tens of KB to a few MB), so 64 bound the memory.
@functools.lru_cache(maxsize=64)
def _compose_cached(
    references: tuple[bytes, ...], width: int, height: int, style: bytes | None
) -> bytes:
    _check_size("width", width)
    _check_size("height", height)
    if not references and style is None:
        raise ValueError(
            "references: empty and no style image; pass at least one image, "
            "or send no conditioning image at all"
        )

    canvas = Image.new("RGB", (width, height), BACKGROUND)
    gutter = width // GUTTER_DIVISOR

    # 1. The style strip, or the whole canvas for a style image alone.
    references_right = width
    if style is not None:
        style_image = decode_rgb(style, "style")
        if references:
            strip_width = max(1, round(width * STYLE_STRIP_FRACTION))
            references_right = width - strip_width - gutter
            strip_left = width - strip_width
        else:
            strip_width, strip_left = width, 0
        fitted, dx, dy = _letterbox(style_image, strip_width, height)
        canvas.paste(fitted, (strip_left + dx, dy))

    # 2. One column per reference, left to right in scene order.
    if references:
        columns = _column_bounds(0, references_right, len(references), gutter)
        if any(end - start < 1 for start, end in columns):
            raise ValueError(
                f"references: {len(references)} images do not fit side by side on a canvas "
                f"{width} pixels wide; pass fewer references or a wider canvas"
            )
        for index, (data, (start, end)) in enumerate(zip(references, columns, strict=True)):
            image = decode_rgb(data, f"references[{index}]")
            fitted, dx, dy = _letterbox(image, end - start, height)
            canvas.paste(fitted, (start + dx, dy))

    buffer = io.BytesIO()
    canvas.save(buffer, format="PNG")
    return buffer.getvalue()


def _position(index: int, count: int) -> str:
    if count == 2:
        return ("on the left", "on the right")[index]
    if count == 3:
        return ("on the left", "in the middle", "on the right")[index]
    return f"at position {index + 1} from the left"


def bind_prompt(prompt: str, names: list[str]) -> str:
    """Prefix `prompt` with a sentence that ties each name to its column on the canvas.

    One name: "Keep Ana from the reference image exactly the same person. <prompt>".
    Several: "The reference image shows Ana on the left and Leo on the right;
    keep each of them the same person. <prompt>". Four or more names use
    "at position k from the left". No names: the prompt is returned unchanged.
    """
    for index, name in enumerate(names):
        if not name.strip():
            raise ValueError(f"names[{index}]: empty name; pass the character's name or id")

    if not names:
        return prompt
    if len(names) == 1:
        return f"Keep {names[0]} from the reference image exactly the same person. {prompt}"

    placed = [f"{name} {_position(i, len(names))}" for i, name in enumerate(names)]
    listing = ", ".join(placed[:-1]) + " and " + placed[-1]
    return f"The reference image shows {listing}; keep each of them the same person. {prompt}"
