"""How the `bfl` backend is configured: settings, actor resources and the spec's `bfl` block."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from orchestrator.cluster import generator_actor_options, generator_worker_options, pool_size
from orchestrator.settings import Settings
from schemas.errors import BackendLoadError
from schemas.storyboard import BflOptions, Defaults

KEY = "bfl_settings_test_key_0123456789"


def test_pool_size_is_in_flight_cap_per_model() -> None:
    settings = Settings(actors=3, bfl_pro_in_flight=24, bfl_max_in_flight=6)

    assert pool_size(settings, "bfl", "flux-kontext-pro") == 24
    assert pool_size(settings, "bfl", "flux-kontext-max") == 6
    assert pool_size(settings, "tiny", "tiny-random-kontext") == 3


def test_bfl_actors_reserve_no_gpu() -> None:
    settings = Settings(gpus_per_actor=1.0, cpus_per_actor=4.0, bfl_cpus_per_actor=0.1)

    options = generator_actor_options(settings, "bfl")

    assert options["num_gpus"] == 0.0
    assert options["num_cpus"] == 0.1
    assert options["max_concurrency"] == 1
    assert generator_actor_options(settings, "diffusers")["num_gpus"] == 1.0


def test_worker_options_carry_key_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ONMODEL_BFL_API_KEY", KEY)
    monkeypatch.setenv("ONMODEL_BFL_BASE_URL", "https://api.eu.bfl.ai")
    settings = Settings()

    options = generator_worker_options(settings, "bfl")

    assert options["api_key"] == KEY
    assert options["base_url"] == "https://api.eu.bfl.ai"
    assert "torch_threads" not in options
    # The settings object itself never shows the key.
    assert KEY not in repr(settings)
    assert KEY not in str(settings.model_dump())


def test_worker_options_without_key_raise() -> None:
    with pytest.raises(BackendLoadError, match="ONMODEL_BFL_API_KEY"):
        generator_worker_options(Settings(bfl_api_key=None), "bfl")


def test_invalid_base_url_is_rejected() -> None:
    with pytest.raises(ValidationError):
        Settings(bfl_base_url="api.bfl.ai")


def test_bfl_block_defaults() -> None:
    options = Defaults().bfl

    assert options.model_dump(exclude_none=True) == {
        "output_format": "png",
        "prompt_upsampling": False,
    }


@pytest.mark.parametrize(
    "fields",
    [
        {"aspect_ratio": "22:9"},
        {"aspect_ratio": "1:3"},
        {"aspect_ratio": "16/9"},
        {"safety_tolerance": 7},
        {"output_format": "webp"},
        {"seed": 3},
    ],
)
def test_bfl_block_rejects_invalid_fields(fields: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        BflOptions(**fields)


def test_bfl_block_accepts_documented_range() -> None:
    assert BflOptions(aspect_ratio="21:9").aspect_ratio == "21:9"
    assert BflOptions(aspect_ratio="9:21", safety_tolerance=0).safety_tolerance == 0
