"""``cortex status``: the fleet as the gateway sees it, as tables or JSON.

I/O: HTTP GETs to the gateway's ``/health`` and ``/admin/fleet`` (standard library
only, so it runs anywhere): nodes up or down with their devices' memory, where each
model is loaded with its load, and why a catalogue model is not loaded.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from cortex.cli.admin import GatewayError, call, fail


def table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows
    )


def _ago(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    if seconds < 120:
        return f"{seconds:.0f}s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m ago"
    return f"{seconds / 3600:.1f}h ago"


def _devices(node: dict[str, Any]) -> str:
    return (
        "; ".join(
            f"{d['name']} {d['used_mb']}/{d['total_mb']} MB used, {d['free_mb']} free"
            for d in node.get("devices", [])
        )
        or "-"
    )


def render(endpoint: str, health: dict[str, Any], fleet: dict[str, Any]) -> str:
    nodes = health.get("nodes", {})
    out = [
        f"gateway {endpoint}: {health.get('status')} "
        f"({nodes.get('healthy', 0)}/{nodes.get('total', 0)} nodes healthy)",
        "",
    ]
    rows = [["NODE", "STATE", "ENDPOINT", "DEVICES"]]
    for node in fleet.get("nodes", []):
        state = "up" if node.get("healthy") else "down"
        rows.append([node["name"], state, node.get("endpoint", ""), _devices(node)])
    out += [table(rows), ""]
    rows = [["MODEL", "NODE", "STATUS", "IN FLIGHT", "QUEUED", "LAST USED", "VRAM MB"]]
    for node in fleet.get("nodes", []):
        for m in node.get("models", []):
            pin = " (pinned)" if m.get("pinned") else ""
            rows.append(
                [
                    m["id"] + pin,
                    node["name"],
                    m["status"],
                    str(m.get("in_flight", 0)),
                    str(m.get("queued", 0)),
                    _ago(m.get("last_used_s_ago")),
                    str(m.get("vram_mb", 0)),
                ]
            )
    out.append(table(rows) if len(rows) > 1 else "no models loaded")
    idle = [m for m in fleet.get("models", []) if m.get("why_not_loaded")]
    if idle:
        out += ["", table([["NOT LOADED", "WHY"], *([m["id"], m["why_not_loaded"]] for m in idle)])]
    return "\n".join(out)


def run(args: argparse.Namespace) -> int:
    try:
        health = _health(args)
        fleet = call(args, "GET", "/admin/fleet")
    except GatewayError as exc:
        return fail(exc)
    if args.json:
        print(json.dumps({"health": health, **fleet}, indent=2))
        return 0
    print(render(args.endpoint, health, fleet))
    print_last_minute(args)
    return 0


def _health(args: argparse.Namespace) -> dict[str, Any]:
    """``/health`` answers 503 with its body when no node is up: still a report."""
    try:
        result = call(args, "GET", "/health")
    except GatewayError as exc:
        if str(exc).startswith("503"):
            return {"status": "down", "nodes": {}}
        raise
    return result if isinstance(result, dict) else {}


# -- the last minute, from the gateway's own counters (GET /admin/stats) ----------


def last_minute_table(stats: Any) -> str | None:
    """Requests, errors, TTFT p50 and tok/s per model over the gateway's last minute."""
    models = stats.get("models") if isinstance(stats, dict) else None
    if not isinstance(models, dict) or not models:
        return None

    def num(value: Any, fmt: str, unit: str = "") -> str:
        return format(value, fmt) + unit if isinstance(value, (int, float)) else "-"

    rows = [["MODEL", "REQUESTS", "ERRORS", "TTFT P50", "DECODE TOK/S", "OUT TOK/S"]]
    for model, m in sorted(models.items()):
        rows.append(
            [
                model or "(unknown)",
                str(m.get("requests", 0)),
                str(m.get("errors", 0)),
                num(m.get("ttft_p50_s"), ".3f", "s"),
                num(m.get("decode_tokens_per_second_p50"), ".1f"),
                num(m.get("completion_tokens_per_second"), ".1f"),
            ]
        )
    window = num(stats.get("window_s", 60), ".0f")
    return f"LAST MINUTE ({window} s, this gateway)\n" + table(rows)


def print_last_minute(args: argparse.Namespace) -> None:
    """Print the last-minute table; nothing when there was no traffic or no such route."""
    try:
        text = last_minute_table(call(args, "GET", "/admin/stats"))
    except GatewayError:
        return
    if text:
        print()
        print(text)
