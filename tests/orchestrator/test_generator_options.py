"""The gen_ settings reach the pipeline backends as valid worker options."""

from __future__ import annotations

import pytest

from actors.backends.options import FAST_PATH_OPTIONS, parse_fast_path_options
from orchestrator.cluster import generator_worker_options
from orchestrator.settings import Settings


def test_defaults_parse_as_worker_options() -> None:
    options = generator_worker_options(Settings(), "tiny")
    options.pop("torch_threads")

    parsed = parse_fast_path_options(options)

    assert set(options) <= FAST_PATH_OPTIONS
    assert parsed.compile == "off"
    assert parsed.warmup_sizes == ((1024, 1024),)
    assert parsed.cache_reference_latents is True
    assert parsed.cache_prompt_embeds is True


def test_environment_settings_reach_options(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ONMODEL_GEN_COMPILE", "regional")
    monkeypatch.setenv("ONMODEL_GEN_WARMUP_SIZES", "768x1344,1024x1024")
    monkeypatch.setenv("ONMODEL_GEN_FP8", "dynamic")
    monkeypatch.setenv("ONMODEL_GEN_FIRST_BLOCK_CACHE", "0.12")
    monkeypatch.setenv("ONMODEL_GEN_VAE_TILING_MIN_SIDE", "1536")
    monkeypatch.setenv("ONMODEL_GEN_CPU_OFFLOAD", "true")
    monkeypatch.setenv("ONMODEL_GEN_CACHE_REFERENCE_LATENTS", "false")
    monkeypatch.setenv("ONMODEL_GEN_CACHE_PROMPT_EMBEDS", "false")
    options = generator_worker_options(Settings(), "diffusers")
    options.pop("torch_threads")

    parsed = parse_fast_path_options(options)

    assert parsed.compile == "regional"
    assert parsed.warmup_sizes == ((768, 1344), (1024, 1024))
    assert parsed.fp8 == "dynamic"
    assert parsed.first_block_cache == 0.12
    assert parsed.vae_tiling_min_side == 1536
    assert parsed.cpu_offload is True
    assert parsed.cache_reference_latents is False
    assert parsed.cache_prompt_embeds is False


def test_out_of_range_threshold_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ONMODEL_GEN_FIRST_BLOCK_CACHE", "1.5")

    with pytest.raises(ValueError, match="gen_first_block_cache"):
        Settings()
