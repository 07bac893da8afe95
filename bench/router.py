"""Benchmark: route() and plan_eviction() over a simulated 200-node, 500-model fleet.

Run: ``python bench/router.py [--seed N] [--seconds S]``. Prints p50/p99/max microseconds
per decision; the target is one routing decision under a millisecond.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

from cortex.core.catalogue import Catalogue
from cortex.core.config import ModelConfig
from cortex.core.eviction import plan_eviction
from cortex.core.fleet import LOADED, LOADING, DeviceView, FleetView, ModelOnNode, NodeView
from cortex.core.router import route

NODES, MODELS = 200, 500


def make_catalogue(rng: random.Random) -> Catalogue:
    models = []
    for i in range(MODELS):
        k = rng.choice((1, 1, 1, 1, 2, 4))
        models.append(
            ModelConfig(
                id=f"model-{i:03}",
                aliases=(f"alias-{i:03}",) if rng.random() < 0.3 else (),
                vram_mb=rng.randrange(1000, 60000, 500) * k,
                min_devices=k,
                min_device_vram_mb=rng.choice((0, 0, 16000, 24000)),
                pinned_on=(f"node-{rng.randrange(NODES):03}",) if rng.random() < 0.05 else (),
                priority=rng.randrange(4),
            )
        )
    return Catalogue(tuple(models))


def make_node(rng: random.Random, i: int, catalogue: Catalogue, crowd: int) -> NodeView:
    totals = [rng.choice((8, 16, 24, 40, 48, 80)) * 1000] * rng.choice((1, 2, 4, 8))
    free = list(totals)
    models = []
    for profile in rng.sample(catalogue.models, rng.randrange(0, crowd)):
        k = min(profile.min_devices, len(totals))
        devices = tuple(sorted(rng.sample(range(len(totals)), k)))
        share = min(profile.vram_mb // k, *(free[d] for d in devices))
        if share <= 0:
            continue
        for d in devices:
            free[d] -= share
        busy = rng.random() < 0.3
        models.append(
            ModelOnNode(
                id=profile.id,
                status=LOADING if rng.random() < 0.03 else LOADED,
                vram_used_mb=share * k,
                devices=devices,
                in_flight=rng.randrange(1, 4) if busy else 0,
                queued=rng.randrange(3) if busy else 0,
                last_used=rng.uniform(0, 1000),
                loaded_at=rng.uniform(0, 1000),
            )
        )
    devices_view = tuple(
        DeviceView(d, f"gpu{d}", t, f) for d, (t, f) in enumerate(zip(totals, free, strict=True))
    )
    return NodeView(
        f"node-{i:03}",
        f"http://node-{i:03}:13131",
        rng.random() < 0.95,
        devices_view,
        tuple(models),
    )


def percentiles(samples_ns: list[int]) -> str:
    us = sorted(s / 1000 for s in samples_ns)
    p50 = statistics.median(us)
    p99 = us[min(len(us) - 1, int(len(us) * 0.99))]
    return f"n={len(us)} p50={p50:.1f}us p99={p99:.1f}us max={us[-1]:.1f}us"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    catalogue = make_catalogue(rng)
    for label, crowd in (("typical", 12), ("crowded", 60)):
        nodes = tuple(make_node(rng, i, catalogue, crowd) for i in range(NODES))
        resident = sum(len(n.models) for n in nodes)
        used = 1 - sum(n.vram_free_mb for n in nodes) / sum(n.vram_total_mb for n in nodes)
        print(
            f"\n{label} fleet: {NODES} nodes, {MODELS} catalogue models, "
            f"{resident} resident entries, {used:.0%} of memory used"
        )
        run(rng, catalogue, nodes, args.seconds)


def run(
    rng: random.Random, catalogue: Catalogue, nodes: tuple[NodeView, ...], seconds: float
) -> None:
    names = [n for m in catalogue.models for n in (m.id, *m.aliases)] + ["no-such-model"]
    build = []
    for _ in range(20):  # a fresh snapshot per poll: what the first route() after it pays
        fleet = FleetView(nodes)
        start = time.perf_counter_ns()
        _ = fleet.model_index, fleet.healthy_by_free
        build.append(time.perf_counter_ns() - start)
    print(f"  snapshot indexes (once per snapshot): {percentiles(build)}")

    fleet = FleetView(nodes)
    by_kind: dict[str, list[int]] = {}
    samples: list[int] = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        name = rng.choice(names)
        start = time.perf_counter_ns()
        decision = route(fleet, catalogue, name, 1000.0, strategy=rng.choice(("lru", "priority")))
        took = time.perf_counter_ns() - start
        samples.append(took)
        by_kind.setdefault(type(decision).__name__, []).append(took)
    print(f"  route(): {percentiles(samples)}")
    for kind, taken in sorted(by_kind.items()):
        print(f"    {kind}: {percentiles(taken)}")

    evict: list[int] = []
    planned = 0
    deadline = time.perf_counter() + seconds / 2
    while time.perf_counter() < deadline:
        node, profile = rng.choice(nodes), rng.choice(catalogue.models)
        start = time.perf_counter_ns()
        victims = plan_eviction(node, catalogue, profile, profile.vram_mb, "lru", 1000.0)
        evict.append(time.perf_counter_ns() - start)
        planned += victims is not None
    print(f"  plan_eviction(): {percentiles(evict)} ({planned} found a plan)")


if __name__ == "__main__":
    main()
