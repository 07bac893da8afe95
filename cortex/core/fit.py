"""The memory fit rule: whether, and on which devices, a model fits on a node. Pure.

The rule (SPEC 1.2 feasibility plus memory): a model whose profile asks for
``min_devices = k`` (at least 1) and whose memory need is ``need_mb`` fits on a node
when ``k`` distinct devices each have ``vram_total_mb >= min_device_vram_mb`` and each
have at least ``ceil(need_mb / k)`` MB free. The devices chosen are the ``k`` eligible
ones with the most free memory (ties: lower index), so the largest holes are used and
the choice never depends on the order the neuron listed its devices in.

A resident model's memory is assumed split evenly over the devices it reports
(``ModelOnNode.devices``; the remainder of ``vram_used_mb / len(devices)`` goes to the
first ones listed). A model whose devices are unknown (empty) is assumed to sit on the
device with the least free memory (ties: lower index): on a one-device node that is
exact, and elsewhere it is the most likely place and never credits memory to a device
that has plenty already. Freed memory never lifts a device above its total.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from cortex.core.config import ModelConfig
from cortex.core.fleet import ModelOnNode, NodeView


def need_mb(profile: ModelConfig, measured_mb: Mapping[str, int] | None = None) -> int:
    """The memory a model needs: the measured figure once known, else the estimate."""
    if measured_mb is not None and profile.id in measured_mb:
        return max(measured_mb[profile.id], 0)
    return max(profile.vram_mb, 0)


def device_count(profile: ModelConfig) -> int:
    return max(profile.min_devices, 1)


def per_device_mb(profile: ModelConfig, need: int) -> int:
    """What each of the model's devices must have free: ``ceil(need / k)``."""
    k = device_count(profile)
    return -(-max(need, 0) // k)


def eligible_devices(node: NodeView, profile: ModelConfig) -> tuple[int, ...]:
    """Indices of the node's devices large enough (in total) for the profile."""
    return tuple(d.index for d in node.devices if d.vram_total_mb >= profile.min_device_vram_mb)


def choose_devices(
    free: Mapping[int, int], eligible: Iterable[int], k: int, per: int
) -> tuple[int, ...] | None:
    """The ``k`` eligible devices with most free memory, if each has ``per`` MB; sorted."""
    roomy = sorted((i for i in eligible if free.get(i, 0) >= per), key=lambda i: (-free[i], i))
    if len(roomy) < k:
        return None
    return tuple(sorted(roomy[:k]))


def free_by_device(node: NodeView) -> dict[int, int]:
    return {d.index: d.vram_free_mb for d in node.devices}


def fits(node: NodeView, profile: ModelConfig, need: int) -> tuple[int, ...] | None:
    """The device indices the model would occupy in the node's free memory, or None."""
    k = device_count(profile)
    return choose_devices(
        free_by_device(node), eligible_devices(node, profile), k, per_device_mb(profile, need)
    )


def shares(node: NodeView, model: ModelOnNode) -> dict[int, int]:
    """How much memory ``model`` holds on each device of ``node`` (the rule above)."""
    if model.vram_used_mb <= 0 or not node.devices:
        return {}
    known = {d.index for d in node.devices}
    devices = [i for i in model.devices if i in known]
    if not model.devices:
        devices = [min(node.devices, key=lambda d: (d.vram_free_mb, d.index)).index]
    if not devices:
        return {}
    base, extra = divmod(model.vram_used_mb, len(devices))
    out: dict[int, int] = {}
    for n, i in enumerate(devices):
        out[i] = out.get(i, 0) + base + (1 if n < extra else 0)
    return out


def free_after(node: NodeView, victims: Iterable[ModelOnNode]) -> dict[int, int]:
    """Free memory per device once ``victims`` are unloaded (never above a device's total)."""
    free = free_by_device(node)
    for victim in victims:
        for i, mb in shares(node, victim).items():
            free[i] += mb
    for d in node.devices:
        free[d.index] = min(free[d.index], max(d.vram_total_mb, d.vram_free_mb))
    return free
