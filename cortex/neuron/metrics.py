"""The neuron's Prometheus series (SPEC section 6), on a registry of its own.

Every harness gets them for free: the neuron shell records them around the
events a harness yields, so ``echo`` and ``onnx`` report the same way.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

PREFILL_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
TPS_BUCKETS = (1, 2, 5, 10, 20, 30, 50, 75, 100, 150, 200, 300, 500, 1000)
LOAD_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200, 1800)


class NeuronMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("neuron_requests", "Generations run", ["model"], registry=r)
        self.prompt_tokens = Counter(
            "neuron_prompt_tokens", "Prompt tokens processed", ["model"], registry=r
        )
        self.completion_tokens = Counter(
            "neuron_completion_tokens", "Tokens generated", ["model"], registry=r
        )
        self.prefill = Histogram(
            "neuron_prefill_seconds",
            "Request start to first generated token",
            ["model"],
            buckets=PREFILL_BUCKETS,
            registry=r,
        )
        self.decode_tps = Histogram(
            "neuron_decode_tokens_per_second",
            "Decode speed per request, after the first token",
            ["model"],
            buckets=TPS_BUCKETS,
            registry=r,
        )
        self.load_seconds = Histogram(
            "neuron_model_load_seconds",
            "Model load time, one observation per real load",
            ["model"],
            buckets=LOAD_BUCKETS,
            registry=r,
        )
        self.in_flight = Gauge("neuron_in_flight", "Generations running", ["model"], registry=r)
        self.queued = Gauge("neuron_queued", "Generations waiting", ["model"], registry=r)
        self.memory = Gauge(
            "neuron_model_memory_mb", "Memory a resident model holds", ["model"], registry=r
        )

    def model_loaded(self, model: str, seconds: float, memory_mb: int) -> None:
        self.load_seconds.labels(model).observe(seconds)
        self.memory.labels(model).set(memory_mb)

    def model_unloaded(self, model: str) -> None:
        """Zero, not stale: a scrape after the unload must not show the last load."""
        for gauge in (self.memory, self.in_flight, self.queued):
            gauge.labels(model).set(0)

    def generation(
        self,
        model: str,
        prompt_tokens: int,
        completion_tokens: int,
        prefill_s: float | None,
        decode_s: float,
    ) -> None:
        self.requests.labels(model).inc()
        self.prompt_tokens.labels(model).inc(prompt_tokens)
        self.completion_tokens.labels(model).inc(completion_tokens)
        if prefill_s is not None:
            self.prefill.labels(model).observe(prefill_s)
        if completion_tokens > 1 and decode_s > 0:
            self.decode_tps.labels(model).observe((completion_tokens - 1) / decode_s)

    def set_load(self, model: str, in_flight: int, queued: int) -> None:
        self.in_flight.labels(model).set(in_flight)
        self.queued.labels(model).set(queued)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
