"""Placing a request and opening its upstream, with one retry on another node.

I/O shell over ``Dispatcher.place`` and a route's ``send``. A node that refuses or
resets the connection before any response byte (``UpstreamUnreachable``) has
generated nothing, so the request is placed once more with that node hidden from
the router; its cached endpoint is forgotten, and its admission slot is given back
before the second placement takes one. Anything after the first byte is final.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import aiohttp

from cortex.errors import UpstreamUnreachable
from cortex.gateway.context import RequestContext
from cortex.gateway.dispatch import Placement
from cortex.gateway.proxy import ClientLink
from cortex.gateway.state import GatewayState

log = logging.getLogger("cortex.gateway.failover")

Send = Callable[[Placement], Awaitable[aiohttp.ClientResponse]]
ATTEMPTS = 2  # the first node, then one other


async def place_and_send(
    state: GatewayState,
    ctx: RequestContext,
    link: ClientLink | None,
    name: str,
    send: Send,
) -> tuple[Placement, aiohttp.ClientResponse]:
    """An admitted placement and its open upstream response; the caller releases the
    placement once the response is consumed."""
    excluded: frozenset[str] = frozenset()
    for attempt in range(1, ATTEMPTS + 1):
        placement: Placement | None = None
        try:
            placement = await state.dispatcher.place(name, ctx, link, excluded)
            return placement, await send(placement)
        except UpstreamUnreachable as exc:
            node = placement.node if placement is not None else ctx.node
            if placement is not None:
                placement.release()
            if node:
                state.store.forget_endpoints(node)
            if attempt == ATTEMPTS or not node:
                raise
            log.warning("neuron %s refused %s (%s); trying another node", node, name, exc)
            excluded = excluded | {node}
        except BaseException:
            if placement is not None:
                placement.release()
            raise
    raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises
