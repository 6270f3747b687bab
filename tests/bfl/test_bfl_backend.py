"""The `bfl` backend against a fake BFL API on loopback, in this process."""

from __future__ import annotations

import base64
import io
import logging
import time
from typing import Any

import pytest
from bfl_fake_server import API_KEY, SLOW_POLLS, FakeBfl, worker_options
from PIL import Image

from actors.backends import load_backend
from actors.backends.bfl import BflBackend, aspect_ratio, fit_to_size, load_bfl_backend
from actors.compose import compose_canvas
from schemas.errors import BackendLoadError, GenerationError, ModerationError
from schemas.records import GenerationRequest


def request(prompt: str = "Ana at a counter", **fields: Any) -> GenerationRequest:
    values: dict[str, Any] = {
        "frame_key": "f0",
        "attempt": 1,
        "prompt": prompt,
        "backend": "bfl",
        "model": "flux-kontext-pro",
        "width": 64,
        "height": 48,
        "steps": 28,
        "guidance": 2.5,
        "seed": 1234,
    }
    values.update(fields)
    return GenerationRequest(**values)


def backend_for(fake: FakeBfl, model: str = "flux-kontext-pro", **overrides: Any) -> BflBackend:
    return load_bfl_backend(model, worker_options(fake, **overrides))


def png_size(data: bytes) -> tuple[int, int]:
    image = Image.open(io.BytesIO(data))
    assert image.format == "PNG"
    return image.size


def test_registry_loads_bfl_backend(fake_bfl: FakeBfl) -> None:
    backend = load_backend("bfl", "flux-kontext-max", worker_options(fake_bfl))

    assert backend.name == "bfl"
    assert backend.device == "remote"
    assert backend.model == "flux-kontext-max"


def test_generate_returns_png_at_requested_size(fake_bfl: FakeBfl) -> None:
    result = backend_for(fake_bfl).generate(request())

    assert png_size(result.png) == (64, 48)
    assert (result.width, result.height) == (64, 48)
    assert result.device == "remote"
    assert len(fake_bfl.record.submits) == 1


def test_jpeg_output_is_stored_as_png(fake_bfl: FakeBfl) -> None:
    result = backend_for(fake_bfl).generate(request(options={"output_format": "jpeg"}))

    assert png_size(result.png) == (64, 48)
    assert fake_bfl.record.submits[0]["output_format"] == "jpeg"


def test_request_body_carries_spec_fields(fake_bfl: FakeBfl) -> None:
    canvas = compose_canvas([Image_bytes((200, 30, 30))], 64, 48)
    options = {"safety_tolerance": 4, "prompt_upsampling": True, "aspect_ratio": "3:2"}

    backend_for(fake_bfl).generate(
        request(seed=987654321, conditioning_png=canvas, options=options)
    )

    body = fake_bfl.record.submits[0]
    assert body["prompt"] == "Ana at a counter"
    assert body["seed"] == 987654321
    assert body["aspect_ratio"] == "3:2"
    assert body["safety_tolerance"] == 4
    assert body["prompt_upsampling"] is True
    assert body["output_format"] == "png"
    assert base64.b64decode(body["input_image"]) == canvas


def test_aspect_ratio_derived_from_frame_size(fake_bfl: FakeBfl) -> None:
    backend_for(fake_bfl).generate(request(width=1024, height=576))

    body = fake_bfl.record.submits[0]
    assert body["aspect_ratio"] == "16:9"
    assert "safety_tolerance" not in body
    assert "input_image" not in body
    assert aspect_ratio(192, 320) == "3:5"


def test_aspect_ratio_outside_range_is_rejected(fake_bfl: FakeBfl) -> None:
    with pytest.raises(ValueError, match="21:9 to 9:21"):
        backend_for(fake_bfl).generate(request(width=1024, height=128))

    assert fake_bfl.record.submits == []


def test_slow_task_is_polled_until_ready(fake_bfl: FakeBfl) -> None:
    result = backend_for(fake_bfl).generate(request("[slow] Ana waits"))

    task = next(iter(fake_bfl.tasks.values()))
    assert task.polls == SLOW_POLLS
    assert png_size(result.png) == (64, 48)


@pytest.mark.parametrize("status", ["request-moderated", "content-moderated"])
def test_moderated_task_raises_moderation_error(fake_bfl: FakeBfl, status: str) -> None:
    with pytest.raises(ModerationError, match="Moderated"):
        backend_for(fake_bfl).generate(request(f"[{status}] Ana"))

    assert fake_bfl.record.sample_fetches == {}


def test_error_status_raises_generation_error(fake_bfl: FakeBfl) -> None:
    with pytest.raises(GenerationError, match="'Error'") as info:
        backend_for(fake_bfl).generate(request("[error-once] Ana"))

    assert not isinstance(info.value, ModerationError)


def test_task_not_found_raises_generation_error(fake_bfl: FakeBfl) -> None:
    with pytest.raises(GenerationError, match="Task not found"):
        backend_for(fake_bfl).generate(request("[not-found] Ana"))


def test_rate_limit_waits_retry_after(fake_bfl: FakeBfl) -> None:
    started = time.monotonic()
    result = backend_for(fake_bfl).generate(request("[429-once] Ana"))
    elapsed = time.monotonic() - started

    assert fake_bfl.record.rate_limited == 1
    assert len(fake_bfl.record.submits) == 1
    # The fake sends Retry-After: 1.
    assert elapsed >= 1.0
    assert png_size(result.png) == (64, 48)


def test_rate_limit_beyond_deadline_fails(fake_bfl: FakeBfl) -> None:
    with pytest.raises(GenerationError, match="timed out"):
        backend_for(fake_bfl, timeout_s=0.5).generate(request("[429-once] Ana"))


def test_expired_result_url_fails_attempt(fake_bfl: FakeBfl) -> None:
    with pytest.raises(GenerationError, match="HTTP 403"):
        backend_for(fake_bfl).generate(request("[expired-once] Ana"))

    assert list(fake_bfl.record.sample_fetches.values()) == [1]


def test_result_url_fetched_once(fake_bfl: FakeBfl) -> None:
    backend = backend_for(fake_bfl)
    for index in range(3):
        backend.generate(request(f"Ana {index}", frame_key=f"f{index}"))

    assert len(fake_bfl.record.sample_fetches) == 3
    assert set(fake_bfl.record.sample_fetches.values()) == {1}


def test_poll_timeout_raises_generation_error(fake_bfl: FakeBfl) -> None:
    backend = backend_for(fake_bfl, poll_interval_s=0.3, timeout_s=0.5)

    with pytest.raises(GenerationError, match="timed out"):
        backend.generate(request("[slow] Ana"))


def test_key_sent_to_api_host_only(fake_bfl: FakeBfl) -> None:
    backend_for(fake_bfl).generate(request())

    assert fake_bfl.record.submit_keys == [API_KEY]
    assert fake_bfl.record.poll_keys and set(fake_bfl.record.poll_keys) == {API_KEY}
    assert fake_bfl.record.sample_keys == [None]


def test_off_site_polling_url_is_refused(fake_bfl: FakeBfl) -> None:
    with pytest.raises(GenerationError, match="not under the API host"):
        backend_for(fake_bfl).generate(request("[off-site] Ana"))

    assert fake_bfl.record.poll_keys == []


def test_wrong_key_names_the_setting(fake_bfl: FakeBfl) -> None:
    backend = backend_for(fake_bfl, api_key="bfl_wrong")

    with pytest.raises(GenerationError, match="HTTP 403.*ONMODEL_BFL_API_KEY"):
        backend.generate(request())


def test_unreachable_api_raises_generation_error(fake_bfl: FakeBfl) -> None:
    url = fake_bfl.url
    fake_bfl.stop()

    with pytest.raises(GenerationError, match="failed"):
        load_bfl_backend(
            "flux-kontext-pro", {**worker_options(fake_bfl), "base_url": url}
        ).generate(request())


@pytest.mark.parametrize(
    ("model", "options", "message"),
    [
        ("black-forest-labs/FLUX.1-Kontext-dev", {}, "not a hosted Kontext model"),
        ("flux-kontext-pro", {"api_key": ""}, "ONMODEL_BFL_API_KEY"),
        ("flux-kontext-pro", {"base_url": "ftp://x"}, "ONMODEL_BFL_BASE_URL"),
        ("flux-kontext-pro", {"timeout_s": 0}, "options.timeout_s"),
        ("flux-kontext-pro", {"device": "cuda"}, "not supported"),
    ],
)
def test_load_rejects_invalid_setup(
    fake_bfl: FakeBfl, model: str, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(BackendLoadError, match=message) as info:
        load_bfl_backend(model, worker_options(fake_bfl, **options))

    assert API_KEY not in str(info.value)


def test_worker_logs_never_contain_key(fake_bfl: FakeBfl, caplog: pytest.LogCaptureFixture) -> None:
    """The worker as the runner builds it, in this process so that its logs are captured."""
    from actors.generator import GeneratorWorker

    caplog.set_level(logging.DEBUG)
    worker = GeneratorWorker("bfl", "flux-kontext-pro", worker_options(fake_bfl))
    worker.generate(request("[slow] [429-once] Ana"))
    for prompt in ("[error-once] Ana", "[request-moderated] Ana", "[expired-once] Ana"):
        with pytest.raises(GenerationError):
            worker.generate(request(prompt))
    with pytest.raises(BackendLoadError):
        GeneratorWorker("bfl", "flux-kontext-pro", worker_options(fake_bfl, timeout_s=-1))

    assert "429" in caplog.text
    assert "submitted task" in caplog.text
    assert API_KEY not in caplog.text
    assert API_KEY not in repr(worker.__dict__)


def test_fit_to_size_crops_to_aspect_ratio() -> None:
    # Left third red, the rest blue: a 3:1 image cropped to 1:1 keeps the middle.
    image = Image.new("RGB", (300, 100), (0, 0, 255))
    image.paste((255, 0, 0), (0, 0, 100, 100))

    fitted = fit_to_size(image, 50, 50)

    assert fitted.size == (50, 50)
    assert fitted.getpixel((25, 25)) == (0, 0, 255)


def Image_bytes(color: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (40, 40), color).save(buffer, format="PNG")
    return buffer.getvalue()
