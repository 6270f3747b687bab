"""Opaque, signed page cursors for keyset pagination.

A cursor is `base64url(JSON payload) "." base64url(signature)`. The payload
contains the sort order and a digest of the filters it was made for, plus the
sort value and id of the last row of the page.

The signature catches cursors that were edited, truncated or made for
another query. Its key is not secret: a cursor only holds a position, and
the caller type-checks every value in it and binds it like any filter, so a
forged cursor can at most move the start of a page.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

CURSOR_KEY = b"onmodel-asset-cursor-v1"
CURSOR_VERSION = 1
SIGNATURE_BYTES = 12
# A cursor is about 200 characters long, so a much longer one was not made here.
MAX_CURSOR_LENGTH = 1024
# Asset ids are 32 hex digits. The bound only keeps junk out.
MAX_ID_LENGTH = 64


class CursorError(ValueError):
    """A cursor that is malformed, altered or made for another query; the message says which."""


@dataclass(frozen=True)
class DecodedCursor:
    # The last row's sort value as JSON gave it: str, int, float or None.
    raw_value: Any
    asset_id: str


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _sign(payload: bytes) -> bytes:
    return hmac.new(CURSOR_KEY, payload, hashlib.sha256).digest()[:SIGNATURE_BYTES]


def encode_cursor(sort: str, filters_digest: str, value: Any, asset_id: str) -> str:
    """Encode the position after the row (`value`, `asset_id`); datetimes become ISO 8601 UTC."""
    if isinstance(value, datetime):
        value = value.astimezone(UTC).isoformat()
    payload = json.dumps(
        {"v": CURSOR_VERSION, "s": sort, "f": filters_digest, "k": value, "i": asset_id},
        separators=(",", ":"),
    ).encode()
    return f"{_b64encode(payload)}.{_b64encode(_sign(payload))}"


def decode_cursor(text: str, sort: str, filters_digest: str) -> DecodedCursor:
    """Check a cursor's signature, sort and filters; raise CursorError if any is wrong."""
    if len(text) > MAX_CURSOR_LENGTH or text.count(".") != 1:
        raise CursorError("malformed cursor")
    encoded_payload, encoded_signature = text.split(".")
    try:
        payload = _b64decode(encoded_payload)
        signature = _b64decode(encoded_signature)
    except (binascii.Error, ValueError):
        raise CursorError("malformed cursor") from None
    if not hmac.compare_digest(signature, _sign(payload)):
        raise CursorError("cursor signature does not match")
    try:
        data = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise CursorError("malformed cursor") from None

    if not isinstance(data, dict) or data.get("v") != CURSOR_VERSION:
        raise CursorError("cursor version is not supported")
    if data.get("s") != sort:
        raise CursorError(f"cursor belongs to sort {data.get('s')!r}, not {sort!r}")
    if data.get("f") != filters_digest:
        raise CursorError("cursor belongs to other filters")
    asset_id = data.get("i")
    if not isinstance(asset_id, str) or not 1 <= len(asset_id) <= MAX_ID_LENGTH:
        raise CursorError("cursor has no valid asset id")
    return DecodedCursor(data.get("k"), asset_id)
