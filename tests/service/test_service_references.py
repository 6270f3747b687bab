"""URI references: the host allow-list, the address checks and the pinned download.

No test here makes an outbound request: resolvers are fakes, and the only
server is on 127.0.0.1.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from servers import free_port

from orchestrator.service import references
from orchestrator.service.references import (
    CheckedUrl,
    check_http_url,
    check_public_address,
    download_http,
    reference_slots,
)
from schemas.errors import SpecError

WHERE = "characters[0].references[0]"
URL = "https://images.example.com/ana.jpg"


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "127.8.9.10",
        "::1",
        "10.0.0.1",
        "172.16.5.4",
        "192.168.1.1",
        "169.254.169.254",
        "fe80::1",
        "fc00::1",
        "::ffff:127.0.0.1",
        "::ffff:10.1.2.3",
        "0.0.0.0",
        "::",
        "100.64.0.1",
        "224.0.0.1",
        "ff02::1",
        "240.0.0.1",
    ],
)
def test_non_public_addresses_are_rejected(address: str) -> None:
    with pytest.raises(SpecError, match="not a public address") as caught:
        check_public_address(address, WHERE, URL)

    assert caught.value.field == WHERE


@pytest.mark.parametrize("address", ["93.184.216.34", "8.8.8.8", "2606:4700::1111"])
def test_public_addresses_pass(address: str) -> None:
    assert check_public_address(address, WHERE, URL) == address


def resolver(answers: dict[str, list[str]]) -> references.Resolver:
    def resolve(host: str, port: int) -> list[str]:
        if host not in answers:
            raise OSError(f"unknown host {host}")
        return answers[host]

    return resolve


def test_allowed_host_with_public_address() -> None:
    checked = check_http_url(
        "https://Images.Example.com:8443/refs/ana.jpg?v=2",
        WHERE,
        ["images.example.com"],
        resolver({"images.example.com": ["93.184.216.34"]}),
    )

    assert checked.host == "images.example.com"
    assert checked.port == 8443
    assert checked.address == "93.184.216.34"


@pytest.mark.parametrize(
    ("url", "allowed", "answers", "message"),
    [
        (URL, [], {}, "http(s) references are disabled"),
        (URL, ["cdn.example.com"], {}, "not an allowed reference host"),
        ("https://user@images.example.com/a.jpg", ["images.example.com"], {}, "credentials"),
        ("ftp://images.example.com/a.jpg", ["images.example.com"], {}, "invalid"),
        (URL, ["images.example.com"], {}, "could not be resolved"),
        (URL, ["images.example.com"], {"images.example.com": ["127.0.0.1"]}, "not a public"),
        (
            URL,
            ["images.example.com"],
            {"images.example.com": ["93.184.216.34", "169.254.169.254"]},
            "not a public address",
        ),
        ("http://127.0.0.1/a.jpg", ["127.0.0.1"], {"127.0.0.1": ["127.0.0.1"]}, "not a public"),
        ("http://[::1]:80/a.jpg", ["::1"], {"::1": ["::1"]}, "not a public address"),
        ("http://10.0.0.7/a.jpg", ["10.0.0.7"], {"10.0.0.7": ["10.0.0.7"]}, "not a public"),
    ],
)
def test_http_reference_rules(
    url: str, allowed: list[str], answers: dict[str, list[str]], message: str
) -> None:
    with pytest.raises(SpecError, match=message.replace("(", r"\(").replace(")", r"\)")):
        check_http_url(url, WHERE, allowed, resolver(answers))


def test_reference_slots_find_every_reference() -> None:
    document = {
        "characters": [
            {"id": "ana", "references": ["a.jpg", "s3://b/a.jpg"]},
            {"id": "leo", "references": "not-a-list"},
            "not-a-mapping",
        ],
        "style": {"reference": "https://x/y.png"},
    }

    slots = [(where, container[key]) for where, container, key in reference_slots(document)]

    assert slots == [
        ("characters[0].references[0]", "a.jpg"),
        ("characters[0].references[1]", "s3://b/a.jpg"),
        ("style.reference", "https://x/y.png"),
    ]


# The download, tested against a server on loopback by skipping the policy check.


class ImageHandler(BaseHTTPRequestHandler):
    seen_hosts: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
        type(self).seen_hosts.append(self.headers.get("Host", ""))
        if self.path == "/moved":
            self.send_response(302)
            self.send_header("Location", "http://169.254.169.254/latest/meta-data")
            self.end_headers()
            return
        body = b"x" * (4096 if self.path == "/big" else 100)
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def image_server() -> Iterator[int]:
    ImageHandler.seen_hosts = []
    port = free_port()
    server = ThreadingHTTPServer(("127.0.0.1", port), ImageHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield port
    finally:
        server.shutdown()
        server.server_close()


def checked(port: int, path: str) -> CheckedUrl:
    return CheckedUrl(
        url=f"http://images.example.com:{port}{path}",
        host="images.example.com",
        port=port,
        address="127.0.0.1",
    )


def test_download_connects_to_checked_address(image_server: int) -> None:
    data = download_http(checked(image_server, "/ana.jpg"), WHERE, timeout_s=5)

    assert data == b"x" * 100
    assert ImageHandler.seen_hosts == [f"images.example.com:{image_server}"]


def test_download_does_not_follow_redirects(image_server: int) -> None:
    with pytest.raises(SpecError, match="HTTP 302; redirects are not followed"):
        download_http(checked(image_server, "/moved"), WHERE, timeout_s=5)

    assert len(ImageHandler.seen_hosts) == 1


def test_download_stops_at_size_limit(image_server: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(references, "MAX_REFERENCE_BYTES", 1000)

    with pytest.raises(SpecError, match="more than 1000 bytes"):
        download_http(checked(image_server, "/big"), WHERE, timeout_s=5)
