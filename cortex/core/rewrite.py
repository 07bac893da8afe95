"""The loopback rewrite of a neuron-reported URL (SPEC 3.3). Pure.

A neuron only knows itself as ``localhost``; the gateway knows it by the host in
its configured ``endpoint``. The rewrite swaps the host and keeps everything else.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import SplitResult, urlsplit


def is_loopback_host(host: str) -> bool:
    """localhost, 127.x.y.z, 0.0.0.0, ::1 and :: in any case, brackets or not."""
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_unspecified


def _parse(url: str) -> SplitResult | None:
    """A URL with a scheme, a host and a valid port, else None."""
    try:
        parts = urlsplit(url.strip())
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    return parts


def host_of(url: str) -> str | None:
    """The lower-case host of a URL without brackets, or None if malformed."""
    parts = _parse(url)
    return parts.hostname if parts else None


def rewrite_loopback(url: str, neuron_endpoint: str) -> tuple[str, str | None]:
    """Return the URL to contact and a warning (None when all was well).

    Loopback host -> the endpoint's host, keeping scheme, port and path of ``url``;
    anything else passes through; a malformed URL falls back to the endpoint.
    """
    endpoint = neuron_endpoint.rstrip("/")
    parts = _parse(url)
    if parts is None:
        return endpoint, f"neuron reported a malformed URL {url!r}; using {endpoint}"
    path = parts.path.rstrip("/")
    if not is_loopback_host(parts.hostname or ""):
        return parts._replace(path=path).geturl(), None
    target = _parse(endpoint)
    if target is None:
        return endpoint, f"configured endpoint {endpoint!r} is malformed"
    host = target.hostname or ""
    if ":" in host:  # IPv6 literal: keep its brackets
        host = f"[{host}]"
    netloc = host if parts.port is None else f"{host}:{parts.port}"
    if parts.username:
        netloc = f"{parts.username}@{netloc}"
    return SplitResult(parts.scheme, netloc, path, parts.query, "").geturl(), None
