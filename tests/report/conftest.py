"""One scripted run shared by the report tests; see report_runs.py for what it contains."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from report_runs import HashScorer, ScriptedTinyGenerator, write_spec

from orchestrator.app_state import Backends, open_backends
from orchestrator.runner import Runner
from orchestrator.settings import Settings
from orchestrator.spec import load_spec
from orchestrator.submit import submit
from schemas.records import RunSummary


@dataclass(frozen=True)
class ReportRun:
    backends: Backends
    run_id: str
    summary: RunSummary
    folder: Path


@pytest.fixture(scope="session")
def report_run(tmp_path_factory: pytest.TempPathFactory, ray_session: None) -> ReportRun:
    folder = tmp_path_factory.mktemp("report_run")
    # One retry for the failing scene, with no wait, keeps the run to a few seconds.
    settings = Settings(home=folder / "home", actors=1, frame_max_errors=1, retry_backoff_s=0.0)
    backends = open_backends(settings)
    run_id = submit(backends.catalog, backends.store, load_spec(write_spec(folder / "spec")))
    runner = Runner(
        settings,
        backends.catalog,
        backends.store,
        generator_cls=ScriptedTinyGenerator,
        scorer_cls=HashScorer,
    )
    try:
        summary = runner.run(run_id)
    finally:
        runner.shutdown()
    return ReportRun(backends=backends, run_id=run_id, summary=summary, folder=folder)
