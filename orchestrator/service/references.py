"""Reference images that a submitted spec gives as URIs instead of uploaded files.

An `s3://` reference must be in the bucket of the service's own object
store. An `http(s)://` reference must name a host in
`settings.reference_hosts`, and every address that host resolves to must be
public: private, loopback, link-local, multicast and reserved addresses are
rejected, so a spec cannot make the service fetch from its own network. The
download then connects to the address that was checked, so a second DNS
answer cannot swap in another one.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from orchestrator.spec import MAX_REFERENCE_BYTES
from schemas.errors import SpecError
from storage.objects import ObjectStore

logger = logging.getLogger(__name__)

# Folder, inside the submission's folder, that fetched references are written to.
FETCHED_FOLDER = ".fetched"
URI_SCHEMES = ("s3://", "http://", "https://")
SUFFIX = re.compile(r"\.[A-Za-z0-9]{1,8}$")

Resolver = Callable[[str, int], list[str]]


def is_uri(reference: str) -> bool:
    return reference.lower().startswith(URI_SCHEMES)


def reference_slots(document: dict[str, Any]) -> Iterator[tuple[str, Any, Any]]:
    """Yield (field path, container, key) of every reference string in a parsed spec.

    Parts that do not have the spec's shape are skipped; validation reports them.
    """
    characters = document.get("characters")
    if isinstance(characters, list):
        for i, character in enumerate(characters):
            references = character.get("references") if isinstance(character, dict) else None
            if isinstance(references, list):
                for j, reference in enumerate(references):
                    if isinstance(reference, str):
                        yield f"characters[{i}].references[{j}]", references, j
    style = document.get("style")
    if isinstance(style, dict) and isinstance(style.get("reference"), str):
        yield "style.reference", style, "reference"


# Policy


def _system_resolver(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


def check_public_address(address: str, where: str, url: str) -> str:
    """Return `address` if it is a public unicast IP, else raise SpecError."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        # ::ffff:127.0.0.1 reaches 127.0.0.1.
        ip = ip.ipv4_mapped
    if not ip.is_global or ip.is_multicast:
        raise SpecError(
            where,
            url,
            f"reference host resolves to {ip}, which is not a public address; references "
            "must be on public hosts, so upload the file or put it in the service's bucket",
        )
    return str(ip)


@dataclass(frozen=True)
class CheckedUrl:
    url: str
    host: str
    port: int
    # The public address the download connects to.
    address: str


def check_http_url(
    url: str, where: str, allowed_hosts: list[str], resolve: Resolver = _system_resolver
) -> CheckedUrl:
    """Check an http(s) reference against the host allow-list and the resolved addresses."""
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise SpecError(where, url, "reference URL is invalid; use http(s)://host/path")
    if parts.username is not None or parts.password is not None:
        raise SpecError(where, url, "reference URL must not contain credentials")

    host = parts.hostname.lower()
    if not allowed_hosts:
        raise SpecError(
            where,
            url,
            "http(s) references are disabled on this service; upload the file with the spec, "
            "or ask the operator to list the host in ONMODEL_REFERENCE_HOSTS",
        )
    if host not in allowed_hosts:
        raise SpecError(
            where,
            url,
            f"host {host!r} is not an allowed reference host; allowed hosts are: "
            f"{', '.join(allowed_hosts)}",
        )
    try:
        port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
    except ValueError:
        raise SpecError(where, url, "reference URL has an invalid port") from None

    try:
        addresses = resolve(host, port)
    except OSError as exc:
        raise SpecError(where, url, f"host {host!r} could not be resolved: {exc}") from None
    if not addresses:
        raise SpecError(where, url, f"host {host!r} has no addresses")
    # Every address must be public: a client may connect to any of them.
    checked = [check_public_address(address, where, url) for address in addresses]
    return CheckedUrl(url=url, host=host, port=port, address=checked[0])


def split_s3_uri(uri: str, where: str, store: ObjectStore) -> tuple[Any, str]:
    """Return (S3ObjectStore, key) of an s3:// reference in the service's bucket."""
    from storage.s3 import S3ObjectStore

    bucket, _, key = uri[len("s3://") :].partition("/")
    if not isinstance(store, S3ObjectStore):
        raise SpecError(
            where,
            uri,
            "s3:// references need a service whose object store is on S3 "
            "(ONMODEL_OBJECT_STORE=s3://bucket/prefix); upload the file with the spec instead",
        )
    if bucket != store.bucket:
        raise SpecError(
            where,
            uri,
            f"bucket {bucket!r} is not the service's bucket {store.bucket!r}; "
            f"copy the file to s3://{store.bucket}/",
        )
    if not key:
        raise SpecError(where, uri, "reference URI has no object key; use s3://bucket/key")
    return store, key


# Downloads


def download_s3(uri: str, where: str, store: ObjectStore) -> bytes:
    from botocore.exceptions import BotoCoreError, ClientError

    s3_store, key = split_s3_uri(uri, where, store)
    try:
        head = s3_store.client.head_object(Bucket=s3_store.bucket, Key=key)
        size = int(head.get("ContentLength", 0))
        if size > MAX_REFERENCE_BYTES:
            raise SpecError(
                where, uri, f"reference is {size} bytes, more than {MAX_REFERENCE_BYTES}"
            )
        response = s3_store.client.get_object(Bucket=s3_store.bucket, Key=key)
        data: bytes = response["Body"].read(MAX_REFERENCE_BYTES + 1)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code in ("404", "NoSuchKey", "NotFound"):
            raise SpecError(where, uri, "reference object not found") from None
        raise SpecError(where, uri, f"reading the reference failed: {code or exc}") from None
    except BotoCoreError as exc:
        raise SpecError(where, uri, f"reading the reference failed: {exc}") from None
    if len(data) > MAX_REFERENCE_BYTES:
        raise SpecError(where, uri, f"reference is more than {MAX_REFERENCE_BYTES} bytes")
    return data


def download_http(checked: CheckedUrl, where: str, timeout_s: float) -> bytes:
    """GET the URL from its checked address, with TLS checked against the host name."""
    parts = urlsplit(checked.url)
    ip = ipaddress.ip_address(checked.address)
    netloc = f"[{ip}]" if ip.version == 6 else str(ip)
    target = parts._replace(netloc=f"{netloc}:{checked.port}").geturl()
    default_port = 443 if parts.scheme.lower() == "https" else 80
    host_header = checked.host if checked.port == default_port else f"{checked.host}:{checked.port}"
    chunks: list[bytes] = []
    received = 0
    try:
        # trust_env=False: no proxy from the environment may receive the request.
        with (
            httpx.Client(timeout=timeout_s, follow_redirects=False, trust_env=False) as client,
            client.stream(
                "GET",
                target,
                headers={"Host": host_header},
                extensions={"sni_hostname": checked.host},
            ) as response,
        ):
            if response.status_code != 200:
                raise SpecError(
                    where,
                    checked.url,
                    f"download failed with HTTP {response.status_code}; redirects are not "
                    "followed, so give the final URL",
                )
            for chunk in response.iter_bytes():
                received += len(chunk)
                if received > MAX_REFERENCE_BYTES:
                    raise SpecError(
                        where, checked.url, f"reference is more than {MAX_REFERENCE_BYTES} bytes"
                    )
                chunks.append(chunk)
    except httpx.HTTPError as exc:
        raise SpecError(where, checked.url, f"download failed: {exc}") from None
    return b"".join(chunks)


def fetch_uri_references(
    document: dict[str, Any],
    folder: Path,
    store: ObjectStore,
    allowed_hosts: list[str],
    timeout_s: float,
    resolve: Resolver = _system_resolver,
) -> bool:
    """Download every URI reference of `document` into `folder` and point the spec at it.

    Rewrites `document` in place with paths relative to `folder`; returns
    whether any reference was a URI. Raises SpecError naming the field.
    """
    fetched = 0
    for where, container, key in list(reference_slots(document)):
        uri = container[key]
        if not is_uri(uri):
            continue
        if uri.lower().startswith("s3://"):
            data = download_s3(uri, where, store)
        else:
            checked = check_http_url(uri, where, allowed_hosts, resolve)
            data = download_http(checked, where, timeout_s)
        suffix_match = SUFFIX.search(urlsplit(uri).path)
        name = f"{FETCHED_FOLDER}/{fetched}{suffix_match.group(0) if suffix_match else ''}"
        target = folder / name
        target.parent.mkdir(exist_ok=True)
        target.write_bytes(data)
        container[key] = name
        fetched += 1
        # The query string may contain a signature, so it stays out of the log.
        uri_without_query = urlsplit(uri)._replace(query="", fragment="").geturl()
        logger.info("reference %s fetched from %s (%d bytes)", where, uri_without_query, len(data))
    return fetched > 0
