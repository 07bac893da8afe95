"""Run a model's generations on one thread, one decode step at a time over all active sequences.

A newcomer joins at a step boundary: its prompt is prefilled alone (after the longest prefix the
``PrefixCache`` holds), it takes its first token, and its KV is merged into the batch. Every step
then feeds one token per row; rows that end (EOS, stop string, budget) or whose stream was closed
leave before the next step, and their KV goes to the prefix cache. Each row keeps its own
sampling parameters, random generator, stops, budget and detokeniser (its ``Generation``).
"""

from __future__ import annotations

import collections
import logging
import threading

from cortex.harness import HarnessError
from cortex_onnx.engine import Generation
from cortex_onnx.kvbatch import Batch, Row, new_batch
from cortex_onnx.prefix import PrefixCache
from cortex_onnx.session import Decoder, KVCache

log = logging.getLogger("cortex.onnx")


class Job:
    """One submitted generation; ``done`` is set when it has ended, ``error`` says why if failed."""

    def __init__(self, generation: Generation) -> None:
        self.generation = generation
        self.done = threading.Event()
        self.error: BaseException | None = None

    def end(self, error: BaseException | None = None) -> None:
        """Mark the job finished (with the failure, if any)."""
        self.error = error
        self.done.set()


class Scheduler:
    """The batch of one loaded model and the thread that steps it."""

    def __init__(
        self, decoder: Decoder, max_batch: int, prefix: PrefixCache, name: str = "onnx"
    ) -> None:
        self.decoder = decoder
        self.max_batch = max(1, max_batch)
        self.prefix = prefix
        self.batch: Batch = new_batch(decoder)
        self.steps = 0  # batched decode steps run, for tests and the benchmark
        self._jobs: dict[int, Job] = {}  # id(row) -> job
        self._pending: collections.deque[Job] = collections.deque()
        self._wake = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._forever, name=f"{name}-batch", daemon=True)
        self._started = False

    def submit(self, generation: Generation) -> Job:
        """Queue a generation; it joins the batch at the next step boundary with room."""
        job = Job(generation)
        with self._wake:
            if self._closed:
                raise HarnessError("the model has been unloaded", 409, "model_unloaded")
            self._pending.append(job)
            if not self._started:
                self._started = True
                self._thread.start()
            self._wake.notify()
        return job

    def close(self) -> None:
        """Stop the thread after its current step; unfinished jobs end with a 409 (blocking)."""
        with self._wake:
            self._closed = True
            self._wake.notify()
        if self._started:
            self._thread.join()

    def _forever(self) -> None:
        while True:
            with self._wake:
                while not self._closed and not self._pending and not self.batch.rows:
                    self._wake.wait()
                if self._closed:
                    break
                for job in [j for j in self._pending if j.generation.cancelled.is_set()]:
                    self._pending.remove(job)  # closed while waiting for a row
                    job.end()
                room = self.max_batch - len(self.batch.rows)
                joiners = [self._pending.popleft() for _ in range(min(room, len(self._pending)))]
            try:
                self.step_once(joiners)
            except Exception as e:  # keep serving; fail only what was running
                log.exception("batch scheduler step failed")
                self._fail_rows(e)
        error = HarnessError("the model has been unloaded", 409, "model_unloaded")
        with self._wake:
            jobs = list(self._pending) + list(self._jobs.values())
            self._pending.clear()
        for job in jobs:
            job.end(error)

    def step_once(self, joiners: list[Job]) -> None:
        """Drop closed streams, admit ``joiners``, then run one step over the batch."""
        batch = self.batch
        self._leave([r for r in batch.rows if r.generation.cancelled.is_set()])
        joined: list[tuple[Row, KVCache]] = []
        for job in joiners:
            try:
                admitted = self._prefill(job)
            except Exception as e:  # noqa: BLE001 - the failure belongs to this request only
                job.end(e)
                continue
            if admitted is not None:
                joined.append(admitted)
                self._jobs[id(admitted[0])] = job
        if joined:
            batch.regroup((), joined, export=False)
        if not batch.rows:
            return
        try:
            logits = batch.step()
        except Exception as e:  # a failed step fails every row in it
            log.exception("decode step failed")
            self._fail_rows(e)
            return
        self.steps += 1
        ended = []
        for row, row_logits in zip(batch.rows, logits, strict=True):
            token = row.generation.take(row_logits)
            if token is None:
                ended.append(row)
            else:
                row.token = token
        self._leave(ended)

    def _fail_rows(self, error: BaseException) -> None:
        """End every row's job with ``error`` and start an empty batch."""
        self.batch = new_batch(self.decoder)
        jobs, self._jobs = list(self._jobs.values()), {}
        for job in jobs:
            job.end(error)

    def _prefill(self, job: Job) -> tuple[Row, KVCache] | None:
        """Run a newcomer's prompt after its cached prefix; None when it ended at once."""
        gen = job.generation
        if gen.cancelled.is_set():
            job.end()
            return None
        ids = gen.plan.prompt_ids
        capacity = len(ids) + gen.plan.max_new_tokens
        cached, arrays = self.prefix.lookup(ids) if self.prefix.limit else (0, ())
        if cached:
            cache = self.decoder.cache_from(arrays, capacity)
        else:
            cache = self.decoder.new_cache(capacity)
        logits = self.decoder.forward(cache, ids[cached:])[-1]
        gen.cached_tokens = cached
        gen.prefilled()
        token = gen.take(logits) if not gen.cancelled.is_set() else None
        if token is None:
            if self.prefix.limit:
                self.prefix.insert(ids, self.decoder.export(cache))
            job.end()
            return None
        return Row(gen, ids, token), cache

    def _leave(self, rows: list[Row]) -> None:
        """Take ``rows`` out of the batch, keep their KV as prefixes, end their jobs."""
        if not rows:
            return
        exported = self.batch.regroup(rows, (), export=bool(self.prefix.limit))
        for row, arrays in zip(rows, exported, strict=False):
            self.prefix.insert(row.ids, arrays)
        for row in rows:
            self._jobs.pop(id(row)).end()
