"""Every tunable of OnModel in one place, read from `ONMODEL_*` environment variables.

Retry, timeout and restart defaults carry the reason for their value beside them.
"""

from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ONMODEL_", extra="ignore")

    # State: the catalog and the object folder live under `home` unless overridden.
    home: Path = Path(".onmodel")
    database_url: str | None = None
    object_store: str | None = None
    s3_endpoint_url: str | None = None

    # Ray. An empty address starts a local Ray bound to 127.0.0.1.
    ray_address: str = ""
    actors: int = Field(default=1, ge=1, le=1024)
    cpus_per_actor: float = Field(default=1.0, ge=0.0)
    # None: one GPU per actor when CUDA is present, none otherwise.
    gpus_per_actor: float | None = Field(default=None, ge=0.0)
    scorer_actors: int = Field(default=1, ge=1, le=256)
    # Torch threads per CPU actor. One thread per actor avoids oversubscribing
    # the cores that other actors use.
    torch_threads: int = Field(default=1, ge=1)

    # Fault tolerance.
    # Ray restarts an actor process that dies (OOM kill, segfault, lost node)
    # this many times, reloading its model each time. After that the actor is
    # dead for good and the runner replaces it (actor_max_replacements).
    actor_max_restarts: int = Field(default=3, ge=0)
    # Fresh actors one pool may start per run in place of actors that are dead
    # for good. A few poison frames that crash their actor on every try must
    # not take the whole pool down; the cap stops a model that cannot stay up
    # from being restarted forever, and the pool's remaining frames then fail.
    actor_max_replacements: int = Field(default=2, ge=0)
    # Seconds an actor may take to load its model, at pool start and after a
    # restart. Loading FLUX.1 Kontext [dev] (12B parameters, about 24 GB in
    # bf16) from a local disk takes minutes (an estimate); 15 minutes also
    # leaves room for a slow network file system.
    actor_start_timeout_s: float = Field(default=900.0, gt=0)
    # A frame whose attempt failed (the generator raised, its actor crashed or
    # timed out, its image could not be stored) is retried this many times
    # before it ends `failed`. Two covers a lost node plus one flaky retry.
    frame_max_errors: int = Field(default=2, ge=0)
    # Seconds one generation may take before it counts as hung; its actor is
    # then killed and restarted. A 1024x1024 Kontext frame takes about 5-30 s
    # on one GPU; ten minutes leaves room for compilation on the first frame.
    frame_timeout_s: float = Field(default=600.0, gt=0)
    # Seconds one identity check may take before its scorer counts as hung.
    # Scoring one frame takes seconds at most, so five minutes only trips on a
    # scorer that is stuck.
    score_timeout_s: float = Field(default=300.0, gt=0)
    # First retry delay of a failed frame, doubled each time.
    retry_backoff_s: float = Field(default=0.5, ge=0)
    # Tries of one catalog call that failed with a transient database error
    # (SQLite "database is locked", a dropped PostgreSQL connection). Five
    # tries with delays doubling from 0.5 s wait about 7.5 s in all, which
    # rides out a PostgreSQL restart.
    catalog_max_attempts: int = Field(default=5, ge=1)
    catalog_retry_backoff_s: float = Field(default=0.5, ge=0)
    # What the HTTP service does on start with runs whose driver is gone:
    # resume them, mark them failed, or leave them for `onmodel resume`.
    recovery_policy: Literal["resume", "fail", "leave"] = "resume"
    # Objects younger than this are kept by `onmodel gc` even when no row
    # refers to them: a driver writes each image before its catalog row, so a
    # young unreferenced object may belong to a frame in flight. An hour is
    # far longer than that gap.
    gc_grace_s: float = Field(default=3600.0, ge=0)

    # HTTP service.
    api_token: SecretStr | None = None
    # Address `onmodel serve` listens on; any address but loopback needs api_token.
    service_host: str = "127.0.0.1"
    # 8000 is Ray Serve's default port. Ray's workers use ports 10002-19999.
    service_port: int = Field(default=8000, ge=1, le=65535)
    # Runs the service executes at once; later submissions wait, state pending.
    # Every run starts its own generator actors, so this also bounds their count.
    service_max_runs: int = Field(default=2, ge=1, le=64)
    # Host names that http(s) references of submitted specs may point at, as a
    # JSON list or comma-separated. Empty rejects every http(s) reference.
    reference_hosts: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # Seconds one reference download may take.
    reference_timeout_s: float = Field(default=30.0, gt=0)

    @field_validator("reference_hosts", mode="before")
    @classmethod
    def _split_hosts(cls, value: object) -> object:
        if isinstance(value, str):
            text = value.strip()
            value = json.loads(text) if text.startswith("[") else text.split(",")
        if isinstance(value, list):
            # DNS names are case-insensitive.
            return [str(host).strip().lower() for host in value if str(host).strip()]
        return value

    # Hosted `bfl` backend (FLUX.1 Kontext [pro] and [max] over the BFL API).
    # The key reaches the generator actors through their constructor options
    # only; it is never logged and never written to the catalog.
    bfl_api_key: SecretStr | None = None
    bfl_base_url: str = Field(default="https://api.bfl.ai", pattern=r"^https?://[^\s/]+(/\S*)?$")
    # Requests in flight per model, one actor each. BFL limits the tasks an
    # account may have active at once and returns HTTP 429 above the limit.
    # 24 for most models and 6 for Kontext [max] are the limits we know of.
    # They are an estimate, so check your account's limits.
    bfl_pro_in_flight: int = Field(default=24, ge=1, le=256)
    bfl_max_in_flight: int = Field(default=6, ge=1, le=256)
    # An actor that only waits on HTTP needs a sliver of a CPU.
    bfl_cpus_per_actor: float = Field(default=0.1, ge=0.0)
    # Seconds between polls of a pending task.
    bfl_poll_interval_s: float = Field(default=0.5, gt=0)
    # Seconds one attempt may take from submission to downloaded image,
    # including waits after HTTP 429. Below frame_timeout_s, so that a slow
    # task fails as a retryable error instead of killing the actor.
    bfl_timeout_s: float = Field(default=300.0, gt=0)
    # Seconds one HTTP request may take.
    bfl_http_timeout_s: float = Field(default=60.0, gt=0)

    # Speed settings of the local pipeline backends (tiny, diffusers), passed
    # to every generator actor; docs/benchmarks.md describes each one. The
    # defaults keep diffusers' plain path until GPU figures exist.
    # torch.compile of the transformer: "full" model or "regional" (each block
    # class once, shorter compile). Off by default: compiling costs minutes
    # per actor and frame size, unmeasured here on a GPU.
    gen_compile: Literal["off", "full", "regional"] = "off"
    # Frame sizes compiled when an actor starts ("WxH,WxH"), so compilation
    # counts against actor_start_timeout_s instead of frame_timeout_s.
    # 1024x1024 is the size Kontext [dev] is mostly used at.
    gen_warmup_sizes: str = "1024x1024"
    # torchao float8 transformer: "weight" halves its memory, "dynamic" also
    # runs matmuls in float8. Needs CUDA compute capability 8.9+ and torchao.
    gen_fp8: Literal["off", "weight", "dynamic"] = "off"
    # First Block Cache threshold; None is off. It trades image fidelity for
    # speed, so it must be chosen per project, not by default.
    gen_first_block_cache: float | None = Field(default=None, gt=0, lt=1)
    # Frames whose longer side reaches this many pixels go through the VAE in
    # tiles, bounding its memory; None never tiles, so outputs match diffusers.
    gen_vae_tiling_min_side: int | None = Field(default=None, ge=16)
    # Keep models on the CPU until they run, for GPUs too small for the whole
    # pipeline (about 34 GB of bf16 weights, mostly the 12B transformer and the
    # 4.7B T5 encoder); slower, so off by default.
    gen_cpu_offload: bool = False
    # Reuse a reference's VAE latents and a prompt's text embeddings within an
    # actor. Both give the same images as re-encoding and only save time.
    gen_cache_reference_latents: bool = True
    gen_cache_prompt_embeds: bool = True

    @cached_property
    def catalog_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.home / 'catalog.db').resolve()}"

    @cached_property
    def object_location(self) -> str:
        return self.object_store or str((self.home / "objects").resolve())


def load_settings() -> Settings:
    return Settings()
