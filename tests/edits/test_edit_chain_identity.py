"""Edit chains, local edits and two-character scenes through the real identity gate.

A scripted generator returns real face photos chosen per prompt and call
count, so the test decides which step drifts. The scorer is the real dlib
scorer in a Ray actor. The generator writes down the conditioning image it
received, so the test can check what each attempt was conditioned on.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from photo_generators import FACES, PhotoGenerator, captured_messages
from PIL import Image, ImageDraw
from ray import cloudpickle

from actors.compose import bind_prompt, compose_canvas
from actors.identity import IdentityWorker
from orchestrator.app_state import open_backends
from orchestrator.edit import create_edit_run, lineage
from orchestrator.runner import Runner
from orchestrator.settings import Settings
from orchestrator.spec import load_spec
from orchestrator.submit import load_context, submit
from schemas.records import AttemptState, FrameState, GenerationRequest, GenerationResult, Verdict

CHAIN_PROMPT = "Ana stands at the counter"
EDITS = ["make it night", "add rain", "add a neon sign"]
PAIR_PROMPT = "both people share a table"
LOCAL_EDIT = "replace the text on the sign with OPEN LATE"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class ChainGenerator(PhotoGenerator):
    """A generator whose output the test chooses, and that logs what it was conditioned on.

    Step k of Ana's chain returns her 2022 photo with a marker square whose
    colour depends on k, so every step's image differs. "add rain" drifts on
    its first call (another person's photo) and is on model after that.
    """

    # Set by the test before the runner pickles this class.
    log_dir = ""

    def __init__(self, backend: str, model: str, options: dict[str, Any] | None = None) -> None:
        super().__init__(backend, model, options)
        self.calls: dict[str, int] = {}

    def generate(self, request: GenerationRequest) -> GenerationResult:
        result = super().generate(request)
        entry = {
            "frame_key": request.frame_key,
            "attempt": request.attempt,
            "prompt": request.prompt,
            "conditioning": sha256(request.conditioning_png) if request.conditioning_png else None,
            "output": sha256(result.png),
        }
        with open(Path(self.log_dir) / f"{os.getpid()}.jsonl", "a") as log:
            log.write(json.dumps(entry) + "\n")
            if request.conditioning_png is not None:
                (Path(self.log_dir) / f"{entry['conditioning']}.png").write_bytes(
                    request.conditioning_png
                )
        return result

    def image(self, request: GenerationRequest) -> Image.Image:
        prompt = request.prompt
        count = self.calls.get(request.frame_key, 0)
        self.calls[request.frame_key] = count + 1
        if PAIR_PROMPT in prompt:
            return self.pair()
        if prompt == EDITS[1] and count == 0:
            return self.photo("sunak.jpg")
        step = 0
        if prompt in EDITS:
            step = EDITS.index(prompt) + 1
        elif prompt == LOCAL_EDIT:
            step = 4
        image = self.photo("ardern_2022.jpg")
        ImageDraw.Draw(image).rectangle((0, 0, 40, 40), fill=(40 * step, 200 - 40 * step, 90))
        return image


# Ray workers cannot import this test module, so its classes travel by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])


def write_spec(folder: Path) -> Path:
    refs = folder / "refs"
    refs.mkdir(parents=True)
    shutil.copy(FACES / "ardern_2018.jpg", refs / "ana.jpg")
    shutil.copy(FACES / "macron_2014.jpg", refs / "leo.jpg")
    shutil.copy(FACES / "flower.jpg", refs / "style.jpg")
    doc = {
        "name": "chain-gate",
        "characters": [
            {"id": "ana", "name": "Ana", "references": ["refs/ana.jpg"]},
            {"id": "leo", "name": "Leo", "references": ["refs/leo.jpg"]},
        ],
        "style": {"reference": "refs/style.jpg", "description": "flat colours"},
        "defaults": {"backend": "tiny", "width": 256, "height": 256, "steps": 1},
        "consistency": {"scorer": "dlib", "max_attempts": 3},
        "scenes": [
            {"id": "chain", "prompt": CHAIN_PROMPT, "characters": ["ana"], "edits": EDITS},
            {"id": "pair", "prompt": PAIR_PROMPT, "characters": ["ana", "leo"], "width": 512},
        ],
    }
    spec = folder / "spec.yaml"
    spec.write_text(yaml.safe_dump(doc))
    return spec


def run_to_end(settings: Settings, backends: Any, run_id: str) -> list[str]:
    """Run with the scripted generator; return the runner's log messages."""
    runner = Runner(settings, backends.catalog, backends.store, generator_cls=ChainGenerator)
    with captured_messages() as messages:
        try:
            runner.run(run_id)
        finally:
            runner.shutdown()
    return messages


@pytest.fixture(scope="module")
def chain_run(tmp_path_factory: pytest.TempPathFactory, ray_session: None) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("chain")
    log_dir = folder / "calls"
    log_dir.mkdir()
    ChainGenerator.log_dir = str(log_dir)
    settings = Settings(home=folder / "home", actors=1)
    backends = open_backends(settings)
    run_id = submit(backends.catalog, backends.store, load_spec(write_spec(folder / "spec")))

    log_lines = run_to_end(settings, backends, run_id)

    frames = backends.catalog.list_frames(run_id)
    chain = sorted((f for f in frames if f.scene_id == "chain"), key=lambda f: f.edit_step)
    pair = next(f for f in frames if f.scene_id == "pair")
    return {
        "backends": backends,
        "settings": settings,
        "run_id": run_id,
        "chain": chain,
        "pair": pair,
        "log_dir": log_dir,
        "log_lines": log_lines,
    }


def calls(log_dir: Path, frame_key: str | None = None) -> list[dict[str, Any]]:
    entries = []
    for path in sorted(log_dir.glob("*.jsonl")):
        entries.extend(json.loads(line) for line in path.read_text().splitlines())
    if frame_key is not None:
        entries = [e for e in entries if e["frame_key"] == frame_key]
    return sorted(entries, key=lambda e: e["attempt"])


def test_chain_steps_all_accepted(chain_run: dict[str, Any]) -> None:
    chain = chain_run["chain"]

    assert [f.edit_step for f in chain] == [0, 1, 2, 3]
    assert all(f.state == FrameState.ACCEPTED for f in chain)
    assert [f.parent_key for f in chain] == [None, chain[0].key, chain[1].key, chain[2].key]


def test_drifted_step_regenerated_from_previous_step(chain_run: dict[str, Any]) -> None:
    backends, run_id, chain = chain_run["backends"], chain_run["run_id"], chain_run["chain"]
    step1 = backends.catalog.get_asset(chain[1].asset_id)
    attempts = backends.catalog.list_attempts(run_id, chain[2].key)
    received = calls(chain_run["log_dir"], chain[2].key)

    assert [a.verdict for a in attempts] == [Verdict.DRIFTED, Verdict.ON_MODEL]
    assert all(a.state == AttemptState.DONE for a in attempts)
    assert [c["attempt"] for c in received] == [1, 2]
    # Both attempts were conditioned on step 1's accepted image, never on the drifted one.
    assert received[0]["conditioning"] == step1.sha256
    assert received[1]["conditioning"] == step1.sha256
    assert attempts[0].seed != attempts[1].seed


def test_next_step_continues_from_regenerated_step(chain_run: dict[str, Any]) -> None:
    backends, chain = chain_run["backends"], chain_run["chain"]
    step2 = backends.catalog.get_asset(chain[2].asset_id)
    step2_calls = calls(chain_run["log_dir"], chain[2].key)
    step3_calls = calls(chain_run["log_dir"], chain[3].key)

    assert step2.attempt == 2
    assert step2.sha256 == step2_calls[1]["output"]
    assert [c["conditioning"] for c in step3_calls] == [step2.sha256]
    assert step3_calls[0]["conditioning"] != step2_calls[0]["output"]


def test_edit_steps_get_instruction_verbatim(chain_run: dict[str, Any]) -> None:
    chain = chain_run["chain"]
    first = calls(chain_run["log_dir"], chain[0].key)
    prompts = [calls(chain_run["log_dir"], frame.key)[-1]["prompt"] for frame in chain[1:]]

    assert first[0]["prompt"] == bind_prompt(CHAIN_PROMPT, ["Ana"]) + " Style: flat colours."
    assert prompts == EDITS


def test_every_step_scored_against_original_reference(chain_run: dict[str, Any]) -> None:
    backends, chain = chain_run["backends"], chain_run["chain"]
    context = load_context(backends.catalog, backends.store, chain_run["run_id"])
    ana_reference = context.references["ana"][0].sha256

    for frame in chain:
        asset = backends.catalog.get_asset(frame.asset_id)
        assert asset.reference_hashes["ana"] == [ana_reference]
        assert [s.character_id for s in asset.scores] == ["ana"]
        assert asset.scores[0].verdict == Verdict.ON_MODEL


def test_lineage_returns_chain_root_first(chain_run: dict[str, Any]) -> None:
    backends, chain = chain_run["backends"], chain_run["chain"]

    found = lineage(backends.catalog, chain[3].asset_id[:8])

    assert [a.id for a in found] == [f.asset_id for f in chain]
    assert found[0].parent_asset_id is None
    assert [a.parent_asset_id for a in found[1:]] == [a.id for a in found[:-1]]
    assert [a.id for a in lineage(backends.catalog, chain[0].asset_id)] == [chain[0].asset_id]


def test_pair_canvas_binds_characters_to_places(chain_run: dict[str, Any]) -> None:
    backends, pair = chain_run["backends"], chain_run["pair"]
    context = load_context(backends.catalog, backends.store, chain_run["run_id"])
    received = calls(chain_run["log_dir"], pair.key)[0]
    expected_canvas = compose_canvas(
        [context.references["ana"][0].png, context.references["leo"][0].png],
        pair.width,
        pair.height,
        context.style.png if context.style else None,
    )

    assert received["prompt"] == bind_prompt(PAIR_PROMPT, ["Ana", "Leo"]) + " Style: flat colours."
    assert received["prompt"].startswith(
        "The reference image shows Ana on the left and Leo on the right"
    )
    assert received["conditioning"] == sha256(expected_canvas)

    # The canvas really shows Ana's face on the left and Leo's on the right.
    canvas = (chain_run["log_dir"] / f"{received['conditioning']}.png").read_bytes()
    score = IdentityWorker("dlib").score(
        canvas, {"ana": context.references["ana"], "leo": context.references["leo"]}, {}
    )
    boxes = {s.character_id: s.box for s in score.characters}
    assert score.faces_found == 2
    assert boxes["ana"] is not None and boxes["leo"] is not None
    assert boxes["ana"][2] <= boxes["leo"][0]


def test_pair_characters_scored_separately(chain_run: dict[str, Any]) -> None:
    backends, pair = chain_run["backends"], chain_run["pair"]
    asset = backends.catalog.get_asset(pair.asset_id)
    scores = {s.character_id: s for s in asset.scores}

    assert asset.verdict == Verdict.ON_MODEL
    assert set(scores) == {"ana", "leo"}
    assert scores["ana"].score is not None and scores["leo"].score is not None
    assert scores["ana"].verdict == Verdict.ON_MODEL
    assert scores["leo"].verdict == Verdict.ON_MODEL
    # The generated picture has Leo on the left; each face was matched to its own character.
    assert scores["leo"].box is not None and scores["ana"].box is not None
    assert scores["leo"].box[0] < scores["ana"].box[0]


def test_style_not_measured_by_face_scorer(chain_run: dict[str, Any]) -> None:
    attempt_lines = [line for line in chain_run["log_lines"] if " verdict=" in line]

    assert len(attempt_lines) == 6
    assert all(line.endswith("style=-") for line in attempt_lines)


def test_local_edit_links_to_source_and_passes_gate(chain_run: dict[str, Any]) -> None:
    backends, settings, chain = chain_run["backends"], chain_run["settings"], chain_run["chain"]
    source = backends.catalog.get_asset(chain[3].asset_id)

    run_id = create_edit_run(backends, source.id, LOCAL_EDIT)
    run_to_end(settings, backends, run_id)

    frame = backends.catalog.list_frames(run_id)[0]
    received = calls(chain_run["log_dir"], frame.key)
    asset = backends.catalog.get_asset(frame.asset_id)
    assert frame.state == FrameState.ACCEPTED
    assert received[0]["prompt"] == LOCAL_EDIT
    assert received[0]["conditioning"] == source.sha256
    assert asset.parent_asset_id == source.id
    assert asset.verdict == Verdict.ON_MODEL
    assert asset.characters == ["ana"]
    assert (asset.width, asset.height, asset.model) == (source.width, source.height, source.model)
    assert [a.id for a in lineage(backends.catalog, asset.id)] == [
        *(f.asset_id for f in chain),
        asset.id,
    ]
