"""`create_edit_run` on a real catalog, without Ray: what the edit run stores."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from orchestrator.app_state import open_backends
from orchestrator.edit import create_edit_run, lineage
from orchestrator.settings import Settings
from orchestrator.spec import load_spec
from orchestrator.submit import submit
from schemas.errors import NotFoundError, SpecError
from schemas.records import AttemptState, FrameScore, FrameState, Verdict
from schemas.storyboard import Storyboard

MATRIX_EXAMPLE = (
    Path(__file__).resolve().parents[2] / "examples" / "coffee" / "storyboard-matrix.yaml"
)


def accept_first_frame(backends: Any, run_id: str, scene_prefix: str) -> str:
    """Store an image for the run's first frame of a scene and accept it; return the asset id."""
    frame = next(
        f for f in backends.catalog.list_frames(run_id) if f.scene_id.startswith(scene_prefix)
    )
    buffer = io.BytesIO()
    Image.new("RGB", (frame.width, frame.height), (10, 120, 200)).save(buffer, format="PNG")
    key = backends.store.put(buffer.getvalue())
    attempt_id = backends.catalog.start_attempt(run_id, frame.key, 1, frame.seed)
    backends.catalog.finish_attempt(
        attempt_id,
        AttemptState.DONE,
        object_key=key,
        sha256=key.rsplit("/", 1)[-1].split(".")[0],
        score=FrameScore(verdict=Verdict.UNSCORED, scorer="none"),
    )
    return backends.catalog.accept_frame(
        run_id, frame.key, attempt_id, FrameState.ACCEPTED, {"ana": ["x"]}
    )


@pytest.fixture
def matrix_asset(tmp_path: Path) -> tuple[Any, str, str]:
    backends = open_backends(Settings(home=tmp_path / "home"))
    run_id = submit(backends.catalog, backends.store, load_spec(MATRIX_EXAMPLE))
    return backends, run_id, accept_first_frame(backends, run_id, "s01-counter.")


def test_edit_run_of_matrix_frame(matrix_asset: tuple[Any, str, str]) -> None:
    backends, source_run_id, asset_id = matrix_asset
    source = backends.catalog.get_asset(asset_id)

    run_id = create_edit_run(backends, asset_id[:6], "  add a rainy window  ")

    run = backends.catalog.get_run(run_id)
    frames = backends.catalog.list_frames(run_id)
    spec = Storyboard.model_validate(backends.catalog.get_storyboard(run.storyboard_id).spec)
    assert run.state.value == "pending"
    assert len(frames) == 1
    frame = frames[0]
    assert frame.scene_id == source.scene_id
    assert "." in frame.scene_id
    assert frame.prompt == "add a rainy window"
    assert frame.edit_step == source.edit_step + 1
    assert frame.parent_key is None
    assert frame.characters == ["ana"]
    assert (frame.width, frame.height, frame.model) == (source.width, source.height, source.model)
    assert run.options["sources"] == {frame.key: source.id}
    assert run.options["edit"] == {
        "source_asset_id": source.id,
        "instruction": "add a rainy window",
    }
    assert (
        run.options["references"] == backends.catalog.get_run(source_run_id).options["references"]
    )
    assert run.options["style"] == backends.catalog.get_run(source_run_id).options["style"]
    assert spec.matrix is None
    assert [s.prompt for s in spec.scenes] == ["add a rainy window"]
    assert spec.scenes[0].id == "s01-counter-fr-latte"


def test_edit_runs_get_distinct_keys(matrix_asset: tuple[Any, str, str]) -> None:
    backends, _, asset_id = matrix_asset

    first = create_edit_run(backends, asset_id, "add a rainy window")
    second = create_edit_run(backends, asset_id, "add a rainy window", ["ana", "leo"])

    keys = [backends.catalog.list_frames(run_id)[0].key for run_id in (first, second)]
    assert keys[0] != keys[1]
    assert backends.catalog.list_frames(second)[0].characters == ["ana", "leo"]


@pytest.mark.parametrize(
    ("instruction", "characters", "error", "message"),
    [
        ("   ", None, SpecError, "empty edit instruction"),
        ("x" * 4001, None, SpecError, "longer than 4000 characters"),
        ("add rain", ["mia"], SpecError, "--scene-characters[0]: unknown character 'mia'"),
    ],
)
def test_edit_run_rejects_invalid_request(
    matrix_asset: tuple[Any, str, str],
    instruction: str,
    characters: list[str] | None,
    error: type[Exception],
    message: str,
) -> None:
    backends, _, asset_id = matrix_asset
    runs_before = len(backends.catalog.list_runs())

    with pytest.raises(error) as info:
        create_edit_run(backends, asset_id, instruction, characters)

    assert message in str(info.value)
    assert len(backends.catalog.list_runs()) == runs_before


def test_edit_run_of_unknown_asset(matrix_asset: tuple[Any, str, str]) -> None:
    backends, _, _ = matrix_asset

    with pytest.raises(NotFoundError):
        create_edit_run(backends, "ffffffffffff", "add rain")


def test_lineage_of_root_is_itself(matrix_asset: tuple[Any, str, str]) -> None:
    backends, _, asset_id = matrix_asset

    assert [a.id for a in lineage(backends.catalog, asset_id)] == [asset_id]
