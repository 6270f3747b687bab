"""A headless Chromium driven over the DevTools protocol, for page tests.

Chromium listens on 127.0.0.1 only and resolves no host name except
loopback, so a page under test can reach nothing off this machine.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from websockets.sync.client import ClientConnection, connect

CHROMIUM_CANDIDATES = ("chromium", "chromium-browser")
START_TIMEOUT_S = 30.0
COMMAND_TIMEOUT_S = 30.0


def find_chromium() -> str | None:
    """Return the path of a Chromium executable, or None when none is installed."""
    for name in CHROMIUM_CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None


class Chromium:
    """One headless Chromium process with a fresh profile; use as a context manager."""

    def __init__(self, executable: str, profile: Path) -> None:
        self.executable = executable
        self.profile = profile
        self.process: subprocess.Popen[bytes] | None = None
        self.socket: ClientConnection | None = None
        self._next_id = 0
        self._exit_stack = contextlib.ExitStack()
        # Events received while waiting for command replies, oldest first.
        self.events: list[dict[str, Any]] = []

    def __enter__(self) -> Chromium:
        self.profile.mkdir(parents=True, exist_ok=True)
        # A file left by an earlier browser on this profile would name a dead port.
        (self.profile / "DevToolsActivePort").unlink(missing_ok=True)
        command = [
            self.executable,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--disable-quic",
            "--disable-dev-shm-usage",
            "--disable-extensions",
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
            "--remote-debugging-address=127.0.0.1",
            # Port 0: Chromium picks a free port and writes it to DevToolsActivePort.
            "--remote-debugging-port=0",
            f"--user-data-dir={self.profile}",
            "about:blank",
        ]
        # A new session makes Chromium's helper processes one group that stop() ends.
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
        )
        try:
            port, path = self._wait_for_port()
            url = f"ws://127.0.0.1:{port}{path}"
            # Entered as a context manager, as websockets >= 17.1 expects; stop() exits it.
            self.socket = self._exit_stack.enter_context(
                connect(url, max_size=None, open_timeout=10)
            )
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _wait_for_port(self) -> tuple[int, str]:
        """Return the DevTools port and the browser's websocket path, once Chromium wrote them."""
        port_file = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                stderr = (
                    self.process.stderr.read().decode(errors="replace")
                    if self.process.stderr
                    else ""
                )
                raise RuntimeError(
                    f"chromium exited with code {self.process.returncode}: {stderr[-2000:]}"
                )
            if port_file.is_file():
                lines = port_file.read_text().splitlines()
                if len(lines) >= 2 and lines[0].isdigit():
                    return int(lines[0]), lines[1]
            time.sleep(0.05)
        raise TimeoutError(f"chromium wrote no DevToolsActivePort within {START_TIMEOUT_S} s")

    def stop(self) -> None:
        self._exit_stack.close()
        self.socket = None
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        if self.process is not None and self.process.stderr is not None:
            self.process.stderr.close()
        self.process = None

    def send(
        self, method: str, params: dict[str, Any] | None = None, session: str | None = None
    ) -> dict[str, Any]:
        """Send one DevTools command and return its result; events are kept in `events`."""
        assert self.socket is not None
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        self.socket.send(json.dumps(message))
        deadline = time.monotonic() + COMMAND_TIMEOUT_S
        while True:
            reply = json.loads(self.socket.recv(timeout=max(0.1, deadline - time.monotonic())))
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"DevTools {method} failed: {reply['error']}")
                return dict(reply.get("result", {}))
            self.events.append(reply)

    def wait_for_event(
        self, method: str, session: str, timeout: float = COMMAND_TIMEOUT_S
    ) -> dict[str, Any]:
        assert self.socket is not None
        for event in self.events:
            if event.get("method") == method and event.get("sessionId") == session:
                return event
        deadline = time.monotonic() + timeout
        while True:
            event = json.loads(self.socket.recv(timeout=max(0.1, deadline - time.monotonic())))
            self.events.append(event)
            if event.get("method") == method and event.get("sessionId") == session:
                return event

    def open_page(self, url: str, width: int = 1280, height: int = 900) -> Page:
        """Open `url` in a new tab with console and log capture on; return once it has loaded."""
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})[
            "sessionId"
        ]
        for domain in ("Page", "Runtime", "Log"):
            self.send(f"{domain}.enable", session=session)
        self.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
            session=session,
        )
        self.send("Page.navigate", {"url": url}, session=session)
        self.wait_for_event("Page.loadEventFired", session)
        return Page(self, session)


class Page:
    """One tab of a Chromium, attached through a flat DevTools session."""

    def __init__(self, browser: Chromium, session: str) -> None:
        self.browser = browser
        self.session = session

    def evaluate(self, expression: str) -> Any:
        """Evaluate a JavaScript expression (awaiting promises) and return its JSON value."""
        result = self.browser.send(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
            session=self.session,
        )
        if "exceptionDetails" in result:
            raise RuntimeError(f"page script failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for_text(self, selector: str, timeout: float = 10.0) -> str:
        """Poll until the element's text is final (not empty, not 'saving...'); return it."""
        expression = f"document.querySelector({json.dumps(selector)}).textContent"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.evaluate(expression)
            if text and text != "saving...":
                return str(text)
            time.sleep(0.05)
        raise TimeoutError(f"{selector} still reads {self.evaluate(expression)!r}")

    def errors(self) -> list[str]:
        """Console errors, uncaught exceptions and error log entries (CSP, failed loads) so far."""
        found = []
        for event in self.browser.events:
            if event.get("sessionId") != self.session:
                continue
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.exceptionThrown":
                found.append(json.dumps(params["exceptionDetails"])[:500])
            elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                found.append(
                    " ".join(
                        str(arg.get("value", arg.get("description")))
                        for arg in params.get("args", [])
                    )
                )
            elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
                entry = params["entry"]
                found.append(f"{entry.get('source')}: {entry.get('text')} {entry.get('url', '')}")
        return found

    def screenshot(self, path: Path) -> Path:
        """Save a PNG of the whole page, beyond the viewport."""
        metrics = self.browser.send("Page.getLayoutMetrics", session=self.session)
        size = metrics["cssContentSize"]
        clip = {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}
        result = self.browser.send(
            "Page.captureScreenshot",
            {"format": "png", "captureBeyondViewport": True, "clip": clip},
            session=self.session,
        )
        path.write_bytes(base64.b64decode(result["data"]))
        return path
