"""A whole run through real Ray actors with the tiny Kontext pipeline."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from PIL import Image

from orchestrator.app_state import open_backends
from orchestrator.runner import Runner
from orchestrator.settings import Settings
from orchestrator.spec import load_spec
from orchestrator.submit import submit
from schemas.records import FrameState, RunState, Verdict

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "coffee"


def small_example(folder: Path, **defaults: object) -> Path:
    """Copy the example storyboard with small frames so a run takes seconds."""
    shutil.copytree(EXAMPLE, folder)
    spec = folder / "storyboard.yaml"
    doc = yaml.safe_load(spec.read_text())
    doc["defaults"].update({"width": 64, "height": 64, "steps": 2, **defaults})
    for scene in doc["scenes"]:
        scene.pop("width", None)
        scene.pop("height", None)
    spec.write_text(yaml.safe_dump(doc))
    return spec


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home", actors=1)


def test_tiny_run_catalogs_every_frame(
    tmp_path: Path, settings: Settings, ray_session: None
) -> None:
    loaded = load_spec(small_example(tmp_path / "spec"))
    backends = open_backends(settings)
    run_id = submit(backends.catalog, backends.store, loaded)
    runner = Runner(settings, backends.catalog, backends.store)

    try:
        summary = runner.run(run_id)
    finally:
        runner.shutdown()

    assert summary.state == RunState.COMPLETED
    assert summary.frames == 7
    assert summary.accepted == 7
    assert summary.unscored == 7
    assets = backends.catalog.list_assets(run_id=run_id)
    assert len(assets) == 7
    assert len({a.frame_key for a in assets}) == 7
    for asset in assets:
        assert asset.state == FrameState.ACCEPTED
        assert asset.verdict == Verdict.UNSCORED
        assert asset.backend == "tiny"
        image = Image.open(io.BytesIO(backends.store.get(asset.object_key)))
        assert image.size == (64, 64)
        assert asset.reference_hashes
    both = next(a for a in assets if a.scene_id == "s03-meet")
    assert set(both.reference_hashes) == {"ana", "leo", "style"}


def test_tiny_run_is_reproducible(tmp_path: Path, ray_session: None) -> None:
    """The same spec and seeds give the same images in two separate catalogs."""
    spec = small_example(tmp_path / "spec")
    hashes = []
    for name in ("a", "b"):
        settings = Settings(home=tmp_path / name, actors=1)
        backends = open_backends(settings)
        run_id = submit(backends.catalog, backends.store, load_spec(spec))
        runner = Runner(settings, backends.catalog, backends.store)
        try:
            runner.run(run_id)
        finally:
            runner.shutdown()
        hashes.append(
            sorted((a.frame_key, a.sha256) for a in backends.catalog.list_assets(run_id=run_id))
        )

    assert hashes[0] == hashes[1]


def test_cli_run_and_assets_json(tmp_path: Path) -> None:
    """`onmodel run --json` then `onmodel assets list --json` in fresh processes."""
    spec = small_example(tmp_path / "spec")
    env = {**os.environ, "ONMODEL_HOME": str(tmp_path / "home"), "ONMODEL_ACTORS": "2"}
    onmodel = [sys.executable, "-m", "orchestrator.cli"]

    done = subprocess.run(
        [*onmodel, "run", str(spec), "--json"], env=env, capture_output=True, text=True, timeout=300
    )

    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["frames"] == 7
    assert summary["accepted"] == 7
    assert summary["failed"] == 0

    listed = subprocess.run(
        [*onmodel, "assets", "list", "--run", summary["run_id"], "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert listed.returncode == 0, listed.stderr
    assets = json.loads(listed.stdout)
    assert len(assets) == 7
    for asset in assets:
        assert Path(asset["path"]).is_file()
        assert asset["seed"] >= 0
        assert asset["prompt"]
        assert asset["model"] == "tiny-random-kontext"

    exported = tmp_path / "out.png"
    export = subprocess.run(
        [*onmodel, "assets", "export", assets[0]["id"], str(exported)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert export.returncode == 0, export.stderr
    assert exported.read_bytes() == Path(assets[0]["path"]).read_bytes()
