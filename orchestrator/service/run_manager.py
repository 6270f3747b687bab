"""The run manager: executes submitted runs on the service's Ray cluster, a few at a time.

It lives in a Ray actor that reserves no CPU, because it only waits on the
generator and scorer actors that its runners start. The HTTP replicas hand
it run ids and return at once. Each run gets its own `Runner` in a worker
thread; `settings.service_max_runs` threads exist, and later runs wait in
the queue with state pending.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from orchestrator.app_state import open_backends
from orchestrator.recovery import current_driver, restart_unstarted
from orchestrator.runner import Runner, UserFacingRunError
from orchestrator.service.state import SERVICE_ORIGIN
from orchestrator.settings import Settings
from schemas.errors import OnModelError
from schemas.records import RunState

logger = logging.getLogger(__name__)

# Calls such as `start` and `status` must be served while runs execute;
# each call is short, so a few threads are plenty.
MANAGER_MAX_CONCURRENCY = 8
SERVICE_STOPPED = "the service stopped while the run was running"


class LauncherError(OnModelError, RuntimeError):
    """A run that was stored but could not be handed to the run manager."""


class RunManager:
    """Executes runs in worker threads of the process it lives in (a Ray actor)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.backends = open_backends(settings)
        self._executor = ThreadPoolExecutor(
            max_workers=settings.service_max_runs, thread_name_prefix="onmodel-run"
        )
        self._lock = threading.Lock()
        self._queued: set[str] = set()
        self._active: set[str] = set()
        logger.info("run manager started: %d runs at once", settings.service_max_runs)

    def ready(self) -> bool:
        return True

    def start(self, run_id: str) -> bool:
        """Queue a run; return False when it is queued or running here already."""
        with self._lock:
            if run_id in self._queued or run_id in self._active:
                return False
            self._queued.add(run_id)
        self._executor.submit(self._execute, run_id)
        logger.info("run=%s queued", run_id)
        return True

    def status(self) -> dict[str, list[str]]:
        with self._lock:
            return {"queued": sorted(self._queued), "active": sorted(self._active)}

    def _new_runner(self) -> Runner:
        return Runner(self.settings, self.backends.catalog, self.backends.store)

    def _execute(self, run_id: str) -> None:
        with self._lock:
            self._queued.discard(run_id)
            self._active.add(run_id)
        runner = self._new_runner()
        try:
            summary = runner.run(run_id)
            logger.info(
                "run=%s ended %s: %d accepted, %d need review, %d failed",
                run_id,
                summary.state.value,
                summary.accepted,
                summary.needs_review,
                summary.failed,
            )
        except (OnModelError, UserFacingRunError) as exc:
            logger.error("run=%s could not run: %s", run_id, exc)
        except Exception:
            # The runner has recorded the run as failed with the error text.
            logger.exception("run=%s failed", run_id)
        finally:
            runner.shutdown()
            with self._lock:
                self._active.discard(run_id)

    def recover(self) -> None:
        """Apply the recovery policy to runs that a stopped service left.

        Runs the service accepted but never started go back into the queue
        at once. `orchestrator.recovery.resume_interrupted` resumes the runs
        that were running, one after another, in a background thread and
        outside the `service_max_runs` threads.
        """
        policy = self.settings.recovery_policy
        try:
            restart_unstarted(self.backends.catalog, self.start, SERVICE_ORIGIN, policy)
        except Exception:
            logger.exception("recovery of runs that never started failed")
        try:
            from orchestrator.recovery import resume_interrupted
        except ImportError:
            logger.info("no orchestrator.recovery module; interrupted runs are left as they are")
            return

        def recover_runs() -> None:
            try:
                handled = resume_interrupted(self.backends, self._new_runner, policy=policy)
            except Exception:
                logger.exception("recovery of interrupted runs failed")
                return
            if handled:
                logger.info("recovery handled %d runs: %s", len(handled), ", ".join(handled))

        threading.Thread(target=recover_runs, name="onmodel-recovery", daemon=True).start()

    def stop(self) -> list[str]:
        """Mark the runs executing here interrupted, so the next start resumes them.

        The worker threads cannot be stopped from outside; they end with the
        actor's process. Queued runs stay pending, and `recover` queues
        them again when the service starts next.
        """
        with self._lock:
            active = sorted(self._active)
        catalog = self.backends.catalog
        driver = current_driver()
        for run_id in active:
            try:
                changed = catalog.set_run_state_if(
                    run_id,
                    RunState.INTERRUPTED,
                    expected_state=RunState.RUNNING,
                    expected_driver=driver,
                    error=SERVICE_STOPPED,
                )
                if changed:
                    catalog.abandon_in_flight(run_id)
                    logger.warning("run=%s interrupted: %s", run_id, SERVICE_STOPPED)
            except Exception:
                logger.exception("run=%s could not be marked interrupted", run_id)
        self._executor.shutdown(wait=False, cancel_futures=True)
        return active


class ActorLauncher:
    """Hands run ids from an HTTP replica to the RunManager actor."""

    # Seconds to wait for the manager to accept a run id.
    START_TIMEOUT_S = 30.0

    def __init__(self, manager: Any) -> None:
        self._manager = manager

    def start(self, run_id: str) -> None:
        import ray

        try:
            ray.get(self._manager.start.remote(run_id), timeout=self.START_TIMEOUT_S)
        except (ray.exceptions.RayError, TimeoutError) as exc:
            logger.error("run=%s could not be handed to the run manager: %s", run_id, exc)
            raise LauncherError(
                f"run {run_id} is stored but the run manager did not take it ({exc}); "
                f"start it with `onmodel resume {run_id}` or restart the service"
            ) from exc
