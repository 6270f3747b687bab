"""The hosted `bfl` backend: FLUX.1 Kontext [pro] and [max] over the BFL API.

One attempt is one task on the provider, in three stages (BFL API reference,
https://docs.bfl.ai, endpoints `/v1/flux-kontext-pro`, `/v1/flux-kontext-max`
and `/v1/get_result`):

1. Submit: `POST {base}/v1/{model}` with the API key in the `x-key` header and
   a JSON body (prompt, input_image as base64, seed, aspect_ratio,
   output_format, safety_tolerance, prompt_upsampling). The reply is
   `{"id", "polling_url"}`. HTTP 429 means too many active tasks.
2. Poll: `GET polling_url` until the status is final. `Pending` means
   wait. `Ready` comes with `result.sample`, a signed URL. `Error` and
   `Task not found` fail the attempt, and the runner retries it as a new
   task. `Request Moderated` and `Content Moderated` are final for the frame.
3. Download the sample at once: the URL expires about ten minutes after the
   task is ready, so it is fetched exactly once and never stored.

The provider picks the output size from the aspect ratio (about one
megapixel), so the image is center-cropped to the requested aspect ratio and
resized to the requested size, and always returned as PNG.

No torch here: this module runs on machines without a GPU stack.
"""

from __future__ import annotations

import base64
import email.utils
import io
import ipaddress
import logging
import math
import socket
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import httpx
from PIL import Image

from actors.compose import decode_rgb
from schemas.errors import BackendLoadError, GenerationError, ModerationError
from schemas.records import GenerationRequest, GenerationResult

logger = logging.getLogger(__name__)

# Model name in the storyboard -> submit path on the API.
MODELS = {
    "flux-kontext-pro": "/v1/flux-kontext-pro",
    "flux-kontext-max": "/v1/flux-kontext-max",
}
# Options the worker passes at load time (see orchestrator.cluster).
WORKER_OPTIONS = frozenset(
    {"api_key", "base_url", "poll_interval_s", "timeout_s", "http_timeout_s"}
)
# Options a request may carry (the storyboard's `defaults.bfl` block).
REQUEST_OPTIONS = frozenset(
    {"aspect_ratio", "output_format", "safety_tolerance", "prompt_upsampling"}
)
OUTPUT_FORMATS = frozenset({"png", "jpeg"})

STATUS_PENDING = "Pending"
STATUS_READY = "Ready"
STATUS_ERROR = "Error"
STATUS_NOT_FOUND = "Task not found"
MODERATED_STATUSES = frozenset({"Request Moderated", "Content Moderated"})

# The API documents aspect ratios from 21:9 to 9:21.
MIN_ASPECT, MAX_ASPECT = 9 / 21, 21 / 9
# Wait after HTTP 429 when the reply has no usable Retry-After header, and the
# longest wait honoured: the attempt's own deadline bounds the total anyway.
DEFAULT_RETRY_AFTER_S = 2.0
MAX_RETRY_AFTER_S = 60.0
# Characters of an error reply kept in messages: enough for the provider's
# reason, short enough that an echoed base64 image does not flood the logs.
ERROR_BODY_CHARS = 300


def _check_option_names(options: Mapping[str, Any], allowed: frozenset[str], field: str) -> None:
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise ValueError(
            f"{field}: {', '.join(map(repr, unknown))} not supported by the 'bfl' backend; "
            f"supported options are: {', '.join(sorted(allowed))}"
        )


def _positive_float(options: Mapping[str, Any], name: str) -> float:
    value = options.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise BackendLoadError(f"options.{name}: must be a number of seconds > 0, got {value!r}")
    return float(value)


def aspect_ratio(width: int, height: int) -> str:
    """Return width:height in lowest terms, as the API expects ("16:9")."""
    divisor = math.gcd(width, height)
    return f"{width // divisor}:{height // divisor}"


def _host(url: str) -> str:
    return urlsplit(url).hostname or ""


def _same_site(url: str, base_url: str) -> bool:
    """Return whether `url` belongs to the API at `base_url`, so it may receive the key.

    Polling URLs may name a regional host (api.eu.bfl.ai under api.bfl.ai),
    so DNS names match on their last two labels; IP addresses must be equal.
    """
    target, base = urlsplit(url), urlsplit(base_url)
    if target.scheme != base.scheme or not target.hostname or not base.hostname:
        return False
    if target.hostname == base.hostname:
        return True
    try:
        ipaddress.ip_address(base.hostname)
        return False
    except ValueError:
        pass
    site = ".".join(base.hostname.split(".")[-2:])
    return target.hostname == site or target.hostname.endswith("." + site)


def _retry_after(response: httpx.Response) -> float:
    """Return the wait in seconds that a 429 reply requests, within [0, MAX_RETRY_AFTER_S]."""
    header = response.headers.get("retry-after")
    if header is None:
        return DEFAULT_RETRY_AFTER_S
    try:
        seconds = float(header)
    except ValueError:
        # The other form RFC 9110 allows: an HTTP date.
        try:
            when = email.utils.parsedate_to_datetime(header)
        except (TypeError, ValueError):
            return DEFAULT_RETRY_AFTER_S
        seconds = when.timestamp() - time.time()
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)


def _body_excerpt(response: httpx.Response) -> str:
    text = " ".join(response.text.split())
    return text if len(text) <= ERROR_BODY_CHARS else text[:ERROR_BODY_CHARS] + "..."


def fit_to_size(image: Image.Image, width: int, height: int) -> Image.Image:
    """Center-crop `image` to the aspect ratio of width x height, then resize to that size."""
    if image.size == (width, height):
        return image
    target = width / height
    if image.width / image.height > target:
        crop_width = max(1, round(image.height * target))
        left = (image.width - crop_width) // 2
        image = image.crop((left, 0, left + crop_width, image.height))
    else:
        crop_height = max(1, round(image.width / target))
        top = (image.height - crop_height) // 2
        image = image.crop((0, top, image.width, top + crop_height))
    return image.resize((width, height), Image.Resampling.LANCZOS)


class BflBackend:
    """A client of the BFL API for one Kontext model, serving one attempt at a time."""

    name = "bfl"
    device = "remote"

    def __init__(
        self,
        model: str,
        api_key: str,
        base_url: str,
        *,
        poll_interval_s: float,
        timeout_s: float,
        http_timeout_s: float,
    ) -> None:
        self.model = model
        self.base_url = base_url.rstrip("/")
        self.poll_interval_s = poll_interval_s
        self.timeout_s = timeout_s
        self._submit_url = self.base_url + MODELS[model]
        # The key lives only in these headers; it is sent to the API host and
        # never to the signed result URLs, which need no key.
        self._api_headers = {"x-key": api_key, "accept": "application/json"}
        self._client = httpx.Client(timeout=http_timeout_s, follow_redirects=False)
        self._node = socket.gethostname()

    def __repr__(self) -> str:
        return f"BflBackend(model={self.model!r}, base_url={self.base_url!r})"

    def close(self) -> None:
        self._client.close()

    def generate(self, request: GenerationRequest) -> GenerationResult:
        """Run one task on the provider; return a PNG of exactly request.width x request.height.

        Raises ModerationError when the provider moderated the request or its
        result, GenerationError for every other failure of this attempt
        (provider error, HTTP error, expired result URL, deadline passed), and
        ValueError for an invalid request.
        """
        # 1. Check the request and build the task body.
        body = self._task_body(request)
        label = f"frame {request.frame_key} attempt {request.attempt}"
        started = time.monotonic()
        deadline = started + self.timeout_s

        # 2. Submit, then poll until the task is final.
        task_id, polling_url = self._submit(body, label, deadline)
        sample_url = self._poll(task_id, polling_url, label, deadline)

        # 3. Download the result at once: its URL expires within minutes.
        data = self._download(sample_url, label)
        image = decode_rgb(data, "result.sample")
        provider_size = image.size
        image = fit_to_size(image, request.width, request.height)
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        seconds = time.monotonic() - started
        logger.debug(
            "%s: task %s done in %.1f s; provider returned %dx%d, stored %dx%d",
            label,
            task_id,
            seconds,
            *provider_size,
            request.width,
            request.height,
        )
        return GenerationResult(
            frame_key=request.frame_key,
            attempt=request.attempt,
            png=buffer.getvalue(),
            width=request.width,
            height=request.height,
            seconds=seconds,
            node=self._node,
            device=self.device,
            backend=request.backend,
            model=request.model,
        )

    # Stages

    def _task_body(self, request: GenerationRequest) -> dict[str, Any]:
        _check_option_names(request.options, REQUEST_OPTIONS, "request.options")
        options = request.options
        for field in ("width", "height"):
            value = getattr(request, field)
            if value <= 0:
                raise ValueError(
                    f"request.{field}: must be a positive number of pixels, got {value}"
                )
        ratio = options.get("aspect_ratio") or aspect_ratio(request.width, request.height)
        width, height = (int(part) for part in str(ratio).split(":"))
        if not MIN_ASPECT <= width / height <= MAX_ASPECT:
            raise ValueError(
                f"request.width/height: aspect ratio {ratio} is outside the 21:9 to 9:21 range "
                "of the BFL API; choose a frame size closer to square"
            )
        output_format = options.get("output_format", "png")
        if output_format not in OUTPUT_FORMATS:
            raise ValueError(
                f"request.options.output_format: {output_format!r} is not one of: "
                f"{', '.join(sorted(OUTPUT_FORMATS))}"
            )

        body: dict[str, Any] = {
            "prompt": request.prompt,
            "seed": request.seed,
            "aspect_ratio": ratio,
            "output_format": output_format,
            "prompt_upsampling": bool(options.get("prompt_upsampling", False)),
        }
        if options.get("safety_tolerance") is not None:
            body["safety_tolerance"] = int(options["safety_tolerance"])
        if request.conditioning_png is not None:
            body["input_image"] = base64.b64encode(request.conditioning_png).decode("ascii")
        return body

    def _submit(self, body: dict[str, Any], label: str, deadline: float) -> tuple[str, str]:
        response = self._call_past_429("POST", self._submit_url, label, deadline, json=body)
        if response.status_code != 200:
            raise GenerationError(
                f"{label}: BFL rejected the task with HTTP {response.status_code}: "
                f"{_body_excerpt(response)}{self._status_hint(response.status_code)}"
            )
        reply = self._json(response, label)
        task_id = reply.get("id")
        if not isinstance(task_id, str) or not task_id:
            raise GenerationError(f"{label}: BFL reply has no task id: {_body_excerpt(response)}")
        polling_url = reply.get("polling_url") or f"{self.base_url}/v1/get_result?id={task_id}"
        if not _same_site(polling_url, self.base_url):
            raise GenerationError(
                f"{label}: polling_url host {_host(polling_url)!r} is not under the API host "
                f"{_host(self.base_url)!r}; the API key is not sent there"
            )
        logger.debug("%s: submitted task %s", label, task_id)
        return task_id, polling_url

    def _poll(self, task_id: str, polling_url: str, label: str, deadline: float) -> str:
        while True:
            response = self._call_past_429("GET", polling_url, label, deadline)
            if response.status_code != 200:
                raise GenerationError(
                    f"{label}: polling task {task_id} failed with HTTP {response.status_code}: "
                    f"{_body_excerpt(response)}"
                )
            reply = self._json(response, label)
            status = reply.get("status")
            if status == STATUS_READY:
                result = reply.get("result")
                sample = result.get("sample") if isinstance(result, dict) else None
                if not isinstance(sample, str) or not sample:
                    raise GenerationError(
                        f"{label}: task {task_id} is Ready but has no result.sample"
                    )
                return sample
            if status in MODERATED_STATUSES:
                raise ModerationError(
                    f"{label}: BFL task {task_id} ended {status!r}; the frame is not retried"
                    f"{self._details(reply)}"
                )
            if status in (STATUS_ERROR, STATUS_NOT_FOUND):
                raise GenerationError(
                    f"{label}: BFL task {task_id} ended {status!r}{self._details(reply)}"
                )
            if status != STATUS_PENDING:
                # A status this client does not know yet: keep polling until the deadline.
                logger.warning(
                    "%s: task %s has unknown status %r; still polling", label, task_id, status
                )
            self._sleep(self.poll_interval_s, label, deadline, f"task {task_id} still {status!r}")

    def _download(self, sample_url: str, label: str) -> bytes:
        response = self._call("GET", sample_url, label, headers={}, follow_redirects=True)
        if response.status_code != 200:
            # Expired (or otherwise unreadable) result: the task cannot be fetched again,
            # so the attempt fails and the runner submits a new task.
            raise GenerationError(
                f"{label}: result download from {_host(sample_url)!r} failed with HTTP "
                f"{response.status_code}; result URLs expire about ten minutes after the task "
                "is ready"
            )
        return response.content

    # HTTP helpers

    def _call(
        self,
        method: str,
        url: str,
        label: str,
        *,
        headers: dict[str, str] | None = None,
        json: dict[str, Any] | None = None,
        follow_redirects: bool = False,
    ) -> httpx.Response:
        try:
            return self._client.request(
                method,
                url,
                headers=self._api_headers if headers is None else headers,
                json=json,
                follow_redirects=follow_redirects,
            )
        except httpx.HTTPError as exc:
            raise GenerationError(
                f"{label}: {method} to {_host(url)!r} failed: {type(exc).__name__}: {exc}"
            ) from None

    def _json(self, response: httpx.Response, label: str) -> dict[str, Any]:
        try:
            reply = response.json()
        except ValueError:
            reply = None
        if not isinstance(reply, dict):
            raise GenerationError(
                f"{label}: BFL reply is not a JSON object: {_body_excerpt(response)}"
            )
        return reply

    def _call_past_429(
        self,
        method: str,
        url: str,
        label: str,
        deadline: float,
        *,
        json: dict[str, Any] | None = None,
    ) -> httpx.Response:
        """Send a request again after each HTTP 429 (too many active tasks), until the deadline."""
        while True:
            response = self._call(method, url, label, json=json)
            if response.status_code != 429:
                return response
            wait = _retry_after(response)
            logger.warning(
                "%s: BFL returned HTTP 429 (too many active tasks); retrying in %.1f s", label, wait
            )
            self._sleep(wait, label, deadline, "rate limited (HTTP 429)")

    def _sleep(self, seconds: float, label: str, deadline: float, state: str) -> None:
        if time.monotonic() + seconds > deadline:
            raise GenerationError(
                f"{label}: timed out after {self.timeout_s:.0f} s ({state}); "
                "raise ONMODEL_BFL_TIMEOUT_S if the provider is slow"
            )
        time.sleep(seconds)

    @staticmethod
    def _details(reply: dict[str, Any]) -> str:
        details = reply.get("details")
        if not details:
            return ""
        text = " ".join(str(details).split())
        return f" ({text[:ERROR_BODY_CHARS]})"

    @staticmethod
    def _status_hint(status: int) -> str:
        if status in (401, 403):
            return "; check ONMODEL_BFL_API_KEY"
        if status == 402:
            return "; the BFL account is out of credits"
        if status == 422:
            return "; check the storyboard's defaults.bfl block and frame size"
        return ""


def load_bfl_backend(model: str, options: Mapping[str, Any]) -> BflBackend:
    """Build the client for `model` from the worker's options.

    Every option in WORKER_OPTIONS is required; `orchestrator.cluster` fills
    them from the settings, which hold their defaults.

    Raises BackendLoadError naming the setting to fix when the model is not
    a hosted Kontext model, the API key is missing or an option is invalid.
    """
    try:
        _check_option_names(options, WORKER_OPTIONS, "options")
    except ValueError as exc:
        raise BackendLoadError(str(exc)) from None
    if model not in MODELS:
        raise BackendLoadError(
            f"defaults.model: {model!r} is not a hosted Kontext model; the bfl backend serves: "
            f"{', '.join(sorted(MODELS))}"
        )
    api_key = options.get("api_key")
    if not isinstance(api_key, str) or not api_key.strip():
        raise BackendLoadError(
            "options.api_key: missing; set ONMODEL_BFL_API_KEY to your BFL API key"
        )
    base_url = options.get("base_url")
    if not isinstance(base_url, str) or urlsplit(base_url).scheme not in ("http", "https"):
        raise BackendLoadError(
            f"options.base_url: {base_url!r} is not an http(s) URL; set ONMODEL_BFL_BASE_URL"
        )
    return BflBackend(
        model,
        api_key.strip(),
        base_url,
        poll_interval_s=_positive_float(options, "poll_interval_s"),
        timeout_s=_positive_float(options, "timeout_s"),
        http_timeout_s=_positive_float(options, "http_timeout_s"),
    )
