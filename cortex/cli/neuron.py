"""``cortex neuron``: read neuron.toml, then serve this host's models."""

from __future__ import annotations

import argparse

import attrs

from cortex import venvs
from cortex.cli.configfiles import load_neuron


def run(args: argparse.Namespace) -> int:
    config, models_dir = load_neuron(args.config)
    venvs.activate()  # the native deps `cortex bootstrap` installed, if any
    if args.port is not None:
        config = attrs.evolve(config, port=args.port)
    if args.host is not None:
        config = attrs.evolve(config, host=args.host)
    from cortex.__main__ import run_async
    from cortex.neuron.serve import run_neuron

    run_async(run_neuron(config, models_dir))
    return 0
