"""The loopback rewrite of neuron-reported URLs (SPEC 3.3)."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cortex.core.rewrite import is_loopback_host, rewrite_loopback


@pytest.mark.parametrize(
    ("reported", "endpoint", "expected"),
    [
        ("http://localhost:13131", "http://beast.internal:13131", "http://beast.internal:13131"),
        ("http://127.0.0.1:8080", "http://beast.lan:13131", "http://beast.lan:8080"),
        ("http://other.host:1234", "http://beast.lan:13131", "http://other.host:1234"),
        ("not a url", "http://beast.lan:13131", "http://beast.lan:13131"),
        ("http://[::1]:9000", "http://[fd00::7]:13131", "http://[fd00::7]:9000"),
        ("http://LOCALHOST:9000/v1/", "http://beast:13131", "http://beast:9000/v1"),
        ("http://0.0.0.0:9000", "http://beast:13131/", "http://beast:9000"),
        ("http://[::]:9000", "http://beast:13131", "http://beast:9000"),
        ("http://127.9.8.7", "http://beast:13131", "http://beast"),
        ("https://localhost:9443/", "http://beast:13131", "https://beast:9443"),
        ("http://localhost:99999", "http://beast:13131", "http://beast:13131"),
        ("", "http://beast:13131", "http://beast:13131"),
        ("ftp://localhost:21", "http://beast:13131", "http://beast:13131"),
    ],
)
def test_spec_examples(reported: str, endpoint: str, expected: str) -> None:
    """The cases SPEC 3.3 lists, and their close relatives, rewrite as specified."""
    assert rewrite_loopback(reported, endpoint)[0] == expected


def test_malformed_url_warns_and_falls_back() -> None:
    """A malformed URL never raises: the endpoint is used and a warning returned."""
    url, warning = rewrite_loopback("http://:bad", "http://beast:13131")
    assert url == "http://beast:13131"
    assert warning is not None and "malformed" in warning


LOOPBACK = st.sampled_from(
    ["localhost", "LocalHost", "127.0.0.1", "127.1.2.3", "0.0.0.0", "[::1]", "[::]"]
)
NAMES = st.from_regex(r"[a-z][a-z0-9-]{0,10}(\.[a-z][a-z0-9-]{0,10}){0,2}", fullmatch=True)
PORTS = st.one_of(st.none(), st.integers(1, 65535))
PATHS = st.from_regex(r"(/[a-z0-9]{1,6}){0,3}/?", fullmatch=True)
SCHEMES = st.sampled_from(["http", "https"])


def _url(scheme: str, host: str, port: int | None, path: str) -> str:
    return f"{scheme}://{host}{'' if port is None else f':{port}'}{path}"


@given(SCHEMES, LOOPBACK, PORTS, PATHS, NAMES, st.integers(1, 65535))
def test_loopback_keeps_scheme_port_and_path(
    scheme: str, host: str, port: int | None, path: str, neuron: str, neuron_port: int
) -> None:
    """Only the host changes: scheme, port and path (minus a trailing /) are kept."""
    url, warning = rewrite_loopback(
        _url(scheme, host, port, path), f"http://{neuron}:{neuron_port}"
    )
    parts = urlsplit(url)
    assert warning is None
    assert parts.scheme == scheme
    assert parts.hostname == neuron
    assert parts.port == port
    assert parts.path == path.rstrip("/")


@given(SCHEMES, NAMES, PORTS, PATHS, NAMES)
def test_non_loopback_passes_through(
    scheme: str, host: str, port: int | None, path: str, neuron: str
) -> None:
    """A URL that is not loopback is unchanged (but for a trailing slash)."""
    if is_loopback_host(host):
        return
    url = _url(scheme, host, port, path)
    assert rewrite_loopback(url, f"http://{neuron}:1")[0] == _url(
        scheme, host, port, path.rstrip("/")
    )


@given(SCHEMES, st.one_of(LOOPBACK, NAMES), PORTS, PATHS, NAMES, st.integers(1, 65535))
def test_rewrite_is_idempotent(
    scheme: str, host: str, port: int | None, path: str, neuron: str, neuron_port: int
) -> None:
    """Rewriting a rewritten URL changes nothing."""
    endpoint = f"http://{neuron}:{neuron_port}"
    once = rewrite_loopback(_url(scheme, host, port, path), endpoint)[0]
    assert rewrite_loopback(once, endpoint)[0] == once


@given(st.text(max_size=40), NAMES)
def test_never_raises(text: str, neuron: str) -> None:
    """Whatever a neuron reports, the rewrite returns a URL and does not raise."""
    url, _ = rewrite_loopback(text, f"http://{neuron}:13131")
    assert url.startswith(("http://", "https://"))


@given(st.sampled_from(["fd00::1", "2001:db8::5"]), st.integers(1, 65535))
def test_ipv6_endpoint_host_keeps_its_brackets(host: str, port: int) -> None:
    """An IPv6 neuron endpoint yields a bracketed host in the rewritten URL."""
    url, _ = rewrite_loopback(f"http://localhost:{port}", f"http://[{host}]:13131")
    assert url == f"http://[{host}]:{port}"
