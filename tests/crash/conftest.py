"""Fixtures of the crash tests."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from crash_helpers import CliProcesses


@pytest.fixture
def cli(tmp_path: Path) -> Iterator[CliProcesses]:
    """`onmodel` subprocesses on a fresh ONMODEL_HOME; their leftover processes are killed."""
    env = {
        **os.environ,
        "ONMODEL_HOME": str(tmp_path / "home"),
        "ONMODEL_ACTORS": "1",
        "PYTHONUNBUFFERED": "1",
    }
    logs = tmp_path / "logs"
    logs.mkdir()
    processes = CliProcesses(env, logs)
    try:
        yield processes
    finally:
        processes.cleanup()
