"""Generators whose output a test chooses: real face photos in place of generated frames.

The identity gate and the edit tests run real runs on Ray with these in place
of the image model, so the scorers see real faces. Subclasses pick the photo
for each request in `image`.
"""

from __future__ import annotations

import io
import logging
import os
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from PIL import Image
from ray import cloudpickle

from actors.generator import GeneratorWorker
from schemas.records import GenerationRequest, GenerationResult

FACES = Path(__file__).resolve().parent / "fixtures" / "faces"
# Height of each photo in the two-person image.
PAIR_HEIGHT = 480


class PhotoGenerator(GeneratorWorker):
    """A generator actor that returns the photo `image` picks for each request."""

    # A plain string, so that the path travels to Ray workers with the class.
    faces = str(FACES)

    def __init__(self, backend: str, model: str, options: dict[str, Any] | None = None) -> None:
        self.backend = backend
        self.model = model

    def info(self) -> dict[str, Any]:
        return {
            "pid": os.getpid(),
            "node": socket.gethostname(),
            "device": "cpu",
            "backend": self.backend,
            "model": self.model,
            "scorable": True,
        }

    def generate(self, request: GenerationRequest) -> GenerationResult:
        image = self.image(request)
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        return GenerationResult(
            frame_key=request.frame_key,
            attempt=request.attempt,
            png=buffer.getvalue(),
            width=image.width,
            height=image.height,
            seconds=0.0,
            node=socket.gethostname(),
            device="cpu",
            backend=request.backend,
            model=request.model,
        )

    def image(self, request: GenerationRequest) -> Image.Image:
        raise NotImplementedError

    def photo(self, name: str) -> Image.Image:
        return Image.open(Path(self.faces) / name).convert("RGB")

    def pair(self) -> Image.Image:
        """Return Leo (Macron 2025) on the left and Ana (Ardern 2022) on the right."""
        photos = [self.photo(name) for name in ("macron_2025.jpg", "ardern_2022.jpg")]
        photos = [
            photo.resize((round(photo.width * PAIR_HEIGHT / photo.height), PAIR_HEIGHT))
            for photo in photos
        ]
        canvas = Image.new("RGB", (photos[0].width + photos[1].width, PAIR_HEIGHT), "grey")
        canvas.paste(photos[0], (0, 0))
        canvas.paste(photos[1], (photos[0].width, 0))
        return canvas


@contextmanager
def captured_messages(logger_name: str = "orchestrator") -> Iterator[list[str]]:
    """Collect the INFO and higher messages of a logger and its children inside the block."""
    messages: list[str] = []
    handler = logging.Handler(logging.INFO)
    handler.emit = lambda record: messages.append(record.getMessage())  # type: ignore[method-assign]
    logger = logging.getLogger(logger_name)
    previous = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield messages
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)


# Ray workers cannot import the test folder, so these classes travel by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])
