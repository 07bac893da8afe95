"""What this host has: GPUs (through nvidia-smi), CPU and RAM, or simulated devices.

I/O: runs ``nvidia-smi`` (bounded by a timeout) and reads /proc/meminfo. A host
without a usable nvidia-smi offers its RAM as one ``cpu`` device, so the whole
system runs on machines without GPUs.
"""

from __future__ import annotations

import asyncio
import os
import platform
import shutil

import attrs

from cortex.core.config import SimulatedDevice
from cortex.harness import DeviceInfo

# nvidia-smi can hang on a wedged driver; a poll must not.
NVIDIA_SMI_TIMEOUT_S = 5.0
_QUERY = "index,name,memory.total,memory.used,utilization.gpu,temperature.gpu,compute_cap"


@attrs.frozen
class GpuReading:
    index: int
    name: str
    vram_total_mb: int
    vram_used_mb: int
    utilization_pct: float | None
    temp_c: float | None
    compute_capability: str | None


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None  # "[N/A]" on some boards


def parse_nvidia_smi(text: str) -> list[GpuReading]:
    readings = []
    for line in text.strip().splitlines():
        fields = [f.strip() for f in line.split(",")]
        if len(fields) < 7:
            continue
        total, used = _number(fields[2]), _number(fields[3])
        if total is None or used is None:
            continue
        readings.append(
            GpuReading(
                index=int(fields[0]),
                name=fields[1],
                vram_total_mb=int(total),
                vram_used_mb=int(used),
                utilization_pct=_number(fields[4]),
                temp_c=_number(fields[5]),
                compute_capability=None if fields[6].startswith("[") else fields[6],
            )
        )
    return readings


async def _run(*argv: str) -> str | None:
    if shutil.which(argv[0]) is None:
        return None
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL
        )
    except OSError:
        return None
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), NVIDIA_SMI_TIMEOUT_S)
    except asyncio.TimeoutError:
        proc.kill()
        await proc.wait()
        return None
    return out.decode(errors="replace") if proc.returncode == 0 else None


async def read_gpus() -> list[GpuReading]:
    out = await _run("nvidia-smi", f"--query-gpu={_QUERY}", "--format=csv,noheader,nounits")
    return parse_nvidia_smi(out) if out else []


async def read_driver() -> tuple[str | None, str | None]:
    """(driver_version, cuda_version) from nvidia-smi's header, or (None, None)."""
    out = await _run("nvidia-smi")
    if not out:
        return None, None
    driver = cuda = None
    for word_line in out.splitlines():
        if "Driver Version:" in word_line:
            driver = word_line.split("Driver Version:")[1].split()[0]
        if "CUDA Version:" in word_line:
            cuda = word_line.split("CUDA Version:")[1].split()[0].strip("|")
    return driver, cuda


def meminfo_mb() -> tuple[int, int]:
    """(total, available) RAM in MB."""
    values: dict[str, int] = {}
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                key, _, rest = line.partition(":")
                values[key] = int(rest.split()[0]) // 1024
    except OSError:
        return 0, 0
    return values.get("MemTotal", 0), values.get("MemAvailable", 0)


def cpu_device() -> DeviceInfo:
    total, _ = meminfo_mb()
    return DeviceInfo(index=0, name="cpu", vram_total_mb=total, kind="cpu")


def simulated(devices: tuple[SimulatedDevice, ...]) -> list[DeviceInfo]:
    return [
        DeviceInfo(index=i, name=d.name, vram_total_mb=d.vram_total_mb, kind="simulated")
        for i, d in enumerate(devices)
    ]


async def discover_devices(simulate: tuple[SimulatedDevice, ...]) -> list[DeviceInfo]:
    if simulate:
        return simulated(simulate)
    gpus = await read_gpus()
    if gpus:
        return [
            DeviceInfo(index=g.index, name=g.name, vram_total_mb=g.vram_total_mb, kind="cuda")
            for g in gpus
        ]
    return [cpu_device()]


def host_facts() -> dict[str, str]:
    return {
        "hostname": platform.node(),
        "os": platform.system().lower(),
        "kernel": platform.release(),
    }


def cpu_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
