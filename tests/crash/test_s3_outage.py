"""A run whose S3 endpoint goes away for a few seconds mid-run, then comes back on the same port.

The endpoint is a moto server on 127.0.0.1. It is stopped from the run's
progress callback, so the outage starts while frames are in flight, and a
timer starts a new server on the same port three seconds later. moto keeps
its data in this process across the restart, so every image written before,
during and after the outage must be in the bucket at the end.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from botocore.exceptions import ClientError
from crash_helpers import write_spec
from moto.server import ThreadedMotoServer
from servers import free_port, set_test_aws_env

from orchestrator.app_state import open_backends
from orchestrator.runner import Runner
from orchestrator.settings import Settings
from orchestrator.spec import load_spec
from orchestrator.submit import submit
from schemas.catalog import FrameRow
from schemas.records import FrameState, RunState, Verdict
from storage.s3 import S3ObjectStore

BUCKET = "onmodel-outage"
OUTAGE_S = 3.0


def create_bucket(endpoint: str) -> None:
    try:
        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=BUCKET)
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "BucketAlreadyOwnedByYou":
            raise


class S3Outage:
    """A run listener that stops the S3 server after `after` frames and restarts it later."""

    def __init__(self, port: int, after: int) -> None:
        self.port = port
        self.after = after
        self.finished = 0
        self.server = self._start()
        self.restarted = threading.Event()
        self.timer: threading.Timer | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _start(self) -> ThreadedMotoServer:
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        server.start()
        return server

    def _restart(self) -> None:
        self.server = self._start()
        create_bucket(self.endpoint)
        self.restarted.set()

    def started(self, run_id: str, total: int, done: int) -> None:
        pass

    def frame_finished(self, frame: FrameRow, state: FrameState, verdict: Verdict | None) -> None:
        self.finished += 1
        if self.finished == self.after:
            self.server.stop()
            self.timer = threading.Timer(OUTAGE_S, self._restart)
            self.timer.start()

    def stop(self) -> None:
        if self.timer is not None:
            self.timer.join()
        self.server.stop()


@pytest.fixture
def aws_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Dummy credentials, and boto3 kept away from the user's AWS files and metadata address."""
    set_test_aws_env(monkeypatch, tmp_path)
    yield


@pytest.mark.slow
def test_run_rides_out_s3_restart(
    tmp_path: Path,
    aws_env: None,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    ray_session: None,
) -> None:
    outage = S3Outage(free_port(), after=3)
    try:
        create_bucket(outage.endpoint)
        monkeypatch.setenv("ONMODEL_HOME", str(tmp_path / "home"))
        monkeypatch.setenv("ONMODEL_OBJECT_STORE", f"s3://{BUCKET}/objects")
        monkeypatch.setenv("ONMODEL_S3_ENDPOINT_URL", outage.endpoint)
        settings = Settings(actors=1)
        backends = open_backends(settings)
        assert isinstance(backends.store, S3ObjectStore)
        spec = write_spec(tmp_path / "spec", variants=20)
        run_id = submit(backends.catalog, backends.store, load_spec(spec))
        runner = Runner(settings, backends.catalog, backends.store, listener=outage)

        with caplog.at_level(logging.WARNING, logger="storage.s3"):
            try:
                summary = runner.run(run_id)
            finally:
                runner.shutdown()

        assert outage.restarted.is_set()
        retries = [r for r in caplog.records if "transient error" in r.getMessage()]
        assert retries, "no S3 request failed, so the outage did not overlap the run"
        assert summary.state == RunState.COMPLETED
        assert summary.accepted == 20
        assert summary.failed == 0
        assets = backends.catalog.list_assets(run_id=run_id)
        assert len(assets) == 20
        for asset in assets:
            assert backends.store.exists(asset.object_key)
    finally:
        outage.stop()
