"""``cortex status``: the fleet as the gateway sees it, as a table or JSON.

I/O: HTTP GETs to the gateway (standard library only, so it runs anywhere).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from typing import Any


def fetch(endpoint: str, path: str, api_key: str | None) -> Any:
    request = urllib.request.Request(endpoint.rstrip("/") + path)
    if api_key:
        request.add_header("Authorization", f"Bearer {api_key}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return json.loads(exc.read() or b"{}")


def table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows
    )


def run(args: argparse.Namespace) -> int:
    key = args.api_key or os.environ.get("CORTEX_API_KEY")
    try:
        health = fetch(args.endpoint, "/health", key)
        models = fetch(args.endpoint, "/v1/models", key)
    except (OSError, ValueError) as exc:
        print(f"cortex: cannot reach the gateway at {args.endpoint}: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({"health": health, "models": models.get("data", [])}, indent=2))
        return 0
    nodes = health.get("nodes", {})
    print(
        f"gateway {args.endpoint}: {health.get('status')} "
        f"({nodes.get('healthy', 0)}/{nodes.get('total', 0)} nodes healthy)"
    )
    rows = [["MODEL", "LOADED", "LOCATIONS", "FEASIBLE ON", "ALIASES"]]
    for m in models.get("data", []):
        where = ", ".join(f"{loc['node']}:{loc['status']}" for loc in m.get("locations", []))
        rows.append(
            [
                m["id"],
                "yes" if m.get("loaded") else "no",
                where or "-",
                ", ".join(m.get("feasible_on", [])) or "(nowhere)",
                ", ".join(m.get("aliases", [])) or "-",
            ]
        )
    print(table(rows))
    return 0
