"""A small storyboard run for report tests: tiny Kontext frames, scripted identity scores.

The tiny backend draws noise, which has no faces to score. The generator
here is the real tiny GeneratorWorker, which declares its output scorable
and fails one scene on purpose. The scorer derives each character's score
from the frame's bytes. A run therefore shows on-model, drifted,
needs-review and failed frames, and the same spec always gives the same ones.
"""

from __future__ import annotations

import hashlib
import shutil
import sys
from pathlib import Path
from typing import Any

import yaml
from ray import cloudpickle

from actors.generator import GeneratorWorker
from schemas.errors import GenerationError
from schemas.records import (
    CharacterScore,
    FrameScore,
    GenerationRequest,
    GenerationResult,
    ReferenceImage,
    Verdict,
)

ROOT = Path(__file__).resolve().parents[2]
COFFEE_REFS = ROOT / "examples" / "coffee" / "refs"

# Strings that must reach the page escaped.
SCRIPT_PROMPT = "Ana orders <script>alert('prompt')</script> a coffee & a cake"
HOSTILE_NAME = 'Ana <img src=x onerror="alert(1)">'
FAILING_MARKER = "always fails"
GENERATION_ERROR = "backend rejected <b>the request</b> & gave up"
# Scores below this are drifted; Leo always scores below it.
THRESHOLD = 0.4


class ScriptedTinyGenerator(GeneratorWorker):
    """The tiny backend, declared scorable, failing every prompt that contains FAILING_MARKER."""

    def info(self) -> dict[str, Any]:
        return {**super().info(), "scorable": True}

    def generate(self, request: GenerationRequest) -> GenerationResult:
        if FAILING_MARKER in request.prompt:
            raise GenerationError(GENERATION_ERROR)
        return super().generate(request)


class HashScorer:
    """An identity scorer whose score is a hash of the frame and the character id."""

    def __init__(self, scorer: str, model: str | None = None) -> None:
        self.name = scorer

    def info(self) -> dict[str, Any]:
        return {"scorer": "hash", "model": None}

    def score(
        self,
        frame_png: bytes,
        characters: dict[str, list[ReferenceImage]],
        thresholds: dict[str, float],
    ) -> FrameScore:
        results = []
        for character_id in characters:
            digest = hashlib.sha256(frame_png + character_id.encode()).digest()
            value = digest[0] / 255 if character_id != "leo" else 0.1 + digest[0] / 2550
            verdict = Verdict.ON_MODEL if value >= THRESHOLD else Verdict.DRIFTED
            detail = "" if verdict is Verdict.ON_MODEL else f"<i>below</i> {THRESHOLD}"
            results.append(
                CharacterScore(
                    character_id=character_id,
                    verdict=verdict,
                    score=value,
                    threshold=THRESHOLD,
                    detail=detail,
                )
            )
        drifted = any(result.verdict is Verdict.DRIFTED for result in results)
        return FrameScore(
            verdict=Verdict.DRIFTED if drifted else Verdict.ON_MODEL,
            scorer="hash",
            characters=results,
            faces_found=len(results),
        )


# Ray workers cannot import this test module, so its classes travel by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])


def write_spec(folder: Path) -> Path:
    """Write the test storyboard: 4 scenes, 7 frames (2 variants, an edit chain of 3)."""
    refs = folder / "refs"
    refs.mkdir(parents=True)
    for name in ("ana_1.jpg", "ana_2.jpg", "leo_1.jpg", "style.jpg"):
        shutil.copy(COFFEE_REFS / name, refs / name)
    doc = {
        "name": "report <test>",
        "characters": [
            {
                "id": "ana",
                "name": HOSTILE_NAME,
                "description": "woman, brown hair",
                "references": ["refs/ana_1.jpg", "refs/ana_2.jpg"],
            },
            {"id": "leo", "name": "Leo", "references": ["refs/leo_1.jpg"]},
        ],
        "style": {"reference": "refs/style.jpg", "description": "watercolour"},
        "defaults": {"backend": "tiny", "width": 64, "height": 64, "steps": 2, "seed": 7},
        "consistency": {"scorer": "dlib", "max_attempts": 3},
        "scenes": [
            {"id": "s01-counter", "prompt": SCRIPT_PROMPT, "characters": ["ana"]},
            {
                "id": "s02-window",
                "prompt": "Leo reads by the window",
                "characters": ["leo"],
                "variants": 2,
                "width": 48,
                "height": 80,
            },
            {
                "id": "s03-table",
                "prompt": "Ana and Leo at a table",
                "characters": ["ana", "leo"],
                "edits": ["make it night", "add <em>rain</em>"],
            },
            {"id": "s04-broken", "prompt": f"Leo {FAILING_MARKER}", "characters": ["leo"]},
        ],
    }
    spec = folder / "storyboard.yaml"
    spec.write_text(yaml.safe_dump(doc))
    return spec
