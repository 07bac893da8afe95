"""Benchmark: what the cortex gateway costs over a 40-line aiohttp proxy and over no proxy.

Run: ``python bench/gateway.py [--quick] [--rounds N] [--json PATH]`` (about 6 minutes; ``--quick``
about one). Each server runs in its own process on loopback: a fake neuron
(``bench/fake_neuron.py``), the minimal proxy (``bench/minimal_proxy.py``), and the gateway
from a freshly built ``cortex.pyz`` run by this Python (compiled aiohttp, uvloop, psutil when
it has them), once as is and once with ``CORTEX_PURE=1``. This process is the load generator
(one aiohttp session per target). Per round every scenario runs against every target, the
order rotating each round; figures are medians over rounds. CPU is the server process's own
(user + system, psutil) over the measured requests; "chunk" is one upstream SSE write (one
token frame; the role frame and the final frame count too). Latency figures are added to
the same scenario sent straight to the fake neuron.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

import aiohttp
import attrs
import psutil
from fake_neuron import MODELS

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
FILLER = "You are a helpful assistant. Answer briefly and precisely. " * 6
OPEN_STREAMS = 1000


@attrs.frozen
class Scenario:
    name: str
    concurrency: int
    requests: int
    stream: bool = False
    tokens: int = 64
    delay_ms: int = 0
    api: str = "openai"
    targets: tuple[str, ...] = ("direct", "minimal", "cortex", "cortex-pure")
    pair: str = ""  # anthropic: the OpenAI scenario its CPU per chunk is compared with

    @property
    def model(self) -> str:
        return f"bench-d{self.delay_ms}"


def scenarios(quick: bool) -> list[Scenario]:
    k = 5 if quick else 1  # --quick: a fifth of the requests, shorter long streams
    cortex = ("direct", "cortex", "cortex-pure")
    quiet = ("direct", "minimal", "cortex", "cortex-pure", "cortex-quiet")
    long_tokens = 64 if quick else 256
    s16, long = "stream 64 tok C=16 (2 ms/tok)", f"32 streams x {long_tokens} tok, 20 ms/tok"
    return [
        Scenario("non-stream C=1", 1, 1500 // k, targets=quiet),
        Scenario("non-stream C=16", 16, 3000 // k, targets=quiet),
        Scenario("non-stream C=64", 64, 3000 // k, targets=quiet),
        Scenario("stream 64 tok C=1 (1 ms/tok)", 1, 40 // k, True, 64, 1),
        Scenario(s16, 16, 160 // k, True, 64, 2),
        Scenario(long, 32, 32, True, long_tokens, 20),
        Scenario("anthropic: " + s16, 16, 160 // k, True, 64, 2, "anthropic", cortex, s16),
        Scenario("anthropic: " + long, 32, 32, True, long_tokens, 20, "anthropic", cortex, long),
    ]


def body_of(s: Scenario, model: str | None = None) -> bytes:
    model = model or s.model
    if s.api == "anthropic":
        data: dict[str, Any] = {
            "model": model, "max_tokens": s.tokens, "system": FILLER, "stream": s.stream,
            "messages": [{"role": "user", "content": "What is the capital of France?"}],
        }  # fmt: skip
    else:
        data = {
            "model": model, "max_tokens": s.tokens, "temperature": 0, "stream": s.stream,
            "messages": [
                {"role": "system", "content": FILLER},
                {"role": "user", "content": "What is the capital of France?"},
            ],
        }  # fmt: skip
    return json.dumps(data).encode()


# -- the servers ------------------------------------------------------------------------


@attrs.define
class Server:
    name: str
    popen: subprocess.Popen[bytes]
    port: int
    proc: psutil.Process
    idle_rss: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cpu(self) -> float:
        """CPU seconds so far: the scheduler's nanosecond count on Linux (psutil's
        ``cpu_times`` moves in 10 ms ticks, too coarse for one scenario), else psutil's."""
        try:
            total = 0
            for thread in self.proc.threads():
                with open(f"/proc/{self.proc.pid}/task/{thread.id}/schedstat") as f:
                    total += int(f.read().split()[0])
            return total / 1e9
        except (OSError, ValueError, psutil.Error):
            t = self.proc.cpu_times()
            return t.user + t.system

    def rss(self) -> int:
        return int(self.proc.memory_info().rss)


def start(name: str, argv: list[str], log: str, env: dict[str, str] | None = None) -> Server:
    err = open(log, "wb")  # noqa: SIM115 - the child keeps it
    popen = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err, env=env, cwd=ROOT)
    assert popen.stdout is not None
    line = popen.stdout.readline().decode()
    words = line.replace(",", " ").split()
    if "ready" not in words:
        popen.kill()
        raise SystemExit(f"{name} did not start: {line!r}; see {log}")
    port = int(words[words.index("port") + 1] if "port" in words else words[1])
    return Server(name, popen, port, psutil.Process(popen.pid))


def write_config(folder: str, neuron_port: int) -> str:
    models = "".join(
        f'[[models]]\nid = "{m}"\nharness = "echo"\nvram_mb = 100\nmax_concurrency = 4096\n\n'
        for m in MODELS
    )
    with open(os.path.join(folder, "models.toml"), "w") as f:
        f.write(models)
    path = os.path.join(folder, "cortex.toml")
    with open(path, "w") as f:
        f.write(
            '[gateway]\nlisten = "127.0.0.1:0"\nmetrics_listen = "127.0.0.1:0"\n'
            'models = "models.toml"\nmax_queue_per_model = 4096\n\n'
            f'[[neurons]]\nname = "n1"\nendpoint = "http://127.0.0.1:{neuron_port}"\n'
        )
    return path


def start_all(folder: str, log_level: str) -> tuple[Server, dict[str, Server]]:
    py = sys.executable
    pyz = os.path.join(folder, "cortex.pyz")
    subprocess.run([py, os.path.join(ROOT, "build_pyz.py"), "-o", pyz], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    neuron = start("neuron", [py, os.path.join(HERE, "fake_neuron.py")], f"{folder}/neuron.log")
    config = write_config(folder, neuron.port)
    minimal = start(
        "minimal", [py, os.path.join(HERE, "minimal_proxy.py"), neuron.url], f"{folder}/min.log"
    )
    gateway = [py, pyz, "--log-level", log_level, "gateway", "-c", config]
    cortex = start("cortex", gateway, f"{folder}/cortex.log")
    pure = start("cortex-pure", gateway, f"{folder}/pure.log", {**os.environ, "CORTEX_PURE": "1"})
    quiet = [py, pyz, "--log-level", "warning", "gateway", "-c", config]
    quieter = start("cortex-quiet", quiet, f"{folder}/quiet.log")
    time.sleep(1.5)  # start-up garbage settles
    targets = {"minimal": minimal, "cortex": cortex, "cortex-pure": pure, "cortex-quiet": quieter}
    for server in targets.values():
        server.idle_rss = server.rss()
    return neuron, targets


# -- the load -----------------------------------------------------------------------------


@attrs.define
class Run:
    cpu_s: float | None
    wall_s: float
    requests: int
    chunks: int
    latencies: list[float]  # whole request (non-stream) or time to first token (stream)


async def one(session: aiohttp.ClientSession, url: str, body: bytes, mark: bytes | None) -> Any:
    started = time.perf_counter()
    ttft, reads = None, 0
    async with session.post(url, data=body, headers={"Content-Type": "application/json"}) as r:
        if r.status != 200:
            raise RuntimeError(f"{url}: {r.status} {(await r.read())[:300]!r}")
        if mark is None:
            await r.read()
        else:
            async for chunk in r.content.iter_any():
                reads += 1
                if ttft is None and mark in chunk:
                    ttft = time.perf_counter() - started
    if mark is not None and ttft is None:
        raise RuntimeError(f"{url}: a stream without tokens")
    return ttft if mark is not None else time.perf_counter() - started


def url_of(s: Scenario, base: str) -> str:
    return base + ("/v1/messages" if s.api == "anthropic" else "/v1/chat/completions")


def mark_of(s: Scenario) -> bytes | None:
    if not s.stream:
        return None
    return b"text_delta" if s.api == "anthropic" else b'"content":" word'


async def load(
    session: aiohttp.ClientSession, s: Scenario, url: str, count: int, latencies: list[float]
) -> None:
    body, mark, left = body_of(s), mark_of(s), [count]

    async def worker() -> None:
        while left[0] > 0:
            left[0] -= 1
            latencies.append(await one(session, url, body, mark))

    await asyncio.gather(*(worker() for _ in range(min(s.concurrency, count))))


async def measure(
    session: aiohttp.ClientSession, s: Scenario, base: str, server: Server | None
) -> Run:
    if server is None:
        s = attrs.evolve(s, api="openai")  # the neuron speaks OpenAI only: the baseline
    url = url_of(s, base)
    warm = attrs.evolve(s, tokens=min(s.tokens, 8))  # opens the connections
    await load(session, warm, url, max(s.concurrency, min(50, s.requests // 4)), [])
    latencies: list[float] = []
    cpu = server.cpu() if server else 0.0
    started = time.perf_counter()
    await load(session, s, url, s.requests, latencies)
    wall = time.perf_counter() - started
    cpu_s = server.cpu() - cpu if server else None
    return Run(cpu_s, wall, s.requests, s.requests * (s.tokens + 2) if s.stream else 0, latencies)


async def open_streams(
    session: aiohttp.ClientSession, base: str, neuron: Server, server: Server | None
) -> float | None:
    """Bytes of server RSS per open stream, with OPEN_STREAMS held open at once."""
    s = Scenario("open", OPEN_STREAMS, OPEN_STREAMS, True, 4, 0)
    body = body_of(s, "bench-hold")
    url = url_of(s, base)
    before = server.rss() if server else 0
    first = asyncio.Semaphore(0)

    async def held() -> None:
        async with session.post(url, data=body) as r:
            got = False
            async for chunk in r.content.iter_any():
                if not got and b'"content":" word' in chunk:
                    got = True
                    first.release()

    tasks = []
    for _ in range(OPEN_STREAMS // 100):  # ramp in batches: listen backlogs are finite
        tasks += [asyncio.create_task(held()) for _ in range(100)]
        for _ in range(100):
            await asyncio.wait_for(first.acquire(), 60)
    await asyncio.sleep(0.5)
    after = server.rss() if server else 0
    async with session.post(neuron.url + "/bench/release") as r:
        await r.read()
    await asyncio.wait_for(asyncio.gather(*tasks), 120)
    return (after - before) / OPEN_STREAMS if server else None


# -- the report -------------------------------------------------------------------------


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def med(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def fmt(value: float | None, unit: str = "", digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}{unit}"


def report(results: dict[tuple[str, str], list[Run]], memory: dict[str, list[float | None]],
           servers: dict[str, Server], scens: list[Scenario]) -> dict[str, Any]:  # fmt: skip
    out: dict[str, Any] = {"scenarios": {}, "idle_rss_mb": {}, "per_stream_kb": {}}
    print("\n| scenario | target | CPU ms/req | CPU µs/chunk | ratio | added p50 ms "
          "| added p99 ms | req/s |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for s in scens:
        direct = results[(s.name, "direct")]
        d50 = med([pct(r.latencies, 0.5) for r in direct])
        d99 = med([pct(r.latencies, 0.99) for r in direct])
        base: float | None = None
        for target in s.targets:
            runs = results[(s.name, target)]
            per_req = med(
                [r.cpu_s / r.requests * 1e3 if r.cpu_s is not None else None for r in runs]
            )
            per_chunk = med(
                [
                    r.cpu_s / r.chunks * 1e6 if r.cpu_s is not None and r.chunks else None
                    for r in runs
                ]
            )
            p50 = med([pct(r.latencies, 0.5) for r in runs])
            p99 = med([pct(r.latencies, 0.99) for r in runs])
            rps = med([r.requests / r.wall_s for r in runs])
            if target == "minimal":
                base = per_req
            elif s.pair and per_req is not None:  # translation: vs the same target's passthrough
                base = out["scenarios"][s.pair][target]["cpu_ms_per_request"]
            ratio = per_req / base if per_req is not None and base and target != "direct" else None
            add50 = (p50 - d50) * 1e3 if target != "direct" and p50 and d50 else None
            add99 = (p99 - d99) * 1e3 if target != "direct" and p99 and d99 else None
            out["scenarios"].setdefault(s.name, {})[target] = {
                "cpu_ms_per_request": per_req, "cpu_us_per_chunk": per_chunk, "ratio": ratio,
                "added_p50_ms": add50, "added_p99_ms": add99, "requests_per_s": rps,
            }  # fmt: skip
            chunk = fmt(per_chunk, "", 1) if s.stream else ""
            print(f"| {s.name} | {target} | {fmt(per_req)} | {chunk} | {fmt(ratio, 'x', 2)} "
                  f"| {fmt(add50)} | {fmt(add99)} | {rps:.0f} |")  # fmt: skip
    print("\n| target | idle RSS MB | RSS per open stream KB (1000 open) |\n|---|---|---|")
    for name, server in servers.items():
        per = max((v for v in memory[name] if v is not None), default=None)
        out["idle_rss_mb"][name] = server.idle_rss / 2**20
        out["per_stream_kb"][name] = per / 1024 if per is not None else None
        kb = fmt(per / 1024 if per else None, "", 1)
        print(f"| {name} | {server.idle_rss / 2**20:.1f} | {kb} |")
    return out


# -- the run ------------------------------------------------------------------------------


async def bench(args: argparse.Namespace, folder: str) -> dict[str, Any]:
    neuron, servers = start_all(folder, args.log_level)
    scens = scenarios(args.quick)
    results: dict[tuple[str, str], list[Run]] = {}
    memory: dict[str, list[float | None]] = {name: [] for name in servers}
    bases = {"direct": neuron.url, **{n: s.url for n, s in servers.items()}}
    deadline = time.monotonic() + args.seconds
    sessions = {
        name: aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) for name in bases
    }

    def rotate(xs: list[str], r: int) -> list[str]:
        return xs[r % len(xs) :] + xs[: r % len(xs)]

    try:
        for r in range(args.rounds):
            if r and time.monotonic() > deadline:
                print(f"time bound reached after {r} rounds", file=sys.stderr)
                break
            for s in scens:
                for target in rotate(list(s.targets), r):
                    run = await measure(sessions[target], s, bases[target], servers.get(target))
                    results.setdefault((s.name, target), []).append(run)
                print(f"round {r + 1}: {s.name} done", file=sys.stderr)
            for target in rotate(["minimal", "cortex", "cortex-pure"], r):
                per = await open_streams(sessions[target], bases[target], neuron, servers[target])
                memory[target].append(per)
            print(f"round {r + 1}: {OPEN_STREAMS} open streams done", file=sys.stderr)
    finally:
        for session in sessions.values():
            await session.close()
        for server in [neuron, *servers.values()]:
            server.popen.terminate()
            server.popen.wait(10)
    return report(results, memory, servers, scens)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one round, fewer requests (~1 min)")
    parser.add_argument("--rounds", type=int, default=None, help="default 3 (quick: 1)")
    parser.add_argument("--seconds", type=float, default=420, help="no new round after this")
    parser.add_argument("--log-level", default="info", help="the gateway's (default: info)")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()
    args.rounds = args.rounds or (1 if args.quick else 3)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 3 * OPEN_STREAMS + 1024  # inherited by the servers; a gateway holds 2 per stream
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))
    print(f"python {sys.version.split()[0]}, aiohttp {aiohttp.__version__}, {os.cpu_count()} CPUs",
          file=sys.stderr)  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="cortex-bench-") as folder:
        try:
            import uvloop
        except ImportError:
            out = asyncio.run(bench(args, folder))
        else:
            out = uvloop.run(bench(args, folder))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
