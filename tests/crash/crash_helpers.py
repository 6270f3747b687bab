"""Helpers of the crash tests: small specs, and `onmodel` processes that leave nothing behind.

Each `onmodel` subprocess starts its own local Ray. A process that exits
normally stops it; a process killed with SIGKILL leaves its Ray processes
orphaned. `CliProcesses` records every descendant of the processes it
starts while they run, kills what is left at the end of the test by pid,
and lets a test assert that a normal exit left nothing behind.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import yaml

from schemas.records import FrameState
from storage.catalog import Catalog

ROOT = Path(__file__).resolve().parents[2]
PHOTOS = ROOT / "examples" / "coffee" / "refs"


def write_spec(
    folder: Path,
    *,
    variants: int = 20,
    size: int = 64,
    steps: int = 2,
    extra_scenes: list[dict[str, Any]] | None = None,
) -> Path:
    """Write a one-character storyboard of `variants` frames (plus extra scenes) under `folder`."""
    refs = folder / "refs"
    refs.mkdir(parents=True)
    shutil.copy(PHOTOS / "ana_1.jpg", refs / "ana.jpg")
    doc = {
        "name": "crash",
        "characters": [{"id": "ana", "name": "Ana", "references": ["refs/ana.jpg"]}],
        "defaults": {"backend": "tiny", "width": size, "height": size, "steps": steps},
        "consistency": {"scorer": "none"},
        "scenes": [
            {
                "id": "s1",
                "prompt": "Ana drinks coffee",
                "characters": ["ana"],
                "variants": variants,
            },
            *(extra_scenes or []),
        ],
    }
    spec = folder / "storyboard.yaml"
    spec.write_text(yaml.safe_dump(doc))
    return spec


class CliProcesses:
    """Starts `onmodel` subprocesses and tracks every process they start, by pid."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env = env
        self.logs = logs
        self.tracked: dict[int, psutil.Process] = {}
        self._count = 0

    def start(self, *args: str) -> subprocess.Popen[str]:
        """Start `onmodel ARGS` with stdout and stderr in files under `logs`."""
        self._count += 1
        stdout = (self.logs / f"{self._count}.out").open("w")
        stderr = (self.logs / f"{self._count}.err").open("w")
        proc = subprocess.Popen(
            [sys.executable, "-m", "orchestrator.cli", *args],
            env=self.env,
            stdout=stdout,
            stderr=stderr,
            text=True,
        )
        stdout.close()
        stderr.close()
        proc.stdout_path = self.logs / f"{self._count}.out"  # type: ignore[attr-defined]
        proc.stderr_path = self.logs / f"{self._count}.err"  # type: ignore[attr-defined]
        self.track(proc)
        return proc

    def track(self, proc: subprocess.Popen[str]) -> None:
        """Record the current descendants of `proc` (Ray's head processes and workers)."""
        try:
            root = psutil.Process(proc.pid)
            for child in root.children(recursive=True):
                self.tracked.setdefault(child.pid, child)
        except psutil.NoSuchProcess:
            pass

    def wait(self, proc: subprocess.Popen[str], timeout: float) -> int:
        """Wait for `proc` to exit, recording its descendants meanwhile; return its exit code."""
        deadline = time.monotonic() + timeout
        while proc.poll() is None:
            if time.monotonic() > deadline:
                self.kill(proc)
                raise AssertionError(f"{proc.args} did not exit within {timeout} s")
            self.track(proc)
            time.sleep(0.2)
        return proc.returncode

    def run(self, *args: str, timeout: float = 180) -> tuple[int, str, str]:
        """Run `onmodel ARGS` to its end; return (exit code, stdout, stderr)."""
        proc = self.start(*args)
        code = self.wait(proc, timeout)
        return code, output(proc, "stdout"), output(proc, "stderr")

    def kill(self, proc: subprocess.Popen[str]) -> None:
        """SIGKILL `proc` itself, as a crash would; its Ray processes stay for `cleanup`."""
        self.track(proc)
        proc.kill()
        proc.wait(timeout=30)

    def leftovers(self) -> list[psutil.Process]:
        """Return the tracked processes that are still running, with children they started since."""
        alive: dict[int, psutil.Process] = {}
        for process in self.tracked.values():
            try:
                if not process.is_running() or process.status() == psutil.STATUS_ZOMBIE:
                    continue
                alive[process.pid] = process
                for child in process.children(recursive=True):
                    alive.setdefault(child.pid, child)
            except psutil.NoSuchProcess:
                continue
        return list(alive.values())

    def cleanup(self) -> list[str]:
        """Kill every tracked process still running; return their command lines."""
        left = self.leftovers()
        names = []
        for process in left:
            try:
                names.append(" ".join(process.cmdline()[:2]))
                process.kill()
            except psutil.NoSuchProcess:
                continue
        psutil.wait_procs(left, timeout=10)
        return names


def output(proc: subprocess.Popen[str], stream: str) -> str:
    path: Path = getattr(proc, f"{stream}_path")
    return path.read_text()


def first_line(proc: subprocess.Popen[str], timeout: float = 120) -> str:
    """Return the first stdout line of `proc` once it is written."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = output(proc, "stdout")
        if "\n" in text:
            return text.split("\n", 1)[0].strip()
        if proc.poll() is not None:
            raise AssertionError(f"onmodel exited with {proc.returncode}: {output(proc, 'stderr')}")
        time.sleep(0.1)
    raise AssertionError(f"onmodel printed no line within {timeout} s")


def wait_for_accepted(catalog: Catalog, run_id: str, count: int, timeout: float) -> int:
    """Poll the catalog until the run has at least `count` accepted frames; return how many."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        accepted = len(catalog.list_frames(run_id, states=[FrameState.ACCEPTED]))
        if accepted >= count:
            return accepted
        time.sleep(0.05)
    raise AssertionError(f"run {run_id} did not accept {count} frames within {timeout} s")


def assert_no_leftovers(cli: CliProcesses, within: float = 15) -> None:
    """Assert that the processes of normally exited `onmodel` runs are gone (Ray stopped)."""
    deadline = time.monotonic() + within
    while cli.leftovers() and time.monotonic() < deadline:
        time.sleep(0.2)
    left = [" ".join(p.cmdline()[:2]) for p in cli.leftovers()]
    assert not left, f"processes left running after onmodel exited: {left}"
