"""Network namespaces joined by veth pairs: a few "hosts" on one machine (needs root).

A ``Bed`` owns every namespace and link it creates and removes them on ``close()``,
also after a failure. Names carry the pid (``cxt-<pid>-<n>``), so runs never clash and
leftovers of a dead run are swept on the next start. Each link is a private /30 in
10.213.0.0/16 whose two addresses exist only on our own veth ends: traffic in these
tests never leaves the machine and never reaches any other address.
"""

from __future__ import annotations

import functools
import itertools
import os
import shutil
import subprocess
from collections.abc import Sequence

import attrs

PREFIX = "cxt"
CMD_BOUND_S = 10.0
_links = itertools.count()  # one /30 per link, never reused within a run


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run ``ip ARGS`` (bounded); raise with its stderr when it fails and ``check``."""
    done = subprocess.run(
        ["ip", *args], capture_output=True, text=True, timeout=CMD_BOUND_S, check=False
    )
    if check and done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done


@functools.cache
def unavailable() -> str | None:
    """Why namespaces cannot be used here (None when they can); checked once per run."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "the ip command (iproute2) is not installed"
    sweep_leftovers()
    probe = f"{PREFIX}-{os.getpid()}-probe"
    try:
        made = ip("netns", "add", probe, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"ip netns add failed: {exc}"
    if made.returncode != 0:
        return f"the kernel refuses network namespaces: {made.stderr.strip()}"
    ip("netns", "del", probe, check=False)
    return None


def sweep_leftovers() -> None:
    """Delete namespaces of earlier runs whose process is gone."""
    listed = ip("netns", "list", check=False).stdout.split("\n")
    for line in listed:
        name = line.split(" ", 1)[0]
        parts = name.split("-")
        ours = len(parts) >= 3 and parts[0] == PREFIX and parts[1].isdigit()
        if ours and not os.path.exists(f"/proc/{parts[1]}"):
            ip("netns", "del", name, check=False)


@attrs.define
class Link:
    """A veth pair: end ``a`` (in ``ns_a``; None is the test's own namespace) and ``b``."""

    ns_a: str | None
    ns_b: str
    dev_a: str
    dev_b: str
    addr_a: str
    addr_b: str


class Bed:
    """The namespaces and links of one test."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.namespaces: list[str] = []
        self.links: list[Link] = []
        self._count = itertools.count()

    def namespace(self, role: str) -> str:
        """A new namespace with loopback up."""
        name = f"{PREFIX}-{self.pid}-{next(self._count)}{role[:8]}"
        ip("netns", "add", name)
        self.namespaces.append(name)
        ip("-n", name, "link", "set", "lo", "up")
        return name

    def link(self, ns_a: str | None, ns_b: str) -> Link:
        """Join ``ns_a`` (None: this process's namespace) and ``ns_b`` with a /30."""
        k = next(_links) + (self.pid % 64) * 64
        third, fourth = 16 + (k // 64) % 224, (k % 64) * 4
        net = f"10.213.{third}."
        tag = f"cx{self.pid % 10000:04d}{k % 100000:05d}"
        link = Link(ns_a, ns_b, tag + "a", tag + "b", net + str(fourth + 1), net + str(fourth + 2))
        ip("link", "add", link.dev_a, "type", "veth", "peer", "name", link.dev_b)
        self.links.append(link)
        ip("link", "set", link.dev_b, "netns", ns_b)
        if ns_a is not None:
            ip("link", "set", link.dev_a, "netns", ns_a)
        for ns, dev, addr in ((ns_a, link.dev_a, link.addr_a), (ns_b, link.dev_b, link.addr_b)):
            where = ("-n", ns) if ns is not None else ()
            ip(*where, "addr", "add", addr + "/30", "dev", dev)
            ip(*where, "link", "set", dev, "up")
        return link

    def set_up(self, link: Link, up: bool) -> None:
        """Take both ends of ``link`` down (a partition) or up again (the heal)."""
        state = "up" if up else "down"
        for ns, dev in ((link.ns_a, link.dev_a), (link.ns_b, link.dev_b)):
            where = ("-n", ns) if ns is not None else ()
            ip(*where, "link", "set", dev, state)

    def exec_argv(self, ns: str, argv: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", ns, *argv]

    def close(self) -> None:
        """Remove every namespace (their veth ends go with them) and any root-side end."""
        for name in reversed(self.namespaces):
            ip("netns", "del", name, check=False)
        for link in self.links:
            if link.ns_a is None:
                ip("link", "del", link.dev_a, check=False)
        self.namespaces.clear()
        self.links.clear()
