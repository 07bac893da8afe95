"""From a model name to a neuron URL ready to serve: route, load, admit, resolve.

I/O shell around the pure ``route()``: it carries out the decision (joining or
starting a load through ``Lifecycle``), waits for an admission slot, then asks
the neuron where the model is served and applies the loopback rewrite. Each wait
is reported to ``RequestContext`` so metrics can split time to first token.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from functools import partial
from typing import NamedTuple

import attrs

from cortex.core.catalogue import default_profile, is_feasible
from cortex.core.config import GatewayConfig, ModelConfig
from cortex.core.fleet import LOADING, FleetView
from cortex.core.observe import add_pending
from cortex.core.rewrite import host_of, is_loopback_host, rewrite_loopback
from cortex.core.router import Decision, EvictThenLoad, Load, Reject, Serve, route, sole_loaded
from cortex.errors import (
    BY_STATUS,
    ApiError,
    QueueFull,
    Unavailable,
    UpstreamFailed,
    UpstreamTimeout,
    UpstreamUnreachable,
)
from cortex.gateway.admission import Admission, Ticket
from cortex.gateway.client import NeuronClient
from cortex.gateway.context import RequestContext
from cortex.gateway.lifecycle import Lifecycle
from cortex.gateway.proxy import ClientLink, with_keepalive
from cortex.gateway.store import FleetStore

log = logging.getLogger("cortex.gateway")

# A decision can be overtaken (a node dies mid-load); re-route this many times.
MAX_ATTEMPTS = 3
# The endpoint lookup is a dictionary read on the neuron; silence this long means trouble.
ENDPOINT_TIMEOUT_S = 5.0
# A model that has waited this long for room gets its turn: new requests for the models
# on the nodes it could use wait too, so those drain and can be evicted. Long enough that
# a short burst is not interrupted; short enough that a waiting client sees an answer.
FAIR_TURN_S = 10.0


class Placement(NamedTuple):
    """An admitted request's target; ``release`` gives its admission slot back."""

    node: str
    profile: ModelConfig
    url: str
    ticket: Ticket

    def release(self) -> None:
        self.ticket.leave()


class Dispatcher:
    def __init__(
        self,
        store: FleetStore,
        clients: dict[str, NeuronClient],
        lifecycle: Lifecycle,
        admission: Admission,
        config: GatewayConfig,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.clients = clients
        self.lifecycle = lifecycle
        self.admission = admission
        self.config = config
        self.clock = clock
        self.neuron_hosts = {h for n in config.neurons if (h := host_of(n.endpoint))}
        self.waiting: dict[str, list[float]] = {}  # model id -> when each waiter began
        self.fair_turn_s = FAIR_TURN_S

    def profile(self, model_id: str) -> ModelConfig:
        return self.store.catalogue.get(model_id) or default_profile(model_id)

    async def place(
        self,
        name: str,
        ctx: RequestContext,
        link: ClientLink | None,
        exclude: frozenset[str] = frozenset(),
    ) -> Placement:
        """Route ``name`` and return an admitted placement (exit its ticket when done).

        Nodes in ``exclude`` (one that just refused the connection) are hidden from the
        router as if they were down; the router itself stays a pure function of its view.
        """
        keepalive = self.config.gateway.keepalive_s
        failures = 0
        deadline = self.clock() + self.config.gateway.load_timeout_s  # for waits for room
        waiting_since: float | None = None  # this request's first wait (its place in turn)
        while True:
            # The common case (one node has it loaded) needs no fresh counts: no rebuild.
            decision: Decision | None = None
            if not exclude:
                decision = sole_loaded(self.store.states, self.store.catalogue, name)
            if decision is None:
                decision = route(
                    without(self.store.view, exclude),
                    self.store.catalogue,
                    name,
                    self.clock(),
                    strategy=self.config.eviction.strategy,
                    measured_mb=self.store.measured_mb,
                )
            if isinstance(decision, Reject):
                if decision.wait:
                    waiting_since = waiting_since or self.clock()
                    await self._wait_for_room(
                        name, decision, deadline=deadline, since=waiting_since, ctx=ctx, link=link
                    )
                    continue
                cls = BY_STATUS.get(decision.status, Unavailable)
                raise cls(decision.message, retry_after_s=decision.retry_after_s)
            node, model_id = decision.node, decision.model_id
            profile = self.profile(model_id)
            ctx.model, ctx.node = model_id, node
            entry = (n := self.store.states.node(node)) and n.model(model_id)
            if isinstance(decision, Serve) and entry and entry.status != LOADING:
                if self.waiting and self._owes_a_turn(model_id, node):
                    waiting_since = waiting_since or self.clock()
                    await self._wait_for_room(
                        model_id,
                        decision,
                        deadline=deadline,
                        since=waiting_since,
                        ctx=ctx,
                        link=link,
                    )
                    continue
                return await self._admit(node, profile, ctx, link)
            # Cold: start or join the one load, and hold the model against eviction
            # until this request has been admitted (no thrashing between two models).
            if isinstance(decision, (Load, EvictThenLoad)):
                victims = decision.victims if isinstance(decision, EvictThenLoad) else ()
                self.lifecycle.start_load(node, profile, victims)
            ctx.cold_start = True  # started or joined: this request waits for a load
            self.store.update(node, partial(add_pending, model_id=model_id, delta=1))
            started = time.perf_counter()
            try:
                await with_keepalive(self.lifecycle.wait_loaded(node, model_id), link, keepalive)
            except ApiError as exc:
                log.warning("waiting for %s on %s: %s", model_id, node, exc.message)
                self.store.update(node, partial(add_pending, model_id=model_id, delta=-1))
                failures += 1
                if failures >= MAX_ATTEMPTS:
                    raise
                continue
            except BaseException:
                self.store.update(node, partial(add_pending, model_id=model_id, delta=-1))
                raise
            finally:
                ctx.load_s += time.perf_counter() - started
            try:
                return await self._admit(node, profile, ctx, link)
            finally:
                self.store.update(node, partial(add_pending, model_id=model_id, delta=-1))

    def _owes_a_turn(self, model_id: str, node: str) -> bool:
        """Whether another model has waited ``fair_turn_s`` for room it could find on
        ``node``: then ``model_id``'s new requests wait too, so it drains and can go."""
        view = self.store.states.node(node)
        if view is None:
            return False
        since = self.clock() - self.fair_turn_s
        for waiter, started in self.waiting.items():
            if waiter == model_id or min(started) > since:
                continue
            if is_feasible(self.profile(waiter), view):
                return True
        return False

    async def _wait_for_room(
        self,
        name: str,
        decision: Reject | Serve,
        *,
        deadline: float,
        since: float,
        ctx: RequestContext,
        link: ClientLink | None,
    ) -> None:
        """Wait for the fleet to change when the model fits once busy models go idle.

        Requests for one model that wait together route together when room appears:
        the first starts the load (evicting the now idle models) and the rest join it,
        so two models that do not fit side by side alternate in batches, one load per
        turn. At most ``max_queue_per_model`` wait per model (then 429), each for at
        most ``load_timeout_s`` (then the 503 the router gave).
        """
        profile = self.store.catalogue.resolve(name)
        model_id = profile.id if profile is not None else name
        waiters = self.waiting.get(model_id, [])
        if len(waiters) >= self.config.gateway.max_queue_per_model:
            raise QueueFull(
                f"model {model_id!r} has {len(waiters)} requests waiting for memory",
                retry_after_s=1,
            )
        remaining = deadline - self.clock()
        if remaining <= 0:
            if isinstance(decision, Reject):
                raise Unavailable(decision.message, retry_after_s=decision.retry_after_s)
            raise Unavailable(f"model {model_id!r} waited its turn too long", retry_after_s=5)
        waiters = self.waiting.setdefault(model_id, waiters)
        waiters.append(since)
        started = time.perf_counter()
        try:
            await with_keepalive(
                self.store.changed(remaining), link, self.config.gateway.keepalive_s
            )
        finally:
            ctx.queue_s += time.perf_counter() - started
            waiters.remove(since)
            if not waiters:
                del self.waiting[model_id]

    async def _admit(
        self, node: str, profile: ModelConfig, ctx: RequestContext, link: ClientLink | None
    ) -> Placement:
        ticket = self.admission.ticket(node, profile.id, profile.max_concurrency)
        if not ticket.enter_now():  # a free slot needs no keep-alive task
            started = time.perf_counter()
            await with_keepalive(ticket.__aenter__(), link, self.config.gateway.keepalive_s)
            ctx.queue_s += time.perf_counter() - started
        url = self.store.endpoints.get((node, profile.id))
        if url is None:
            try:
                url = await self.endpoint(node, profile.id)
            except BaseException:
                await ticket.__aexit__(None, None, None)
                raise
        self.store.touch(node, profile.id, self.clock())
        return Placement(node, profile, url, ticket)

    async def endpoint(self, node: str, model_id: str) -> str:
        """Where ``model_id`` is served on ``node``, rewritten and checked."""
        key = (node, model_id)
        url = self.store.endpoints.get(key)
        if url is not None:
            return url
        client = self.clients[node]
        try:
            reported = await client.endpoint_of(model_id, timeout=ENDPOINT_TIMEOUT_S)
        except UpstreamTimeout as exc:
            # A GET that changes nothing and precedes the request: as good as refused.
            raise UpstreamUnreachable(exc.message) from None
        url, warning = rewrite_loopback(reported, client.endpoint)
        if warning:
            log.warning("neuron %s: %s", node, warning)
        host = host_of(url) or ""
        reported_host = host_of(reported) or ""
        allowed = (
            is_loopback_host(reported_host)
            or host in self.neuron_hosts
            or self.config.gateway.trust_neuron_urls
        )
        if not allowed:
            # A compromised node must not turn the gateway into a proxy to anywhere.
            log.error("neuron %s reported %s, a host that is not a configured neuron", node, url)
            raise UpstreamFailed(f"neuron {node} reported an endpoint outside the fleet")
        self.store.endpoints[key] = url
        return url


def without(view: FleetView, exclude: frozenset[str]) -> FleetView:
    """``view`` with the ``exclude``d nodes marked down (the same view when none are)."""
    if not exclude:
        return view
    return FleetView(
        tuple(attrs.evolve(n, healthy=False) if n.name in exclude else n for n in view.nodes)
    )
