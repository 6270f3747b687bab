"""A whole run on the hosted `bfl` backend, through real Ray actors, against a fake BFL API."""

from __future__ import annotations

import io
import logging
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from bfl_fake_server import API_KEY, FakeBfl
from PIL import Image

from orchestrator.app_state import open_backends
from orchestrator.runner import Runner, is_user_error
from orchestrator.settings import Settings
from orchestrator.spec import load_spec
from orchestrator.submit import submit
from schemas.records import AttemptState, FrameState, RunState

EXAMPLE_REFS = Path(__file__).resolve().parents[2] / "examples" / "coffee" / "refs"

SCENES = {
    "plain": "Ana orders a coffee",
    "slow": "[slow] Ana waits for her order",
    "moderated": "[request-moderated] Ana at the counter",
    "error": "[error-once] Ana pays",
    "limited": "[429-once] Ana leaves",
    "expired": "[expired-once] Ana smiles",
}


def write_spec(folder: Path) -> Path:
    shutil.copytree(EXAMPLE_REFS, folder / "refs")
    doc = {
        "name": "hosted",
        "characters": [{"id": "ana", "name": "Ana", "references": ["refs/ana_1.jpg"]}],
        "defaults": {
            "backend": "bfl",
            "model": "flux-kontext-pro",
            "width": 64,
            "height": 48,
            "bfl": {"output_format": "jpeg", "safety_tolerance": 3},
        },
        # The fake returns the conditioning canvas, which would fail the copy
        # guard; this test is about the provider protocol, not identity.
        "consistency": {"scorer": "none"},
        "scenes": [{"id": k, "prompt": p, "characters": ["ana"]} for k, p in SCENES.items()],
    }
    spec = folder / "storyboard.yaml"
    spec.write_text(yaml.safe_dump(doc))
    return spec


def hosted_settings(home: Path, fake: FakeBfl, **fields: Any) -> Settings:
    return Settings(
        home=home,
        bfl_api_key=API_KEY,
        bfl_base_url=fake.url,
        bfl_pro_in_flight=2,
        bfl_cpus_per_actor=0.1,
        bfl_poll_interval_s=0.05,
        retry_backoff_s=0.05,
        **fields,
    )


@pytest.fixture(scope="module")
def hosted_run(
    tmp_path_factory: pytest.TempPathFactory, ray_session: None
) -> Iterator[tuple[Any, str, FakeBfl, str]]:
    folder = tmp_path_factory.mktemp("hosted")
    fake = FakeBfl(API_KEY).start()
    settings = hosted_settings(folder / "home", fake)
    backends = open_backends(settings)
    run_id = submit(backends.catalog, backends.store, load_spec(write_spec(folder / "spec")))

    capture = _LogCapture()
    logging.getLogger().addHandler(capture)
    previous = logging.getLogger().level
    logging.getLogger().setLevel(logging.DEBUG)
    runner = Runner(settings, backends.catalog, backends.store)
    try:
        runner.run(run_id)
    finally:
        runner.shutdown()
        logging.getLogger().removeHandler(capture)
        logging.getLogger().setLevel(previous)
    yield backends, run_id, fake, capture.text()
    fake.stop()


class _LogCapture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))

    def text(self) -> str:
        return "\n".join(self.lines)


def frames_by_scene(backends: Any, run_id: str) -> dict[str, Any]:
    return {frame.scene_id: frame for frame in backends.catalog.list_frames(run_id)}


def test_hosted_run_catalogs_frames(hosted_run: tuple[Any, str, FakeBfl, str]) -> None:
    backends, run_id, _, _ = hosted_run
    summary = backends.catalog.run_summary(run_id)
    frames = frames_by_scene(backends, run_id)

    assert summary.state == RunState.COMPLETED
    assert summary.frames == 6
    assert summary.accepted == 5
    for scene in ("plain", "slow", "error", "limited", "expired"):
        assert frames[scene].state == FrameState.ACCEPTED, scene
        asset = backends.catalog.get_asset(frames[scene].asset_id)
        assert asset.backend == "bfl"
        assert asset.model == "flux-kontext-pro"
        image = Image.open(io.BytesIO(backends.store.get(asset.object_key)))
        assert image.format == "PNG"
        assert image.size == (64, 48)


def test_moderated_frame_is_final(hosted_run: tuple[Any, str, FakeBfl, str]) -> None:
    backends, run_id, fake, _ = hosted_run
    frame = frames_by_scene(backends, run_id)["moderated"]
    attempts = backends.catalog.list_attempts(run_id, frame.key)

    assert frame.state == FrameState.MODERATED
    assert frame.asset_id is None
    assert len(attempts) == 1
    assert "Request Moderated" in (attempts[0].error or "")
    submitted = [body for body in fake.record.submits if "[request-moderated]" in body["prompt"]]
    assert len(submitted) == 1


@pytest.mark.parametrize("scene", ["error", "expired"])
def test_failed_task_is_retried_as_new_request(
    hosted_run: tuple[Any, str, FakeBfl, str], scene: str
) -> None:
    backends, run_id, fake, _ = hosted_run
    frame = frames_by_scene(backends, run_id)[scene]
    attempts = backends.catalog.list_attempts(run_id, frame.key)
    marker = SCENES[scene].split()[0]

    assert [a.state for a in attempts] == [AttemptState.FAILED, AttemptState.DONE]
    assert len([body for body in fake.record.submits if marker in body["prompt"]]) == 2


def test_rate_limited_submit_waits_and_succeeds(hosted_run: tuple[Any, str, FakeBfl, str]) -> None:
    backends, run_id, fake, _ = hosted_run
    frame = frames_by_scene(backends, run_id)["limited"]

    assert fake.record.rate_limited == 1
    assert len(backends.catalog.list_attempts(run_id, frame.key)) == 1


def test_spec_fields_reach_provider(hosted_run: tuple[Any, str, FakeBfl, str]) -> None:
    backends, run_id, fake, _ = hosted_run
    seeds = {frame.key: frame.seed for frame in backends.catalog.list_frames(run_id)}

    assert fake.record.submits
    for body in fake.record.submits:
        assert body["output_format"] == "jpeg"
        assert body["safety_tolerance"] == 3
        assert body["aspect_ratio"] == "4:3"
        assert body["prompt_upsampling"] is False
        assert body["input_image"]
    plain = next(b for b in fake.record.submits if "orders a coffee" in b["prompt"])
    assert plain["seed"] in seeds.values()


def test_result_urls_fetched_once(hosted_run: tuple[Any, str, FakeBfl, str]) -> None:
    _, _, fake, _ = hosted_run

    # Six frames, plus the retries of the error and expired frames, less the moderated one.
    assert len(fake.record.sample_fetches) == 6
    assert set(fake.record.sample_fetches.values()) == {1}
    assert set(fake.record.sample_keys) == {None}


def test_api_key_not_in_logs_or_catalog(hosted_run: tuple[Any, str, FakeBfl, str]) -> None:
    import ray

    backends, run_id, fake, driver_log = hosted_run
    key = API_KEY.encode()

    assert set(fake.record.submit_keys) == {API_KEY}
    assert "run=" in driver_log
    assert API_KEY not in driver_log
    assert API_KEY not in str(backends.catalog.get_run(run_id).options)
    home = backends.settings.home
    catalog_files = [p for p in home.iterdir() if p.name.startswith("catalog.db")]
    assert catalog_files
    for path in catalog_files:
        assert key not in path.read_bytes(), path

    # Worker processes write their logs under the Ray session folder.
    session = Path(ray._private.worker._global_node.get_session_dir_path())
    logs = [p for p in (session / "logs").rglob("*") if p.is_file()]
    assert any(p.name.startswith("worker-") for p in logs)
    for path in logs:
        assert key not in path.read_bytes(), path


def test_missing_api_key_is_a_user_error(
    tmp_path: Path, fake_bfl: FakeBfl, ray_session: None
) -> None:
    settings = hosted_settings(tmp_path / "home", fake_bfl)
    settings.bfl_api_key = None
    backends = open_backends(settings)
    run_id = submit(backends.catalog, backends.store, load_spec(write_spec(tmp_path / "spec")))
    runner = Runner(settings, backends.catalog, backends.store)

    with pytest.raises(Exception, match="ONMODEL_BFL_API_KEY") as info:
        runner.run(run_id)

    assert is_user_error(info.value)
    assert backends.catalog.get_run(run_id).state == RunState.FAILED
