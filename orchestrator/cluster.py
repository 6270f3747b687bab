"""Connect to Ray (or start it on loopback) and create the actor pools."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from orchestrator.settings import Settings

logger = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# Folders shipped to cluster nodes by Ray's working_dir runtime environment.
SHIPPED_PACKAGES = ("schemas", "orchestrator", "actors", "storage")


def prepare_environment() -> None:
    """Set the environment Ray reads at start-up, before `ray` is imported anywhere.

    Without RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 a local Ray binds to the
    machine's outward interface; OnModel's local mode must stay on 127.0.0.1.
    """
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


def ensure_ray(settings: Settings) -> None:
    """Connect to `settings.ray_address`, or start a local Ray on loopback when it is empty."""
    prepare_environment()
    import ray

    if ray.is_initialized():
        return
    if settings.ray_address:
        excludes = [".venv", ".onmodel", ".git", "tests", "bench", "docs", "examples", "out"]
        runtime_env = {"working_dir": str(PROJECT_ROOT), "excludes": excludes}
        logger.info("connecting to Ray at %s", settings.ray_address)
        ray.init(
            address=settings.ray_address,
            runtime_env=runtime_env,
            log_to_driver=True,
            logging_level=logging.WARNING,
        )
    else:
        logger.info("starting a local Ray on 127.0.0.1")
        ray.init(
            include_dashboard=False,
            log_to_driver=True,
            logging_level=logging.WARNING,
            configure_logging=False,
        )


def gpus_per_actor(settings: Settings) -> float:
    """Return the GPUs each generator actor reserves: the setting, else one when the cluster has GPUs."""
    if settings.gpus_per_actor is not None:
        return settings.gpus_per_actor
    import ray

    return 1.0 if ray.cluster_resources().get("GPU", 0) > 0 else 0.0


def pool_size(settings: Settings, backend: str) -> int:
    """Return how many generator actors to start for a backend."""
    return settings.actors


def actor_options(settings: Settings, num_gpus: float) -> dict[str, Any]:
    return {
        "num_cpus": settings.cpus_per_actor,
        "num_gpus": num_gpus,
        # A dead actor comes back with its model reloaded; the runner retries
        # the frame itself, so Ray must not replay the call on its own.
        "max_restarts": settings.actor_max_restarts,
        "max_task_retries": 0,
        # One frame at a time per actor: a pipeline's scheduler state is not
        # safe under concurrent calls, and one GPU runs one frame best.
        "max_concurrency": 1,
    }
