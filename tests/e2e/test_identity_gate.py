"""The identity gate inside a real run: drifted frames are regenerated, the best is kept.

A scripted generator returns real photos chosen per scene and attempt, so
the test decides which attempts are on model; the scorer is the real dlib
scorer in a Ray actor.
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from photo_generators import FACES, PhotoGenerator
from PIL import Image
from ray import cloudpickle

from orchestrator.app_state import open_backends
from orchestrator.runner import Runner
from orchestrator.settings import Settings
from orchestrator.spec import load_spec
from orchestrator.submit import submit
from schemas.records import AttemptState, FrameState, GenerationRequest, Verdict

# Scene prompt marker -> photo returned by attempt 1, 2, ... (the last one repeats).
SCRIPT = {
    "drifts once": ["sunak.jpg", "ardern_2022.jpg"],
    "never on model": ["obama_senate.jpg", "sunak.jpg", "obama_senate.jpg"],
    "copies the reference": ["ardern_2018.jpg", "ardern_2022.jpg"],
    "both people": ["__pair__"],
}


class ScriptedGenerator(PhotoGenerator):
    """Real photos picked by the prompt's marker and by how often the frame was generated."""

    def __init__(self, backend: str, model: str, options: dict[str, Any] | None = None) -> None:
        super().__init__(backend, model, options)
        self.calls: dict[str, int] = {}

    def image(self, request: GenerationRequest) -> Image.Image:
        marker = next(m for m in SCRIPT if m in request.prompt)
        count = self.calls.get(request.frame_key, 0)
        self.calls[request.frame_key] = count + 1
        choices = SCRIPT[marker]
        name = choices[min(count, len(choices) - 1)]
        return self.pair() if name == "__pair__" else self.photo(name)


# Ray workers cannot import this test module, so its classes travel by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])


def write_spec(folder: Path) -> Path:
    refs = folder / "refs"
    refs.mkdir(parents=True)
    shutil.copy(FACES / "ardern_2018.jpg", refs / "ana.jpg")
    shutil.copy(FACES / "macron_2014.jpg", refs / "leo.jpg")
    doc = {
        "name": "gate",
        "characters": [
            {"id": "ana", "name": "Ana", "references": ["refs/ana.jpg"]},
            {"id": "leo", "name": "Leo", "references": ["refs/leo.jpg"]},
        ],
        "defaults": {"backend": "tiny", "width": 64, "height": 64, "steps": 1},
        "consistency": {"scorer": "dlib", "max_attempts": 3},
        "scenes": [
            {"id": "once", "prompt": "Ana drifts once", "characters": ["ana"]},
            {"id": "never", "prompt": "Ana is never on model", "characters": ["ana"]},
            {"id": "copy", "prompt": "Ana copies the reference", "characters": ["ana"]},
            {"id": "pair", "prompt": "both people at a table", "characters": ["ana", "leo"]},
        ],
    }
    spec = folder / "spec.yaml"
    spec.write_text(yaml.safe_dump(doc))
    return spec


@pytest.fixture(scope="module")
def gate_run(tmp_path_factory: pytest.TempPathFactory, ray_session: None) -> tuple[Any, str]:
    folder = tmp_path_factory.mktemp("gate")
    settings = Settings(home=folder / "home", actors=1)
    backends = open_backends(settings)
    run_id = submit(backends.catalog, backends.store, load_spec(write_spec(folder / "spec")))
    runner = Runner(settings, backends.catalog, backends.store, generator_cls=ScriptedGenerator)
    started = time.monotonic()
    try:
        runner.run(run_id)
    finally:
        runner.shutdown()
    assert time.monotonic() - started < 300
    return backends, run_id


def frame_for(backends: Any, run_id: str, scene: str) -> Any:
    return next(f for f in backends.catalog.list_frames(run_id) if f.scene_id == scene)


def test_drifted_frame_is_regenerated(gate_run: tuple[Any, str]) -> None:
    backends, run_id = gate_run
    frame = frame_for(backends, run_id, "once")
    attempts = backends.catalog.list_attempts(run_id, frame.key)

    assert frame.state == FrameState.ACCEPTED
    assert [a.verdict for a in attempts] == [Verdict.DRIFTED, Verdict.ON_MODEL]
    assert all(a.state == AttemptState.DONE for a in attempts)
    assert attempts[0].score is not None and attempts[0].score < 0.4
    assert attempts[1].score is not None and attempts[1].score >= 0.4
    assert attempts[0].seed != attempts[1].seed
    asset = backends.catalog.get_asset(frame.asset_id)
    assert asset.attempt == 2
    assert asset.verdict == Verdict.ON_MODEL


def test_exhausted_frame_needs_review_with_best_attempt(gate_run: tuple[Any, str]) -> None:
    backends, run_id = gate_run
    frame = frame_for(backends, run_id, "never")
    attempts = backends.catalog.list_attempts(run_id, frame.key)

    assert frame.state == FrameState.NEEDS_REVIEW
    assert len(attempts) == 3
    assert all(a.verdict == Verdict.DRIFTED for a in attempts)
    best = max(attempts, key=lambda a: a.score or -1)
    asset = backends.catalog.get_asset(frame.asset_id)
    assert asset.attempt == best.number
    assert asset.state == FrameState.NEEDS_REVIEW


def test_copy_of_reference_is_rejected(gate_run: tuple[Any, str]) -> None:
    backends, run_id = gate_run
    frame = frame_for(backends, run_id, "copy")
    attempts = backends.catalog.list_attempts(run_id, frame.key)

    assert attempts[0].verdict == Verdict.COPY
    assert attempts[1].verdict == Verdict.ON_MODEL
    assert frame.state == FrameState.ACCEPTED


def test_two_characters_scored_separately(gate_run: tuple[Any, str]) -> None:
    backends, run_id = gate_run
    frame = frame_for(backends, run_id, "pair")
    asset = backends.catalog.get_asset(frame.asset_id)
    scores = {s.character_id: s for s in asset.scores}

    assert asset.verdict == Verdict.ON_MODEL
    assert set(scores) == {"ana", "leo"}
    assert scores["leo"].box is not None and scores["ana"].box is not None
    # Leo was pasted on the left half, Ana on the right.
    assert scores["leo"].box[0] < scores["ana"].box[0]


def test_summary_counts_review_and_scores(gate_run: tuple[Any, str]) -> None:
    backends, run_id = gate_run
    summary = backends.catalog.run_summary(run_id)

    assert summary.frames == 4
    assert summary.accepted == 3
    assert summary.needs_review == 1
    assert summary.unscored == 0
