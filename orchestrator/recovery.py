"""Find runs whose driver process is gone and resume, fail or leave them. Cancel runs.

A run records its driver as `host:pid`. A run left `running` by a driver
that died (SIGKILL, OOM kill, power loss) or `interrupted` by one that
stopped on SIGINT or SIGTERM has no process working on it. Such a run can
be resumed: accepted frames are kept, attempts that were in flight are
marked abandoned and their frames start a new attempt.

Liveness is checked with the process table, so it is known only for
drivers on this host. A driver on another host counts as unknown and its
run is never taken over automatically; `onmodel resume --force` does it.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from orchestrator.submit import ORIGIN_OPTION
from schemas.catalog import RunRow
from schemas.errors import OnModelError
from schemas.records import RunState
from storage.catalog import Catalog

if TYPE_CHECKING:
    from orchestrator.app_state import Backends
    from orchestrator.runner import Runner

logger = logging.getLogger(__name__)

RecoveryPolicy = Literal["resume", "fail", "leave"]
POLICIES: tuple[RecoveryPolicy, ...] = ("resume", "fail", "leave")
# Run states that no driver will change again.
FINAL_STATES = frozenset({RunState.COMPLETED, RunState.FAILED, RunState.CANCELLED})
CANCELLED_ERROR = "run cancelled"

# Runs that a driver in this process is executing right now. A process that
# restarts in a container often gets its old pid back, so `host:pid` alone
# cannot tell this process's own runs from the runs of its dead predecessor.
_active_runs: set[str] = set()
_active_lock = threading.Lock()


class DriverStatus(StrEnum):
    ALIVE = "alive"
    DEAD = "dead"
    # The driver is on another host or not in `host:pid` form, so it cannot be checked here.
    UNKNOWN = "unknown"


def current_driver() -> str:
    """Return this process's driver id, `host:pid`."""
    return f"{socket.gethostname()}:{os.getpid()}"


@contextmanager
def driving(run_id: str) -> Iterator[None]:
    """Mark `run_id` as executed by this process for the duration of the block."""
    with _active_lock:
        _active_runs.add(run_id)
    try:
        yield
    finally:
        with _active_lock:
            _active_runs.discard(run_id)


def driver_status(driver: str | None, run_id: str) -> DriverStatus:
    """Return whether the driver recorded for `run_id` is still running it.

    NOTE: when the kernel gives a dead driver's pid to an unrelated process,
    the driver looks alive. The run is then left alone until `onmodel resume
    --force`.
    """
    if not driver:
        return DriverStatus.DEAD
    host, _, pid_text = driver.rpartition(":")
    if not host or not pid_text.isdigit():
        return DriverStatus.UNKNOWN
    if host != socket.gethostname():
        return DriverStatus.UNKNOWN
    if driver == current_driver():
        with _active_lock:
            active = run_id in _active_runs
        return DriverStatus.ALIVE if active else DriverStatus.DEAD
    return DriverStatus.ALIVE if process_alive(int(pid_text)) else DriverStatus.DEAD


def process_alive(pid: int) -> bool:
    """Return True when a process with this pid exists and has not exited (zombies have)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, under another user
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # without /proc (macOS), the successful os.kill is all there is
    # The state letter follows the command name, which is in parentheses and may contain spaces.
    state = stat.rpartition(")")[2].split()[0]
    return state not in ("Z", "X")


def find_orphaned_runs(catalog: Catalog) -> list[RunRow]:
    """Return the runs no driver works on: `interrupted`, and `running` with a dead driver."""
    orphans = []
    for run in catalog.list_runs_in_states([RunState.RUNNING, RunState.INTERRUPTED]):
        if run.state == RunState.INTERRUPTED:
            orphans.append(run)
            continue
        status = driver_status(run.driver, run.id)
        if status == DriverStatus.DEAD:
            orphans.append(run)
        elif status == DriverStatus.UNKNOWN:
            logger.warning(
                "run=%s is running under driver %s on another host, which cannot be checked "
                "from here; if that driver is gone, run `onmodel resume --force %s`",
                run.id,
                run.driver,
                run.id,
            )
    return orphans


def resume_interrupted(
    backends: Backends,
    runner_factory: Callable[[], Runner],
    policy: RecoveryPolicy = "resume",
) -> list[str]:
    """Apply `policy` to every run whose driver is gone, and return the ids of the runs handled.

    - resume: run each one to its end in this thread, one after another,
      with one runner from `runner_factory`, which is shut down at the end.
      A run whose resume fails is logged, and the next one is tried.
    - fail: mark each one failed, with the command that resumes it as error.
    - leave: only log them.

    A run that another process claims first is skipped and not returned.
    The HTTP service calls this on start. It blocks until the runs finish,
    so a service calls it from a background thread.
    """
    _check_policy(policy)
    catalog = backends.catalog
    orphans = find_orphaned_runs(catalog)
    if not orphans:
        return []
    logger.info(
        "%d runs have no driver (%s); policy %s",
        len(orphans),
        ", ".join(run.id for run in orphans),
        policy,
    )
    if policy == "leave":
        for run in orphans:
            logger.warning(
                "run=%s left %s; continue it with `onmodel resume %s`", run.id, run.state, run.id
            )
        return [run.id for run in orphans]
    if policy == "fail":
        failed = []
        for run in orphans:
            error = (
                f"driver {run.driver or '(none)'} stopped; "
                f"continue the run with `onmodel resume {run.id}`"
            )
            if _mark_failed(catalog, run, error):
                failed.append(run.id)
        return failed
    return _resume_all(orphans, runner_factory)


def _check_policy(policy: str) -> None:
    if policy not in POLICIES:
        raise ValueError(f"policy: {policy!r} is invalid; use one of: {', '.join(POLICIES)}")


def find_unstarted_runs(catalog: Catalog, origin: str) -> list[RunRow]:
    """Return the runs that `origin` submitted and no driver has started, oldest first."""
    return [
        run
        for run in catalog.list_runs_in_states([RunState.PENDING])
        if run.options.get(ORIGIN_OPTION) == origin and run.driver is None
    ]


def restart_unstarted(
    catalog: Catalog,
    start: Callable[[str], object],
    origin: str,
    policy: RecoveryPolicy = "resume",
) -> list[str]:
    """Apply `policy` to the runs that `origin` submitted but never started; return their ids.

    A service that stops loses its queue, so its runs that waited for a free
    slot stay pending. On the next start, `resume` hands each one to
    `start` again, oldest first, `fail` marks it failed with the command that
    starts it, and `leave` only logs it. Runs are claimed atomically when
    they start, so a run that another process takes first runs only once.
    """
    _check_policy(policy)
    runs = find_unstarted_runs(catalog, origin)
    if not runs:
        return []
    logger.info(
        "%d runs of %s never started (%s); policy %s",
        len(runs),
        origin,
        ", ".join(run.id for run in runs),
        policy,
    )
    handled = []
    for run in runs:
        if policy == "leave":
            logger.warning("run=%s left pending; start it with `onmodel resume %s`", run.id, run.id)
        elif policy == "fail":
            error = (
                f"the {origin} stopped before the run started; "
                f"start it with `onmodel resume {run.id}`"
            )
            if not _mark_failed(catalog, run, error):
                continue
        else:
            start(run.id)
            logger.info("run=%s queued again after a restart", run.id)
        handled.append(run.id)
    return handled


def _mark_failed(catalog: Catalog, run: RunRow, error: str) -> bool:
    """Mark a run failed if its state and driver are still those in `run`; return whether it was."""
    failed = catalog.set_run_state_if(
        run.id, RunState.FAILED, expected_state=run.state, expected_driver=run.driver, error=error
    )
    if not failed:
        logger.info("run=%s changed state meanwhile; left to its new driver", run.id)
        return False
    catalog.abandon_in_flight(run.id)
    logger.warning("run=%s marked failed: %s", run.id, error)
    return True


def _resume_all(orphans: list[RunRow], runner_factory: Callable[[], Runner]) -> list[str]:
    from orchestrator.runner import UserFacingRunError

    resumed = []
    runner = runner_factory()
    try:
        for run in orphans:
            logger.info("run=%s resuming (driver %s is gone)", run.id, run.driver)
            try:
                summary = runner.run(run.id)
            except (OnModelError, UserFacingRunError) as exc:
                logger.error("run=%s could not be resumed: %s", run.id, exc)
                continue
            except Exception:
                logger.exception("run=%s failed while resuming", run.id)
                resumed.append(run.id)
                continue
            logger.info("run=%s resumed and %s", run.id, summary.state.value)
            resumed.append(run.id)
    finally:
        runner.shutdown()
    return resumed


@dataclass(frozen=True)
class CancelOutcome:
    run_id: str
    # True: a live driver finishes the frames in flight and then stops.
    # False: no driver ran it, so its unfinished frames were cancelled here.
    driver_notified: bool
    driver: str | None
    frames_cancelled: int = 0


class RunStateError(OnModelError, ValueError):
    """A run whose state does not allow the requested change (cancel, take over)."""


def cancel_run(catalog: Catalog, run_id: str) -> CancelOutcome:
    """Cancel a run. A live driver stops starting frames, and a run without one ends here.

    A driver polls the run's state about once a second. It lets the frames
    in flight finish, marks the frames it had not started cancelled and
    ends the run `cancelled`. A run with no live driver (pending,
    interrupted, or running under a dead driver) is ended here: attempts in
    flight become abandoned and unfinished frames cancelled.
    """
    for _ in range(3):
        run = catalog.get_run(run_id)
        if run.state in FINAL_STATES:
            raise RunStateError(
                f"run {run.id} is already {run.state.value}; there is nothing to cancel"
            )
        status = driver_status(run.driver, run.id)
        if run.state == RunState.RUNNING and status != DriverStatus.DEAD:
            if catalog.set_run_state_if(
                run.id, RunState.CANCELLED, expected_state=run.state, expected_driver=run.driver
            ):
                logger.info("run=%s cancel requested from driver %s", run.id, run.driver)
                return CancelOutcome(run.id, driver_notified=True, driver=run.driver)
            continue
        if catalog.set_run_state_if(
            run.id,
            RunState.CANCELLED,
            expected_state=run.state,
            expected_driver=run.driver,
            error=CANCELLED_ERROR,
        ):
            catalog.abandon_in_flight(run.id)
            count = catalog.cancel_unfinished_frames(run.id, CANCELLED_ERROR)
            logger.info("run=%s cancelled with no live driver; %d frames cancelled", run.id, count)
            return CancelOutcome(
                run.id, driver_notified=False, driver=run.driver, frames_cancelled=count
            )
    raise RunStateError(f"run {run_id} changed state three times while being cancelled; try again")


def take_over(catalog: Catalog, run_id: str) -> RunRow:
    """Mark a `running` run interrupted when its driver is not alive here, so it can be resumed.

    For `onmodel resume --force`: a driver on another host cannot be
    checked from here, so the user vouches that it is gone. A driver that
    is alive on this host is never taken over. Returns the run as it is now.
    """
    run = catalog.get_run(run_id)
    if run.state != RunState.RUNNING:
        return run
    if driver_status(run.driver, run.id) == DriverStatus.ALIVE:
        raise RunStateError(
            f"run {run.id} is running in process {run.driver} on this host; stop that process "
            f"first, or cancel the run with `onmodel runs cancel {run.id}`"
        )
    error = f"taken over from driver {run.driver} by `onmodel resume --force`"
    if not catalog.set_run_state_if(
        run.id,
        RunState.INTERRUPTED,
        expected_state=run.state,
        expected_driver=run.driver,
        error=error,
    ):
        raise RunStateError(f"run {run.id} changed state while being taken over; try again")
    logger.warning("run=%s %s", run.id, error)
    return catalog.get_run(run.id)
