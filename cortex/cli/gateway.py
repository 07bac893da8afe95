"""``cortex gateway``: read cortex.toml and its catalogue, then serve."""

from __future__ import annotations

import argparse

from cortex.cli.configfiles import load_catalogue, load_gateway


def run(args: argparse.Namespace) -> int:
    config, models_path = load_gateway(args.config)
    catalogue = load_catalogue(models_path)
    from cortex.__main__ import run_async
    from cortex.gateway.serve import run_gateway

    run_async(run_gateway(config, catalogue, models_path))
    return 0
