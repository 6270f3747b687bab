"""Every tunable of OnModel in one place, read from `ONMODEL_*` environment variables.

Retry, timeout and restart defaults carry the reason for their value beside them.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


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
    # An actor process that dies (OOM kill, node loss) is restarted this many
    # times; a crash loop beyond that fails the run rather than spinning.
    actor_max_restarts: int = Field(default=3, ge=0)
    # A frame whose actor crashed or timed out is retried this many times before
    # it ends `failed`. Two covers a lost node plus one flaky retry.
    frame_max_errors: int = Field(default=2, ge=0)
    # Seconds one generation may take before it counts as hung. A 1024x1024
    # Kontext frame takes about 5-30 s on one GPU; ten minutes leaves room for
    # compilation on the first frame.
    frame_timeout_s: float = Field(default=600.0, gt=0)
    # First retry delay after a transient error, doubled each time.
    retry_backoff_s: float = Field(default=0.5, ge=0)

    # HTTP service.
    api_token: SecretStr | None = None

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
