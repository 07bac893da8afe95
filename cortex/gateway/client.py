"""HTTP calls from the gateway to one neuron's management API.

I/O over the application's single ``ClientSession``. Failures become the
exception tree: a neuron's 4xx keeps its status and message (the neuron is our
own code and writes its messages for clients); anything else is ``UpstreamFailed``.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import quote

import aiohttp

from cortex.errors import BY_STATUS, ApiError, UpstreamFailed, UpstreamTimeout, UpstreamUnreachable

# Neurons sit on the same network: a connection is accepted in milliseconds, and one
# lost SYN is retried after a second. Past this the node is treated as unreachable.
CONNECT_TIMEOUT_S = 3.0


class NeuronClient:
    def __init__(
        self, session: aiohttp.ClientSession, name: str, endpoint: str, token: str
    ) -> None:
        self.session = session
        self.name = name
        self.endpoint = endpoint.rstrip("/")
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}

    async def call(self, method: str, path: str, body: Any = None, timeout: float = 10.0) -> Any:
        url = self.endpoint + path
        try:
            async with self.session.request(
                method,
                url,
                json=body,
                headers=self.headers,
                timeout=aiohttp.ClientTimeout(
                    total=timeout, sock_connect=min(timeout, CONNECT_TIMEOUT_S)
                ),
            ) as response:
                raw = await response.read()
                status = response.status
        except aiohttp.ConnectionTimeoutError:
            raise UpstreamUnreachable(f"neuron {self.name} did not accept a connection") from None
        except asyncio.TimeoutError:
            raise UpstreamTimeout(
                f"neuron {self.name} did not answer {path} in {timeout:g} s"
            ) from None
        except aiohttp.ClientConnectionError as exc:
            raise UpstreamUnreachable(
                f"neuron {self.name} is unreachable: {type(exc).__name__}"
            ) from None
        except aiohttp.ClientError as exc:
            raise UpstreamFailed(f"neuron {self.name} failed: {type(exc).__name__}") from None
        try:
            data = json.loads(raw) if raw else None
        except ValueError:
            raise UpstreamFailed(f"neuron {self.name} sent invalid JSON on {path}") from None
        if status >= 400:
            raise error_from_neuron(self.name, status, data)
        return data

    async def get(self, path: str, timeout: float = 10.0) -> Any:
        return await self.call("GET", path, timeout=timeout)

    async def post(self, path: str, body: Any, timeout: float = 10.0) -> Any:
        return await self.call("POST", path, body, timeout=timeout)

    async def answers(self, timeout: float) -> bool:
        """Whether the neuron answers /health within ``timeout`` (a liveness probe)."""
        try:
            await self.get("/health", timeout)
        except ApiError:
            return False
        return True

    async def endpoint_of(self, model_id: str, timeout: float) -> str:
        data = await self.get(f"/models/{quote(model_id, safe='')}/endpoint", timeout)
        if not isinstance(data, dict) or not isinstance(data.get("url"), str):
            raise UpstreamFailed(f"neuron {self.name} sent no endpoint URL for {model_id!r}")
        return str(data["url"])


def error_from_neuron(name: str, status: int, data: Any) -> ApiError:
    message = ""
    if isinstance(data, dict) and isinstance(data.get("error"), dict):
        message = str(data["error"].get("message", ""))
    cls = BY_STATUS.get(status)
    if 400 <= status < 500 and cls is not None:
        return cls(message or f"neuron {name} refused the request ({status})")
    if status == 507 and cls is not None:
        return cls(message)
    return UpstreamFailed(f"neuron {name} failed ({status})")
