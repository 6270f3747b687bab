"""Helpers of the service tests: seeded assets with real PNG objects and a recording launcher."""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass

from fastapi.testclient import TestClient
from PIL import Image

from orchestrator.service.state import ServiceState
from schemas.records import AttemptState, CharacterScore, FrameScore, FrameState, FrameTask, Verdict
from schemas.storyboard import Backend
from storage.catalog import Catalog
from storage.objects import ObjectStore

TOKEN = "test-token-0123456789abcdef"

MakeClient = Callable[..., tuple[TestClient, ServiceState]]


class RecordingLauncher:
    """A run launcher that only records the run ids it was given."""

    def __init__(self) -> None:
        self.started: list[str] = []

    def start(self, run_id: str) -> None:
        self.started.append(run_id)


@dataclass(frozen=True)
class SeededAsset:
    id: str
    run_id: str
    scene: str
    character: str
    verdict: Verdict
    state: FrameState
    png: bytes


def png_bytes(shade: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), (shade, 255 - shade, 128)).save(buffer, format="PNG")
    return buffer.getvalue()


def seed_assets(catalog: Catalog, store: ObjectStore, count: int = 6) -> list[SeededAsset]:
    """Store one run of `count` assets in scenes s0/s1/s2, characters ana and leo, in order."""
    storyboard_id = catalog.put_storyboard("seeded", {"name": "seeded"}, "c" * 64)
    tasks = [
        FrameTask(
            key=f"frame-{index}",
            storyboard_id=storyboard_id,
            scene_id=f"s{index % 3}",
            variant=index,
            prompt=f"Ana and Leo, take {index}",
            characters=["ana" if index % 2 == 0 else "leo"],
            backend=Backend.TINY,
            model="tiny-kontext",
            width=16,
            height=16,
            steps=2,
            guidance=2.5,
            seed=500 + index,
        )
        for index in range(count)
    ]
    run_id = catalog.create_run(storyboard_id, tasks, {})
    seeded = []
    for index, task in enumerate(tasks):
        png = png_bytes(index * 20)
        object_key = store.put(png)
        verdict = Verdict.ON_MODEL if index % 3 else Verdict.DRIFTED
        state = FrameState.ACCEPTED if index % 3 else FrameState.NEEDS_REVIEW
        character = task.characters[0]
        score = FrameScore(
            verdict=verdict,
            scorer="dlib",
            characters=[
                CharacterScore(
                    character_id=character, verdict=verdict, score=0.5 + index / 20, threshold=0.6
                )
            ],
            faces_found=1,
        )
        attempt_id = catalog.start_attempt(run_id, task.key, 1, task.seed)
        catalog.finish_attempt(
            attempt_id,
            AttemptState.DONE,
            object_key=object_key,
            sha256=object_key.rsplit("/", 1)[1].removesuffix(".png"),
            score=score,
        )
        asset_id = catalog.accept_frame(run_id, task.key, attempt_id, state, {})
        seeded.append(SeededAsset(asset_id, run_id, task.scene_id, character, verdict, state, png))
    return seeded
