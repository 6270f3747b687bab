"""`onmodel scheduler`: tick on an interval and drive the runs that fires create.

Runs are driven on daemon threads, each with its own Runner, inside the
scheduler's process and Ray connection. Runner.run claims a run in the
catalog before driving it, so a run is never driven by two schedulers.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any

from orchestrator.cluster import ensure_ray
from orchestrator.recovery import DriverStatus, current_driver, driver_status
from orchestrator.runner import UserFacingRunError
from orchestrator.scheduler import DEFAULT_GRACE_S, DEFAULT_TICK_INTERVAL_S, FireOutcome, tick
from orchestrator.settings import Settings
from schemas.records import RunState, RunSummary
from storage.catalog import Catalog
from storage.objects import ObjectStore
from storage.schedules import ScheduleStore

logger = logging.getLogger(__name__)


def run_fired(
    settings: Settings,
    catalog: Catalog,
    store: ObjectStore,
    run_ids: list[str],
    listener: Any = None,
) -> list[RunSummary]:
    """Run fired runs one after another with one Runner; return their summaries.

    A run that is no longer pending (another driver has taken it) is left
    to that driver and not listed.
    """
    from orchestrator.runner import Runner

    summaries = []
    runner = Runner(settings, catalog, store, listener=listener)
    try:
        for run_id in run_ids:
            state = catalog.get_run(run_id).state
            if state != RunState.PENDING:
                logger.info("run=%s is %s, driven elsewhere; not running it here", run_id, state)
                continue
            summaries.append(runner.run(run_id))
    finally:
        runner.shutdown()
    return summaries


class SchedulerLoop:
    """`onmodel scheduler`: tick every interval and drive fired runs on background threads.

    Recovery policy at start: runs started by fires that are pending or
    interrupted, and runs left running by a dead driver process on this
    host, are driven to the end. Runs whose driver is on another host are
    left alone, because this process cannot tell whether that driver still
    lives. Runner.run claims each run atomically, so a run that another
    scheduler takes first is skipped.
    """

    def __init__(
        self,
        settings: Settings,
        catalog: Catalog,
        store: ObjectStore,
        *,
        interval_s: float = DEFAULT_TICK_INTERVAL_S,
        grace_s: float = DEFAULT_GRACE_S,
        max_runs: int = 1,
        runner_factory: Callable[[], Any] | None = None,
    ) -> None:
        if interval_s <= 0:
            raise ValueError(f"interval_s must be > 0, got {interval_s}")
        if max_runs < 1:
            raise ValueError(f"max_runs must be an integer >= 1, got {max_runs}")
        self.settings = settings
        self.catalog = catalog
        self.store = store
        self.schedules = ScheduleStore(catalog)
        self.interval_s = interval_s
        self.grace_s = grace_s
        self.max_runs = max_runs
        self.driver = current_driver()
        self.stop_event = threading.Event()
        self._runner_factory = runner_factory or self._new_runner
        self._queue: queue.Queue[str] = queue.Queue()
        self._active: set[str] = set()
        self._lock = threading.Lock()
        self._workers: list[threading.Thread] = []

    def _new_runner(self) -> Any:
        from orchestrator.runner import Runner

        return Runner(self.settings, self.catalog, self.store)

    def start(self) -> None:
        """Connect to Ray, start the run threads and queue the runs the recovery policy takes over.

        Ray is started here, in the calling thread, and not by a Runner: a
        Runner that starts Ray stops it when it shuts down, under the other
        runs' feet.
        """
        if self._runner_factory == self._new_runner:
            ensure_ray(self.settings)
        for index in range(self.max_runs):
            # Daemon threads: a second stop signal must be able to end the process.
            worker = threading.Thread(target=self._work, name=f"scheduler-run-{index}", daemon=True)
            worker.start()
            self._workers.append(worker)
        for run_id, state, driver in self.schedules.unfinished_runs():
            if state == RunState.RUNNING:
                if driver_status(driver, run_id) != DriverStatus.DEAD:
                    continue
                logger.info("run=%s: its driver %s is gone; taking it over", run_id, driver)
            else:
                logger.info("run=%s is %s; queuing it", run_id, state)
            self._queue.put(run_id)

    def tick_once(self, now: datetime | None = None) -> list[FireOutcome]:
        """Record due fires and queue their runs."""
        outcomes = tick(self.catalog, now=now, grace_s=self.grace_s)
        for outcome in outcomes:
            if outcome.run_id is not None:
                self._queue.put(outcome.run_id)
        return outcomes

    def run_forever(self) -> None:
        """Tick until `stop_event` is set; the caller then drains or interrupts the runs."""
        logger.info(
            "scheduler %s started: tick every %.0f s, %d concurrent runs",
            self.driver,
            self.interval_s,
            self.max_runs,
        )
        while not self.stop_event.is_set():
            try:
                self.tick_once()
            except Exception:
                # A long-running service outlives one failed tick; the next one retries.
                logger.exception("scheduler tick failed; retrying in %.0f s", self.interval_s)
            self.stop_event.wait(self.interval_s)
        logger.info("scheduler %s stopped ticking", self.driver)

    def active_runs(self) -> list[str]:
        with self._lock:
            return sorted(self._active)

    def wait_idle(self, timeout_s: float | None = None) -> bool:
        """Wait until every queued run has finished; return False on timeout."""
        done = threading.Event()

        def join() -> None:
            self._queue.join()
            done.set()

        threading.Thread(target=join, daemon=True).start()
        return done.wait(timeout_s)

    def interrupt_active(self) -> list[str]:
        """Mark the runs in progress interrupted, for `onmodel resume` or the next scheduler."""
        interrupted = self.active_runs()
        for run_id in interrupted:
            self.catalog.abandon_in_flight(run_id)
            self.catalog.set_run_state(run_id, RunState.INTERRUPTED, error="scheduler stopped")
            logger.warning("run=%s interrupted by scheduler shutdown", run_id)
        return interrupted

    def _work(self) -> None:
        while True:
            run_id = self._queue.get()
            try:
                self._drive(run_id)
            finally:
                self._queue.task_done()

    def _drive(self, run_id: str) -> None:
        with self._lock:
            self._active.add(run_id)
        runner = self._runner_factory()
        try:
            summary = runner.run(run_id)
            logger.info(
                "run=%s %s: %d frames, %d accepted, %d failed",
                run_id,
                summary.state.value,
                summary.frames,
                summary.accepted,
                summary.failed,
            )
        except UserFacingRunError as exc:
            # A run another driver claimed first, or a model that does not load.
            logger.error("run=%s not run: %s", run_id, exc)
        except Exception:
            # The runner has recorded the run as failed; the scheduler carries on.
            logger.exception("run=%s failed", run_id)
        finally:
            runner.shutdown()
            with self._lock:
                self._active.discard(run_id)
