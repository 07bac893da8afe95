"""Admission per (node, model): at most ``max_concurrency`` run, the rest wait FIFO.

I/O-free but asyncio-bound: waiters are futures. A full queue refuses at once
(429 with Retry-After); a client that leaves while queued frees its place at once.
"""

from __future__ import annotations

import asyncio
from collections import deque
from types import TracebackType

from cortex.errors import QueueFull
from cortex.gateway.store import FleetStore


class Gate:
    def __init__(self) -> None:
        self.running = 0
        self.waiters: deque[asyncio.Future[None]] = deque()

    def release(self) -> None:
        self.running -= 1
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                self.running += 1
                waiter.set_result(None)
                return


class Ticket:
    """One request's place at a gate; ``async with`` holds a running slot."""

    def __init__(self, admission: Admission, key: tuple[str, str], limit: int) -> None:
        self._admission = admission
        self._key = key
        self._limit = max(1, limit)
        self._held = False
        self.waited = False

    def enter_now(self) -> bool:
        """Take a running slot at once if one is free and nobody waits (no task, no
        await: the common case); False when the caller must queue with ``async with``."""
        gate = self._admission.gate(self._key)
        if gate.running >= self._limit or gate.waiters:
            return False
        gate.running += 1
        self._held = True
        self._admission.store.add_count(*self._key, 1, 0)
        return True

    async def __aenter__(self) -> Ticket:
        if self.enter_now():
            return self
        gate = self._admission.gate(self._key)
        store, (node, model) = self._admission.store, self._key
        if len(gate.waiters) >= self._admission.max_queue:
            raise QueueFull(
                f"model {model!r} on {node} has {len(gate.waiters)} requests queued",
                retry_after_s=1,
            )
        self.waited = True
        waiter = asyncio.get_running_loop().create_future()
        gate.waiters.append(waiter)
        store.add_count(node, model, 0, 1)
        try:
            await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                gate.release()  # granted just as we were cancelled: pass it on
            else:
                gate.waiters.remove(waiter)
            raise
        finally:
            store.add_count(node, model, 0, -1)
        self._held = True
        store.add_count(node, model, 1, 0)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.leave()

    def leave(self) -> None:
        """Give the running slot back (no await: the common case needs none)."""
        if self._held:
            self._held = False
            node, model = self._key
            self._admission.store.add_count(node, model, -1, 0)
            self._admission.gate(self._key).release()


class Admission:
    def __init__(self, store: FleetStore, max_queue: int) -> None:
        self.store = store
        self.max_queue = max_queue
        self._gates: dict[tuple[str, str], Gate] = {}

    def gate(self, key: tuple[str, str]) -> Gate:
        gate = self._gates.get(key)
        if gate is None:
            gate = self._gates[key] = Gate()
        return gate

    def ticket(self, node: str, model: str, limit: int) -> Ticket:
        return Ticket(self, (node, model), limit)
