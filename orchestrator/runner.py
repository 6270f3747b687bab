"""Run runs: claim a run for this process, start the actor pools, hand over to the run loop.

The runner is the only writer of a run's state. It reads the run back from
the catalog at start, so a fresh run and a resumed one take the same path.
Final frames are skipped, and attempts left running by a dead driver are
marked abandoned, so their frames start a new attempt. `orchestrator.run_loop`
describes how each failure is handled. Catalog calls retry transient
database errors (`orchestrator.catalog_retry`), and a permanent one fails
the run.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any, Protocol

from orchestrator.actor_pool import ActorPool, describe_actor_error
from orchestrator.catalog_retry import with_retries
from orchestrator.cluster import (
    actor_options,
    ensure_ray,
    generator_actor_options,
    generator_worker_options,
    pool_size,
    prepare_environment,
)
from orchestrator.recovery import DriverStatus, current_driver, driver_status, driving
from orchestrator.run_loop import RunLoop
from orchestrator.settings import Settings
from orchestrator.submit import load_context
from schemas.catalog import FrameRow, RunRow
from schemas.errors import BackendLoadError
from schemas.records import FrameState, RunState, RunSummary, Verdict
from schemas.storyboard import Backend
from storage.catalog import Catalog
from storage.objects import ObjectStore

logger = logging.getLogger(__name__)


class RunListener(Protocol):
    """Progress callbacks; the CLI draws a progress bar from them."""

    def started(self, run_id: str, total: int, done: int) -> None: ...

    def frame_finished(
        self, frame: FrameRow, state: FrameState, verdict: Verdict | None
    ) -> None: ...


class UserFacingRunError(RuntimeError):
    """A run that cannot start for a reason the user must fix (model not found, ...)."""


class Runner:
    """Run runs on a Ray cluster with one pool of generator actors per (backend, model).

    `run` starts a local Ray when none is connected, and `shutdown` stops the
    Ray that this runner started. A Ray that was running before is left as is.
    """

    def __init__(
        self,
        settings: Settings,
        catalog: Catalog,
        store: ObjectStore,
        *,
        generator_cls: type | None = None,
        scorer_cls: type | None = None,
        listener: RunListener | None = None,
    ) -> None:
        self.settings = settings
        self.catalog = with_retries(catalog, settings)
        self.store = store
        self.generator_cls = generator_cls
        self.scorer_cls = scorer_cls
        self.listener = listener
        self._pools: dict[tuple[str, str], ActorPool] = {}
        self._scorable: dict[tuple[str, str], bool] = {}
        self._scorers: dict[tuple[str, str | None], ActorPool] = {}
        self._started_ray = False
        # The signal that asked this process to stop during a run, if any.
        self.stop_signal: int | None = None

    # Public API

    def run(
        self, run_id: str, should_stop: Callable[[], bool] | None = None, *, force: bool = False
    ) -> RunSummary:
        """Run (or resume) a run to its end and return its summary.

        A completed or cancelled run is returned as it is. Raises
        UserFacingRunError when a live driver runs it already. `force` takes
        over a run whose driver is on another host, because this process
        cannot check whether that driver is alive. In the main thread, SIGTERM
        stops the run as Ctrl-C does: the run ends `interrupted` and
        SystemExit(143) is raised.
        """
        run = self.catalog.get_run(run_id)
        if run.state in (RunState.COMPLETED, RunState.CANCELLED):
            logger.info("run=%s is already %s; nothing to run", run.id, run.state.value)
            return self.catalog.run_summary(run.id)
        self._check_driver(run, force)
        context = load_context(self.catalog, self.store, run.id)
        self._ensure_ray()

        with driving(run.id), self._sigterm_stops_run():
            driver = current_driver()
            self._claim(run, driver)
            logger.info("run=%s started by %s", run.id, driver)
            try:
                abandoned = self.catalog.abandon_in_flight(run.id)
                if abandoned:
                    logger.info(
                        "run=%s requeued %d attempts left in flight by an earlier driver",
                        run.id,
                        abandoned,
                    )
                cancelled = RunLoop(self, context, should_stop).execute()
            except (KeyboardInterrupt, SystemExit):
                self._record_end(run.id, RunState.INTERRUPTED, "driver interrupted")
                logger.warning(
                    "run=%s interrupted; continue it with `onmodel resume %s`", run.id, run.id
                )
                raise
            except Exception as exc:
                self._record_end(run.id, RunState.FAILED, str(exc))
                if is_user_error(exc):
                    logger.error("run=%s failed: %s", run.id, exc)
                else:
                    logger.exception("run=%s failed", run.id)
                raise
            final = RunState.CANCELLED if cancelled else RunState.COMPLETED
            self.catalog.set_run_state(run.id, final)
        logger.info("run=%s %s", run.id, final.value)
        return self.catalog.run_summary(run.id)

    def shutdown(self) -> None:
        """Kill the actors this runner created, and stop Ray if this runner started it."""
        for pool in [*self._pools.values(), *self._scorers.values()]:
            pool.shutdown()
        self._pools.clear()
        self._scorers.clear()
        if self._started_ray:
            import ray

            ray.shutdown()
            self._started_ray = False
            logger.info("local Ray stopped")

    # Claiming a run

    def _check_driver(self, run: RunRow, force: bool) -> None:
        if run.state != RunState.RUNNING:
            return
        status = driver_status(run.driver, run.id)
        if status == DriverStatus.ALIVE:
            raise UserFacingRunError(
                f"run {run.id} is running in process {run.driver}; wait for it, or stop it "
                f"with `onmodel runs cancel {run.id}`"
            )
        if status == DriverStatus.UNKNOWN and not force:
            raise UserFacingRunError(
                f"run {run.id} is running under driver {run.driver}, which cannot be checked from "
                f"this host; if that driver is gone, resume with `onmodel resume --force {run.id}`"
            )
        logger.info("run=%s taking over from driver %s (%s)", run.id, run.driver, status.value)

    def _claim(self, run: RunRow, driver: str) -> None:
        if self.catalog.set_run_state_if(
            run.id,
            RunState.RUNNING,
            expected_state=run.state,
            expected_driver=run.driver,
            driver=driver,
        ):
            return
        # A retried call whose first try was committed returns False too.
        current = self.catalog.get_run(run.id)
        if current.state == RunState.RUNNING and current.driver == driver:
            return
        raise UserFacingRunError(
            f"run {run.id} changed to {current.state.value} (driver {current.driver}) while "
            f"starting; check it with `onmodel runs show {run.id}`"
        )

    def _record_end(self, run_id: str, state: RunState, error: str) -> None:
        # Runs while an exception propagates: a catalog failure here is logged
        # so that it does not hide the original error.
        try:
            self.catalog.abandon_in_flight(run_id)
            self.catalog.set_run_state(run_id, state, error=error)
        except Exception:
            logger.exception("run=%s could not be marked %s", run_id, state.value)

    @contextmanager
    def _sigterm_stops_run(self) -> Iterator[None]:
        """Turn SIGTERM into a flag that the run loop turns into SystemExit between two steps.

        Replaces only the default action and Ray's driver handler, which
        raises SystemExit wherever the driver happens to be. A server's own
        handler is left alone. A second SIGTERM exits at once, for a driver
        that is blocked, e.g. waiting for a model to load.
        """
        previous = signal.getsignal(signal.SIGTERM)
        is_ray_handler = getattr(previous, "__module__", "").startswith("ray.")
        in_main = threading.current_thread() is threading.main_thread()
        if not in_main or not (previous is signal.SIG_DFL or is_ray_handler):
            yield
            return

        def on_signal(signum: int, _frame: FrameType | None) -> None:
            if self.stop_signal is not None:
                raise SystemExit(128 + signum)
            self.stop_signal = signum

        signal.signal(signal.SIGTERM, on_signal)
        try:
            yield
        finally:
            signal.signal(signal.SIGTERM, previous)
            self.stop_signal = None

    def _ensure_ray(self) -> None:
        prepare_environment()
        import ray

        if not ray.is_initialized():
            ensure_ray(self.settings)
            self._started_ray = True

    # Actor pools

    def prepare_pools(self) -> None:
        """Drop pools that ran out of actors in an earlier run and renew the others' budgets."""
        for pool in self.pools():
            if pool.exhausted:
                pool.shutdown()
            else:
                pool.reset_budget()
        self._pools = {key: pool for key, pool in self._pools.items() if not pool.exhausted}
        self._scorers = {key: pool for key, pool in self._scorers.items() if not pool.exhausted}

    def pools(self) -> list[ActorPool]:
        return [*self._pools.values(), *self._scorers.values()]

    def generator_pool(self, backend: str, model: str) -> ActorPool:
        key = (backend, model)
        if key in self._pools:
            return self._pools[key]
        import ray

        cls = self.generator_cls
        if cls is None:
            from actors.generator import GeneratorWorker

            cls = GeneratorWorker
        remote: Any = ray.remote(cls).options(**generator_actor_options(self.settings, backend))
        # May contain a hosted backend's API key: never log these options.
        options = generator_worker_options(self.settings, backend)
        pool = ActorPool(
            f"generator {backend}/{model}",
            lambda: remote.remote(backend, model, options),
            pool_size(self.settings, backend, model),
            self.settings,
        )
        try:
            infos = pool.start()
        except ray.exceptions.RayActorError as exc:
            raise UserFacingRunError(_init_error_message(exc, backend, model)) from None
        except ray.exceptions.GetTimeoutError:
            raise UserFacingRunError(
                _start_timeout_message(self.settings, f"generator {backend}/{model}")
            ) from None
        self._scorable[key] = bool(infos[0].get("scorable", backend != Backend.TINY))
        logger.info(
            "generator pool ready: backend=%s model=%s actors=%d device=%s",
            backend,
            model,
            pool.size,
            infos[0].get("device"),
        )
        self._pools[key] = pool
        return pool

    def scorable(self, backend: str, model: str) -> bool:
        return self._scorable.get((backend, model), backend != Backend.TINY)

    def scorer_pool(self, scorer: str, model: str | None) -> ActorPool:
        key = (scorer, model)
        if key in self._scorers:
            return self._scorers[key]
        import ray

        cls = self.scorer_cls
        if cls is None:
            from actors.identity import IdentityWorker

            cls = IdentityWorker
        remote: Any = ray.remote(cls).options(**actor_options(self.settings, 0.0))
        pool = ActorPool(
            f"identity scorer {scorer}",
            lambda: remote.remote(scorer, model),
            self.settings.scorer_actors,
            self.settings,
        )
        try:
            pool.start()
        except ray.exceptions.RayActorError as exc:
            raise UserFacingRunError(
                f"identity scorer {scorer!r} failed to start: {describe_actor_error(exc)}"
            ) from None
        except ray.exceptions.GetTimeoutError:
            raise UserFacingRunError(
                _start_timeout_message(self.settings, f"identity scorer {scorer}")
            ) from None
        self._scorers[key] = pool
        return pool


def _init_error_message(exc: Exception, backend: str, model: str) -> str:
    text = str(exc)
    for marker in ("BackendLoadError: ", "ValueError: ", "OSError: "):
        if marker in text:
            return text.rsplit(marker, 1)[1].strip().splitlines()[0]
    last_line = text.splitlines()[-1] if text else type(exc).__name__
    return f"generator backend {backend!r} with model {model!r} failed to start: {last_line}"


def _start_timeout_message(settings: Settings, label: str) -> str:
    return (
        f"{label} actors did not start within {settings.actor_start_timeout_s:.0f} s; check that "
        "the Ray cluster has the CPUs and GPUs they request (ONMODEL_ACTORS, "
        "ONMODEL_GPUS_PER_ACTOR), or raise ONMODEL_ACTOR_START_TIMEOUT_S for slow model loads"
    )


def is_user_error(exc: BaseException) -> bool:
    return isinstance(exc, UserFacingRunError | BackendLoadError)
