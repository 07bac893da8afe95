"""A bad model folder fails the load with a 4xx HarnessError that says what is wrong."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper

from cortex.harness import HarnessError
from tests.neuron.onnxtiny import copy_tiny, edit_json, load


def write_graph(folder: Path, kv_type: int = TensorProto.FLOAT, decoder: bool = True) -> None:
    """Replace model.onnx with a minimal graph having the given I/O (Identity ops only)."""
    (folder / "model.onnx.data").unlink()
    ids = helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["b", "s"])
    mask = helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["b", "t"])
    inputs, outputs, nodes = [ids, mask], [], []
    if decoder:
        for n in range(2):
            for kind in ("key", "value"):
                name = f"past_key_values.{n}.{kind}"
                inputs.append(helper.make_tensor_value_info(name, kv_type, ["b", 2, "p", 32]))
                out = f"present.{n}.{kind}"
                outputs.append(helper.make_tensor_value_info(out, kv_type, ["b", 2, "t", 32]))
                nodes.append(helper.make_node("Identity", [name], [out]))
    nodes.append(helper.make_node("Cast", ["input_ids"], ["logits"], to=TensorProto.FLOAT))
    outputs.insert(0, helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["b", "s"]))
    graph = helper.make_graph(nodes, "g", inputs, outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save_model(model, str(folder / "model.onnx"))


def remove(name: str) -> Callable[[Path], None]:
    return lambda folder: (folder / name).unlink()


def overwrite(name: str, text: str) -> Callable[[Path], None]:
    return lambda folder: (folder / name).write_text(text, encoding="utf-8")


def config(**changes: object) -> Callable[[Path], None]:
    return lambda folder: edit_json(folder / "config.json", **changes)


CASES = {
    "no config.json": (remove("config.json"), "has no config.json"),
    "config.json not JSON": (overwrite("config.json", "{oops"), "config.json .* not valid JSON"),
    "config.json a list": (overwrite("config.json", "[]"), "must hold a JSON object"),
    "no tokenizer.json": (remove("tokenizer.json"), "has no tokenizer.json"),
    "tokenizer.json broken": (
        overwrite("tokenizer.json", "{}"),
        "tokenizer.json .* cannot be read",
    ),
    "no model.onnx": (remove("model.onnx"), "has no model.onnx"),
    "model.onnx garbage": (overwrite("model.onnx", "not a graph"), "onnxruntime cannot load"),
    "missing weights file": (remove("model.onnx.data"), "onnxruntime cannot load"),
    "layer count": (config(num_hidden_layers=3), "KV inputs for 2 layers but the config says 3"),
    "kv heads": (config(num_key_value_heads=4), "2 KV heads .* config says 4"),
    "head size": (config(head_dim=16), "32 head size .* config says 16"),
    "eos type": (config(eos_token_id="x"), "eos_token_id must be an integer"),
    "no context": (config(max_position_embeddings=None), None),
    "kv dtype": (lambda f: write_graph(f, TensorProto.DOUBLE), "KV cache is tensor\\(double\\)"),
    "neither decoder nor encoder": (lambda f: write_graph(f, decoder=False), "no KV-cache inputs"),
}


@pytest.mark.parametrize("case", sorted(CASES))
async def test_bad_folder_fails_with_a_clear_400(case: str, tmp_path: Path) -> None:
    """Each kind of broken folder is refused with a 400 naming the problem."""
    edit, message = CASES[case]
    folder = copy_tiny(tmp_path / "m", edit)
    if case == "no context":  # tokenizer_config's model_max_length still gives one
        model = await load(folder)
        assert model.context_length == 2048
        await model.unload()
        edit_json(folder / "tokenizer_config.json", model_max_length=None)
        message = "no context length"
    with pytest.raises(HarnessError) as info:
        await load(folder)
    assert info.value.status == 400
    assert message is not None
    assert info.value.code == "bad_model_folder"
    assert re.search(message, str(info.value)), str(info.value)


async def test_missing_folder_is_a_404(tmp_path: Path) -> None:
    """A folder that does not exist is a 404 that names it."""
    with pytest.raises(HarnessError, match="does not exist") as info:
        await load(tmp_path / "nowhere")
    assert info.value.status == 404


async def test_a_file_instead_of_a_folder_is_a_400(tmp_path: Path) -> None:
    """A path to a file is refused as not a model folder."""
    (tmp_path / "f").write_text("x", encoding="utf-8")
    with pytest.raises(HarnessError, match="not a model folder") as info:
        await load(tmp_path / "f")
    assert info.value.status == 400


async def test_unknown_provider_option_is_a_400() -> None:
    """options.provider accepts only auto, cuda or cpu."""
    with pytest.raises(HarnessError, match=r"options\.provider") as info:
        await load(provider="tpu")
    assert info.value.status == 400


def test_generation_config_is_optional(tmp_path: Path) -> None:
    """A folder without generation_config.json still reads (EOS from the other files)."""
    from cortex_onnx.folder import read_folder

    folder = copy_tiny(tmp_path / "m", remove("generation_config.json"))
    eos = json.loads((folder / "config.json").read_text(encoding="utf-8"))["eos_token_id"]
    assert read_folder(str(folder)).eos_token_ids == {eos}
