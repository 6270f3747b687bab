"""A fake BFL API on 127.0.0.1 that follows the provider's documented protocol.

Submit: POST /v1/flux-kontext-pro (or -max) with `x-key` -> {"id", "polling_url"}.
Poll: GET /v1/get_result?id=... with `x-key` -> {"id", "status", "result"}.
Result: GET /delivery/<id>.<format>, which, like the provider's signed URLs,
stops working: here after its first fetch.

Markers in the prompt choose a behaviour, so one run can mix them:

    [slow]               Pending for SLOW_POLLS polls before Ready
    [request-moderated]  the task ends "Request Moderated"
    [content-moderated]  the task ends "Content Moderated"
    [error-once]         the first task with the marker ends "Error"
    [429-once]           the first submit with the marker gets HTTP 429
    [expired-once]       the first task's result URL has expired already
    [not-found]          polling returns "Task not found"
    [off-site]           the polling_url names another host

The image returned is the input image (or grey) resized to about
PROVIDER_AREA pixels at the requested aspect ratio, so its size differs
from the frame size, as the provider's does.
"""

from __future__ import annotations

import base64
import io
import json
import math
import threading
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from PIL import Image

# A key shaped like a real one, so that a leak is found by a plain byte search.
API_KEY = "bfl_test_6d1f0c9a2e7b4d8f93a1c5e07b2f4a66"
SLOW_POLLS = 4
# About 96 x 96 pixels: the provider returns about a megapixel; small keeps tests fast.
PROVIDER_AREA = 96 * 96
RETRY_AFTER_S = "1"
MODELS = ("flux-kontext-pro", "flux-kontext-max")


@dataclass
class Task:
    id: str
    prompt: str
    body: dict[str, Any]
    pending_polls: int
    final_status: str
    expired: bool = False
    polls: int = 0


@dataclass
class Record:
    """What the server saw, for the tests' assertions."""

    submits: list[dict[str, Any]] = field(default_factory=list)
    submit_keys: list[str | None] = field(default_factory=list)
    poll_keys: list[str | None] = field(default_factory=list)
    sample_keys: list[str | None] = field(default_factory=list)
    # Result path -> number of GETs.
    sample_fetches: dict[str, int] = field(default_factory=dict)
    rate_limited: int = 0
    markers_seen: dict[str, int] = field(default_factory=dict)


class FakeBfl:
    """The server and its state; `url` is its base URL."""

    def __init__(self, api_key: str) -> None:
        self.api_key = api_key
        self.tasks: dict[str, Task] = {}
        self.record = Record()
        self.lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def start(self) -> FakeBfl:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def first_time(self, marker: str) -> bool:
        """Count a marker and return whether this is its first occurrence."""
        count = self.record.markers_seen.get(marker, 0)
        self.record.markers_seen[marker] = count + 1
        return count == 0

    def new_task(self, body: dict[str, Any]) -> Task:
        prompt = str(body.get("prompt", ""))
        pending, final, expired = 1, "Ready", False
        if "[slow]" in prompt:
            pending = SLOW_POLLS
        if "[request-moderated]" in prompt:
            final = "Request Moderated"
        if "[content-moderated]" in prompt:
            final = "Content Moderated"
        if "[error-once]" in prompt and self.first_time("[error-once]"):
            final = "Error"
        if "[expired-once]" in prompt and self.first_time("[expired-once]"):
            expired = True
        task = Task(uuid.uuid4().hex, prompt, body, pending, final, expired)
        self.tasks[task.id] = task
        return task

    def image_bytes(self, task: Task) -> bytes:
        width, height = (int(part) for part in str(task.body.get("aspect_ratio", "1:1")).split(":"))
        out_width = max(16, round(math.sqrt(PROVIDER_AREA * width / height)))
        out_height = max(16, round(math.sqrt(PROVIDER_AREA * height / width)))
        if task.body.get("input_image"):
            source = Image.open(io.BytesIO(base64.b64decode(task.body["input_image"]))).convert(
                "RGB"
            )
            image = source.resize((out_width, out_height))
        else:
            image = Image.new("RGB", (out_width, out_height), (90, 120, 150))
        buffer = io.BytesIO()
        fmt = "JPEG" if task.body.get("output_format") == "jpeg" else "PNG"
        image.save(buffer, format=fmt)
        return buffer.getvalue()


def _handler(fake: FakeBfl) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            # Quiet: the default handler writes every request to stderr.
            return

        def _send(
            self,
            status: int,
            payload: Any = None,
            *,
            raw: bytes | None = None,
            content_type: str = "application/json",
            headers: dict[str, str] | None = None,
        ) -> None:
            data = raw if raw is not None else json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("content-type", content_type)
            self.send_header("content-length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def _authorised(self) -> bool:
            if self.headers.get("x-key") == fake.api_key:
                return True
            self._send(403, {"detail": "Not authenticated - Invalid Authentication"})
            return False

        def do_POST(self) -> None:
            path = urlsplit(self.path).path
            length = int(self.headers.get("content-length", "0"))
            body = json.loads(self.rfile.read(length) or b"{}")
            with fake.lock:
                fake.record.submit_keys.append(self.headers.get("x-key"))
                if path not in {f"/v1/{model}" for model in MODELS}:
                    self._send(404, {"detail": "Not Found"})
                    return
                if not self._authorised():
                    return
                if "[429-once]" in str(body.get("prompt", "")) and fake.first_time("[429-once]"):
                    fake.record.rate_limited += 1
                    self._send(
                        429,
                        {"detail": "You have exceeded the number of active tasks"},
                        headers={"retry-after": RETRY_AFTER_S},
                    )
                    return
                fake.record.submits.append(body)
                task = fake.new_task(body)
            host = "127.0.0.2" if "[off-site]" in task.prompt else "127.0.0.1"
            polling_url = f"http://{host}:{fake.port}/v1/get_result?id={task.id}"
            self._send(200, {"id": task.id, "polling_url": polling_url})

        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            if parts.path == "/v1/get_result":
                self._poll(parse_qs(parts.query).get("id", [""])[0])
            elif parts.path.startswith("/delivery/"):
                self._sample(parts.path)
            else:
                self._send(404, {"detail": "Not Found"})

        def _poll(self, task_id: str) -> None:
            with fake.lock:
                fake.record.poll_keys.append(self.headers.get("x-key"))
                if not self._authorised():
                    return
                task = fake.tasks.get(task_id)
                if task is None or "[not-found]" in task.prompt:
                    self._send(200, {"id": task_id, "status": "Task not found", "result": None})
                    return
                task.polls += 1
                if task.polls < task.pending_polls:
                    self._send(
                        200, {"id": task_id, "status": "Pending", "result": None, "progress": 0.5}
                    )
                    return
                if task.final_status != "Ready":
                    details = {"reason": task.final_status.lower()}
                    self._send(
                        200,
                        {
                            "id": task_id,
                            "status": task.final_status,
                            "result": None,
                            "details": details,
                        },
                    )
                    return
            extension = "jpeg" if task.body.get("output_format") == "jpeg" else "png"
            sample = f"http://127.0.0.1:{fake.port}/delivery/{task.id}.{extension}?se=signed"
            self._send(
                200,
                {
                    "id": task_id,
                    "status": "Ready",
                    "result": {"sample": sample, "seed": task.body.get("seed")},
                },
            )

        def _sample(self, path: str) -> None:
            task_id = path.removeprefix("/delivery/").split(".")[0]
            with fake.lock:
                fake.record.sample_keys.append(self.headers.get("x-key"))
                count = fake.record.sample_fetches.get(path, 0)
                fake.record.sample_fetches[path] = count + 1
                task = fake.tasks.get(task_id)
                # Signed URLs stop working: here after one fetch, or at once for [expired-once].
                if task is None or task.expired or count > 0:
                    self._send(
                        403,
                        raw=b"<Error><Code>AccessDenied</Code>Request has expired</Error>",
                        content_type="application/xml",
                    )
                    return
                data = fake.image_bytes(task)
            content_type = "image/jpeg" if path.endswith(".jpeg") else "image/png"
            self._send(200, raw=data, content_type=content_type)

    return Handler


def worker_options(fake: FakeBfl, **overrides: Any) -> dict[str, Any]:
    """Return the worker options of a `bfl` backend that talks to `fake`."""
    options: dict[str, Any] = {
        "api_key": API_KEY,
        "base_url": fake.url,
        "poll_interval_s": 0.02,
        "timeout_s": 20.0,
        "http_timeout_s": 5.0,
    }
    options.update(overrides)
    return options
