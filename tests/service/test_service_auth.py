"""The listen-address rule: no API token, no listening beyond loopback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import SecretStr
from servers import free_port
from service_helpers import TOKEN

from orchestrator.service.auth import ServiceConfigError, check_listen_address, is_loopback

LOOPBACK = ["127.0.0.1", "127.0.0.2", "localhost", "LOCALHOST", "::1", "[::1]"]


@pytest.mark.parametrize("host", LOOPBACK)
def test_loopback_hosts(host: str) -> None:
    assert is_loopback(host)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.0.0.5", "192.168.1.20", "example.com", ""])
def test_other_hosts_are_not_loopback(host: str) -> None:
    assert not is_loopback(host)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.0.0.5", "onmodel.internal"])
def test_public_listen_without_token_is_rejected(host: str) -> None:
    with pytest.raises(ServiceConfigError, match="listens beyond loopback"):
        check_listen_address(host, None)


def test_listen_rules_with_token() -> None:
    check_listen_address("127.0.0.1", None)
    check_listen_address("127.0.0.1", SecretStr(""))
    with pytest.raises(ServiceConfigError, match="listens beyond loopback"):
        check_listen_address("0.0.0.0", SecretStr(""))
    check_listen_address("0.0.0.0", SecretStr(TOKEN))
    with pytest.raises(ServiceConfigError, match="shorter than 16 characters"):
        check_listen_address("127.0.0.1", SecretStr("short"))


def test_serve_refuses_public_host_without_token(tmp_path: Path) -> None:
    env = {**os.environ, "ONMODEL_HOME": str(tmp_path / "home")}
    env.pop("ONMODEL_API_TOKEN", None)

    command = [sys.executable, "-m", "orchestrator.cli", "serve", "--host", "0.0.0.0"]

    done = subprocess.run(
        [*command, "--port", str(free_port())],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert done.returncode == 2
    assert "listens beyond loopback" in done.stderr
    assert "ONMODEL_API_TOKEN" in done.stderr
    assert not (tmp_path / "home").exists()
