"""Talking to a gateway's admin routes for ``cortex status|load|unload|reload``.

I/O: HTTP to the gateway with the standard library only, so the commands run
anywhere Python does. Errors come back as the gateway's message, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from typing import Any

DEFAULT_ENDPOINT = "http://127.0.0.1:31313"
# A load may wait for evictions and a cold start of a large model (load_timeout_s).
LOAD_TIMEOUT_S = 1800.0
READ_TIMEOUT_S = 10.0


class GatewayError(Exception):
    """The gateway could not be reached, or answered with an error."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-e", "--endpoint", default=DEFAULT_ENDPOINT, help="the gateway's URL")
    parser.add_argument("--api-key", default=None, help="API key (default: $CORTEX_API_KEY)")


def call(
    args: argparse.Namespace,
    method: str,
    path: str,
    body: dict[str, Any] | None = None,
    timeout: float = READ_TIMEOUT_S,
) -> Any:
    """One JSON request; returns the parsed answer or raises ``GatewayError``."""
    endpoint = str(args.endpoint).rstrip("/")
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(endpoint + path, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    key = args.api_key or os.environ.get("CORTEX_API_KEY")
    if key:
        request.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            raw = response.read()
    except urllib.error.HTTPError as exc:
        raise GatewayError(f"{exc.code}: {_message(exc.read())}") from None
    except (OSError, ValueError) as exc:
        raise GatewayError(f"cannot reach the gateway at {endpoint}: {exc}") from None
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        raise GatewayError(f"the gateway at {endpoint} sent invalid JSON on {path}") from None


def _message(raw: bytes) -> str:
    try:
        error = json.loads(raw).get("error", {})
    except (ValueError, AttributeError):
        return raw.decode(errors="replace")[:200] or "no body"
    if isinstance(error, dict):
        return str(error.get("message", "error"))
    return str(error)


def fail(error: GatewayError) -> int:
    print(f"cortex: {error}", file=sys.stderr)
    return 1


def run_load(args: argparse.Namespace) -> int:
    body = {"model": args.model, **({"node": args.node} if args.node else {})}
    try:
        result = call(args, "POST", "/admin/load", body, timeout=LOAD_TIMEOUT_S)
    except GatewayError as exc:
        return fail(exc)
    if result.get("already_loaded"):
        print(f"{result['model']} is already loaded on {result['node']}")
        return 0
    evicted = result.get("evicted") or []
    extra = f" (evicted {', '.join(evicted)})" if evicted else ""
    print(f"loaded {result['model']} on {result['node']}{extra}")
    return 0


def run_unload(args: argparse.Namespace) -> int:
    body = {"model": args.model, **({"node": args.node} if args.node else {})}
    try:
        result = call(args, "POST", "/admin/unload", body, timeout=LOAD_TIMEOUT_S)
    except GatewayError as exc:
        return fail(exc)
    print(f"unloaded {result['model']} from {', '.join(result['nodes'])}")
    if result.get("note"):
        print(f"note: {result['note']}")
    return 0


def run_reload(args: argparse.Namespace) -> int:
    try:
        result = call(args, "POST", "/admin/reload", {})
    except GatewayError as exc:
        return fail(exc)
    models = result.get("models", [])
    print(f"catalogue reloaded from {result.get('path')}: {len(models)} models")
    return 0
