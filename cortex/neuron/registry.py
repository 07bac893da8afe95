"""The neuron's resident models: single-flight loads, bounded unloads, admission.

I/O: calls harness load/unload. Concurrent loads of one id share one task;
requests to a model wait in a FIFO (asyncio.Semaphore) for one of the model's
``max_batch`` slots, and are counted as in flight or queued while they do.
"""

from __future__ import annotations

import asyncio
import logging
import os.path
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from cortex.core.wire import LoadRequest
from cortex.errors import (
    BY_STATUS,
    ApiError,
    Conflict,
    Forbidden,
    InsufficientMemory,
    NotFound,
    Unavailable,
)
from cortex.harness import DeviceInfo, HarnessError, LoadedModel, LoadSpec
from cortex.neuron.metrics import NeuronMetrics
from cortex.neuron.plugins import HarnessRegistry
from cortex.venvs import BOOTSTRAP_HINT

log = logging.getLogger("cortex.neuron")

# An unload waits this long for in-flight requests before cancelling them: long
# enough for a typical answer to finish, short enough that an eviction is prompt.
UNLOAD_DRAIN_S = 30.0


class ModelSlot:
    """One model id on this neuron, in whatever state it is."""

    def __init__(self, model_id: str, harness: str, source: str, devices: tuple[int, ...]) -> None:
        self.model_id = model_id
        self.harness = harness
        self.source = source
        self.devices = devices
        self.status = "loading"
        self.error: str | None = None
        self.model: LoadedModel | None = None
        self.vram_used_mb = 0
        self.in_flight = 0
        self.queued = 0
        self.load_task: asyncio.Task[LoadedModel] | None = None
        self._gate: asyncio.Semaphore | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._drained = asyncio.Event()
        self._drained.set()

    def ready(self, model: LoadedModel) -> None:
        self.model = model
        self.status = "loaded"
        self.vram_used_mb = int(model.vram_used_mb)
        self._gate = asyncio.Semaphore(max(1, int(model.max_batch)))

    @asynccontextmanager
    async def admit(self) -> AsyncIterator[LoadedModel]:
        """Hold one of the model's slots for the duration of a request."""
        if self.status != "loaded" or self.model is None or self._gate is None:
            raise Unavailable(f"model {self.model_id!r} is {self.status}", retry_after_s=1)
        gate, model = self._gate, self.model
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        self._drained.clear()
        try:
            self.queued += 1
            try:
                await gate.acquire()
            finally:
                self.queued -= 1
            self.in_flight += 1
            try:
                yield model
            finally:
                self.in_flight -= 1
                gate.release()
        finally:
            if task is not None:
                self._tasks.discard(task)
            if not self._tasks:
                self._drained.set()

    async def drain(self, timeout: float) -> None:
        try:
            await asyncio.wait_for(self._drained.wait(), timeout)
        except asyncio.TimeoutError:
            for task in list(self._tasks):
                task.cancel()
            await asyncio.sleep(0)


class ModelRegistry:
    def __init__(
        self,
        harnesses: HarnessRegistry,
        devices: list[DeviceInfo],
        models_dir: str,
        default_harness: str,
        metrics: NeuronMetrics,
    ) -> None:
        self.harnesses = harnesses
        self.devices = devices
        self.models_dir = os.path.realpath(models_dir)
        self.default_harness = default_harness
        self.metrics = metrics
        self.slots: dict[str, ModelSlot] = {}
        # Set once the start-up provider probe has finished its heavy imports.
        self.imports_settled = asyncio.Event()

    # -- placement and accounting -------------------------------------------------

    def used_mb(self) -> dict[int, int]:
        """Memory each device holds for our models, by the models' own figures."""
        used = {d.index: 0 for d in self.devices}
        for slot in self.slots.values():
            if slot.status in ("loading", "loaded", "unloading") and slot.devices:
                share = slot.vram_used_mb // len(slot.devices)
                for index in slot.devices:
                    used[index] = used.get(index, 0) + share
        return used

    def _pick_devices(self, wanted: tuple[int, ...] | None, need_mb: int) -> tuple[int, ...]:
        used = self.used_mb()
        free = {d.index: d.vram_total_mb - used.get(d.index, 0) for d in self.devices}
        if wanted:
            unknown = [i for i in wanted if i not in free]
            if unknown:
                raise NotFound(f"no device(s) {unknown}; this neuron has {sorted(free)}")
            chosen = tuple(wanted)
        else:
            chosen = (max(free, key=lambda i: (free[i], -i)),) if free else ()
        share = need_mb // max(1, len(chosen))
        short = [i for i in chosen if free[i] < share]
        if need_mb and short:
            raise InsufficientMemory(
                f"model needs {need_mb} MB; device(s) {short} have "
                f"{[free[i] for i in short]} MB free"
            )
        return chosen

    def source_path(self, source: str) -> str:
        """Resolve a source inside models_dir; anything outside it is refused."""
        path = os.path.realpath(os.path.join(self.models_dir, source))
        if path != self.models_dir and not path.startswith(self.models_dir + os.sep):
            raise Forbidden(f"source {source!r} is outside the neuron's models_dir")
        return path

    def spec_for(self, request: LoadRequest, devices: tuple[int, ...] = ()) -> LoadSpec:
        by_index = {d.index: d for d in self.devices}
        return LoadSpec(
            model_id=request.model_id,
            source_path=self.source_path(request.source or request.model_id),
            devices=tuple(by_index[i] for i in devices if i in by_index),
            options=dict(request.options),
        )

    # -- lifecycle -------------------------------------------------------------

    async def load(self, request: LoadRequest) -> ModelSlot:
        """Load (or join the load of) a model; idempotent for an identical spec."""
        await self.imports_settled.wait()  # before any check: no await between them below
        harness_name = request.harness or self.default_harness
        source = request.source or request.model_id
        slot = self.slots.get(request.model_id)
        while slot is not None and slot.status == "unloading":
            await asyncio.sleep(0.05)  # an eviction in progress; load after it
            slot = self.slots.get(request.model_id)
        if slot is not None and slot.status != "failed":
            if (slot.source, slot.harness) != (source, harness_name):
                raise Conflict(
                    f"model {request.model_id!r} is loaded from {slot.harness}:{slot.source}, "
                    f"not {harness_name}:{source}"
                )
            if slot.load_task is not None:
                await asyncio.shield(slot.load_task)
            return slot
        harness = self.harnesses.get(harness_name)
        need = _as_int(request.options.get("vram_mb"))
        devices = self._pick_devices(request.devices, need)
        spec = self.spec_for(request, devices)
        slot = ModelSlot(request.model_id, harness_name, source, devices)
        slot.vram_used_mb = need  # reserve the estimate while loading
        self.slots[request.model_id] = slot
        slot.load_task = asyncio.create_task(self._load(slot, harness.load(spec)))
        await asyncio.shield(slot.load_task)
        return slot

    async def _load(self, slot: ModelSlot, loading: Any) -> LoadedModel:
        started = time.perf_counter()
        try:
            model: LoadedModel = await loading
        except HarnessError as exc:
            self._failed(slot, str(exc))
            raise api_error_from(exc) from None
        except ImportError as exc:
            message = (
                f"harness {slot.harness!r} needs {exc.name or exc}, which is not installed here; "
                f"run: {BOOTSTRAP_HINT}"
            )
            log.error("loading %s: %s", slot.model_id, message)
            self._failed(slot, message)
            raise ApiError(message, code="missing_dependency") from None
        except Exception as exc:
            log.exception("loading %s failed", slot.model_id)
            self._failed(slot, f"{type(exc).__name__}: {exc}")
            raise
        finally:
            slot.load_task = None
        slot.ready(model)
        self.metrics.model_loaded(slot.model_id, time.perf_counter() - started, slot.vram_used_mb)
        log.info("loaded %s (%s, %d MB)", slot.model_id, model.provider, slot.vram_used_mb)
        return model

    def _failed(self, slot: ModelSlot, error: str) -> None:
        slot.status, slot.error, slot.vram_used_mb = "failed", error, 0

    async def unload(self, model_id: str, drain_s: float = UNLOAD_DRAIN_S) -> None:
        slot = self.slots.get(model_id)
        if slot is None or slot.status == "unloading":
            raise NotFound(f"model {model_id!r} is not loaded")
        if slot.load_task is not None:
            try:
                await asyncio.shield(slot.load_task)
            except Exception:  # noqa: BLE001 - a failed load leaves nothing to free
                log.debug("unload of %s after a failed load", model_id)
        slot.status = "unloading"
        try:
            await slot.drain(drain_s)
            if slot.model is not None:
                await slot.model.unload()
        finally:
            self.slots.pop(model_id, None)
            self.metrics.model_unloaded(model_id)
        log.info("unloaded %s", model_id)

    async def unload_all(self, drain_s: float) -> None:
        await asyncio.gather(
            *(self.unload(m, drain_s) for m, s in list(self.slots.items()) if s.status != "failed"),
            return_exceptions=True,
        )

    def loaded(self, model_id: str) -> ModelSlot:
        slot = self.slots.get(model_id)
        if slot is None or slot.status not in ("loaded", "loading"):
            raise NotFound(
                f"model {model_id!r} is not loaded on this neuron", code="model_not_found"
            )
        return slot


def _as_int(value: Any) -> int:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0


def api_error_from(exc: HarnessError) -> ApiError:
    cls = BY_STATUS.get(exc.status)
    if cls is None:
        return ApiError(str(exc), code=exc.code)
    return cls(str(exc), code=exc.code)
