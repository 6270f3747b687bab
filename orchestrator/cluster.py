"""Connect to Ray (or start it on loopback) and create the actor pools."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from orchestrator.settings import Settings
from schemas.errors import BackendLoadError

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
    # Ray lowers worker priority (niceness 15) by default; on a machine where the
    # driver shares the cores, that starved the generator actors (bench/throughput.py).
    os.environ.setdefault("RAY_worker_niceness", "0")


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
        # "local" starts a private Ray for this process instead of joining a
        # cluster that `ray start` may have left running on the machine.
        ray.init(
            address="local",
            include_dashboard=False,
            log_to_driver=True,
            logging_level=logging.WARNING,
            configure_logging=False,
        )


def gpus_per_actor(settings: Settings) -> float:
    """Return the GPUs per generator actor: the setting, else one when the cluster has GPUs."""
    if settings.gpus_per_actor is not None:
        return settings.gpus_per_actor
    import ray

    return 1.0 if ray.cluster_resources().get("GPU", 0) > 0 else 0.0


# Backends whose actors only wait on a hosted API: no GPU and a sliver of a CPU.
HOSTED_BACKENDS = frozenset({"bfl"})


def pool_size(settings: Settings, backend: str, model: str = "") -> int:
    """Return how many generator actors to start for a backend and model.

    A hosted backend gets one actor per request it may have in flight, so
    the pool size is the per-model cap on concurrent provider tasks.
    """
    if backend == "bfl":
        if model == "flux-kontext-max":
            return settings.bfl_max_in_flight
        return settings.bfl_pro_in_flight
    return settings.actors


def generator_actor_options(settings: Settings, backend: str) -> dict[str, Any]:
    """Return the Ray options of a generator actor for `backend`."""
    if backend in HOSTED_BACKENDS:
        options = actor_options(settings, 0.0)
        options["num_cpus"] = settings.bfl_cpus_per_actor
        return options
    num_gpus = 0.0 if backend == "tiny" else gpus_per_actor(settings)
    return actor_options(settings, num_gpus)


def generator_worker_options(settings: Settings, backend: str) -> dict[str, Any]:
    """Return the options a generator worker is constructed with.

    For `bfl` they contain the API key. Ray passes them to the actor's
    constructor; no caller may log them or store them in the catalog.
    Raises BackendLoadError when the key is not set.
    """
    if backend != "bfl":
        return {
            "torch_threads": settings.torch_threads,
            "compile": settings.gen_compile,
            "warmup_sizes": settings.gen_warmup_sizes,
            "fp8": settings.gen_fp8,
            "first_block_cache": settings.gen_first_block_cache,
            "vae_tiling_min_side": settings.gen_vae_tiling_min_side,
            "cpu_offload": settings.gen_cpu_offload,
            "cache_reference_latents": settings.gen_cache_reference_latents,
            "cache_prompt_embeds": settings.gen_cache_prompt_embeds,
        }
    if settings.bfl_api_key is None or not settings.bfl_api_key.get_secret_value().strip():
        raise BackendLoadError(
            "the bfl backend needs an API key; set ONMODEL_BFL_API_KEY to your BFL API key"
        )
    return {
        "api_key": settings.bfl_api_key.get_secret_value(),
        "base_url": settings.bfl_base_url,
        "poll_interval_s": settings.bfl_poll_interval_s,
        "timeout_s": settings.bfl_timeout_s,
        "http_timeout_s": settings.bfl_http_timeout_s,
    }


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
