"""Two `onmodel run` processes at once on one SQLite catalog and one object folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from crash_helpers import CliProcesses, assert_no_leftovers, output, write_spec

from orchestrator.gc import referenced_keys
from orchestrator.settings import Settings
from schemas.records import AttemptState, FrameState, RunState
from storage.catalog import Catalog
from storage.objects import LocalObjectStore

FRAMES = 12


@pytest.mark.slow
def test_two_runs_share_one_catalog(tmp_path: Path, cli: CliProcesses) -> None:
    # Two storyboards, so that the runs differ in spec and share nothing but the catalog.
    specs = [
        write_spec(tmp_path / "a", variants=FRAMES),
        write_spec(tmp_path / "b", variants=FRAMES, size=80),
    ]
    procs = [cli.start("run", str(spec), "--json") for spec in specs]
    codes = [cli.wait(proc, timeout=300) for proc in procs]

    for proc, code in zip(procs, codes, strict=True):
        stderr = output(proc, "stderr")
        assert code == 0, stderr
        assert "database is locked" not in stderr
        assert "Traceback" not in stderr
    assert_no_leftovers(cli)
    summaries = [json.loads(output(proc, "stdout").strip().splitlines()[-1]) for proc in procs]
    assert summaries[0]["run_id"] != summaries[1]["run_id"]

    settings = Settings(home=tmp_path / "home")
    catalog = Catalog(settings.catalog_url)
    store = LocalObjectStore(settings.object_location)
    for summary in summaries:
        run_id = summary["run_id"]
        assert summary["accepted"] == FRAMES
        assert catalog.run_summary(run_id).state == RunState.COMPLETED
        frames = catalog.list_frames(run_id)
        assert len(frames) == FRAMES
        assert {frame.state for frame in frames} == {FrameState.ACCEPTED}
        attempts = catalog.list_attempts(run_id)
        assert [a.state for a in attempts] == [AttemptState.DONE] * FRAMES
        assets = catalog.list_assets(run_id=run_id)
        assert len(assets) == FRAMES
        assert {asset.frame_key for asset in assets} == {frame.key for frame in frames}
        for asset in assets:
            assert store.exists(asset.object_key)
    assert referenced_keys(catalog) <= {key for key, _ in store.iter_keys()}
