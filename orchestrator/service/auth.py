"""Bearer-token authentication of the HTTP API, and the rule on listen addresses."""

from __future__ import annotations

import hmac
import ipaddress
from typing import Annotated

from fastapi import Depends, HTTPException, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import SecretStr

from schemas.errors import OnModelError

# A token is a shared secret sent with every request; 16 random characters
# make guessing it hopeless, and shorter ones are typing-friendly passwords.
MIN_TOKEN_LENGTH = 16
TOKEN_ADVICE = (
    "set ONMODEL_API_TOKEN to at least 16 random characters, e.g. the output of "
    "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`"
)

# auto_error=False: a missing header gets the same 401 as a wrong token,
# instead of FastAPI's 403.
bearer_scheme = HTTPBearer(auto_error=False, description="The service's ONMODEL_API_TOKEN.")


class ServiceConfigError(OnModelError, ValueError):
    """A service setting that is unsafe or invalid; the message names the setting and the fix."""


def is_loopback(host: str) -> bool:
    """Return True for `localhost` and loopback IP literals; other host names count as public."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def token_bytes(token: SecretStr | None) -> bytes | None:
    """Return the token's bytes, or None when it is unset or empty (ONMODEL_API_TOKEN=)."""
    if token is None or not token.get_secret_value():
        return None
    return token.get_secret_value().encode()


def check_listen_address(host: str, token: SecretStr | None) -> None:
    """Raise ServiceConfigError unless listening on `host` with `token` is safe.

    Without a token the API has no authentication, so it may only listen on
    loopback, where only local users reach it.
    """
    secret = token_bytes(token)
    if secret is not None and len(secret) < MIN_TOKEN_LENGTH:
        raise ServiceConfigError(
            f"ONMODEL_API_TOKEN is shorter than {MIN_TOKEN_LENGTH} characters; {TOKEN_ADVICE}"
        )
    if secret is None and not is_loopback(host):
        raise ServiceConfigError(
            f"--host {host!r} listens beyond loopback, but no API token is set, so anyone who "
            f"reaches the port could submit runs; {TOKEN_ADVICE}, or listen on 127.0.0.1"
        )


class TokenAuth:
    """FastAPI dependency that checks `Authorization: Bearer <token>`; a no-op without a token."""

    def __init__(self, token: SecretStr | None) -> None:
        self._expected = token_bytes(token)

    @property
    def enabled(self) -> bool:
        return self._expected is not None

    def __call__(
        self,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
    ) -> None:
        if self._expected is None:
            return
        supplied = credentials.credentials.encode() if credentials is not None else b""
        # compare_digest takes the same time wherever the first difference is,
        # so response times do not reveal how much of a guess was right.
        if credentials is None or not hmac.compare_digest(supplied, self._expected):
            raise HTTPException(
                status_code=status.HTTP_401_UNAUTHORIZED,
                detail="missing or invalid bearer token; send `Authorization: Bearer <token>` "
                "with the service's ONMODEL_API_TOKEN",
                headers={"WWW-Authenticate": "Bearer"},
            )
