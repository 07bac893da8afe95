"""Chat templates render like transformers, and token counts match what generation sees."""

from __future__ import annotations

import json
from pathlib import Path

import onnxruntime
import pytest
from cortex_onnx import OnnxHarness
from cortex_onnx.template import render_chat
from tokenizers import Tokenizer

from cortex.harness import HarnessError, LoadSpec, Prefilled, Tokenized
from tests.neuron.onnxtiny import GOLDEN, TINY, collect, copy_tiny, load

TEMPLATE = (TINY / "chat_template.jinja").read_text(encoding="utf-8")
SPEC = LoadSpec("tiny", str(TINY))


@pytest.mark.parametrize("case", ["chat", "tools"])
def test_rendering_equals_the_golden_text(case: str) -> None:
    """The tiny model's template renders the golden text, tools included."""
    golden = GOLDEN["template"][case]
    assert render_chat(TEMPLATE, golden["messages"], golden["tools"]) == golden["text"]


async def test_template_falls_back_to_tokenizer_config(tmp_path: Path) -> None:
    """Without chat_template.jinja the template in tokenizer_config.json is used."""

    def move_template(folder: Path) -> None:
        config = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
        config["chat_template"] = (folder / "chat_template.jinja").read_text(encoding="utf-8")
        (folder / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
        (folder / "chat_template.jinja").unlink()

    folder = copy_tiny(tmp_path / "m", move_template)
    golden = GOLDEN["template"]["tools"]
    spec = LoadSpec("tiny", str(folder))
    count = await OnnxHarness().count_tokens(spec, golden["messages"], golden["tools"], None)
    tokenizer = Tokenizer.from_file(str(TINY / "tokenizer.json"))
    assert count == len(tokenizer.encode(golden["text"], add_special_tokens=False).ids)


def test_raise_exception_in_a_template_is_a_400() -> None:
    """A template's raise_exception becomes a HarnessError quoting its message."""
    with pytest.raises(HarnessError, match="Unknown role: robot") as info:
        render_chat(TEMPLATE, [{"role": "robot", "content": "x"}])
    assert info.value.status == 400


def test_image_parts_are_refused_and_text_parts_joined() -> None:
    """Text parts join into one string; an image part is a 400 naming it."""
    parts = [{"type": "text", "text": "Hi "}, {"type": "text", "text": "there!"}]
    text = render_chat(TEMPLATE, [{"role": "user", "content": parts}])
    assert "Hi there!" in text
    image = {"type": "image_url", "image_url": {"url": "data:"}}
    with pytest.raises(HarnessError, match="image_url"):
        render_chat(TEMPLATE, [{"role": "user", "content": [image]}])


def test_strftime_now_and_tojson_are_available() -> None:
    """Templates may call strftime_now and tojson with transformers' keyword arguments."""
    source = "{{ strftime_now('%Y') }}|{{ {'é': 1} | tojson(indent=None) }}"
    year, data = render_chat(source, []).split("|")
    assert year.isdigit()
    assert data == '{"é": 1}'


@pytest.mark.parametrize("case", ["chat", "tools"])
async def test_count_tokens_equals_the_rendered_prompt_ids(case: str) -> None:
    """count_tokens is the length of the rendered prompt's ids, as the generation reports it."""
    golden = GOLDEN["template"][case]
    tokenizer = Tokenizer.from_file(str(TINY / "tokenizer.json"))
    expected = len(tokenizer.encode(golden["text"], add_special_tokens=False).ids)
    harness = OnnxHarness()
    assert await harness.count_tokens(SPEC, golden["messages"], golden["tools"], None) == expected
    model = await load()
    try:
        assert await model.count_tokens(golden["messages"], golden["tools"], None) == expected
        events = await collect(
            model, messages=golden["messages"], tools=golden["tools"], max_tokens=1
        )
    finally:
        await model.unload()
    assert events[0] == Tokenized(expected)
    assert events[1] == Prefilled(expected)


async def test_count_tokens_never_creates_a_session(monkeypatch: pytest.MonkeyPatch) -> None:
    """The harness counts with the tokenizer alone; onnxruntime sessions are off limits."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("count_tokens created an InferenceSession")

    monkeypatch.setattr(onnxruntime, "InferenceSession", refuse)
    assert await OnnxHarness().count_tokens(SPEC, None, None, "Hello") == 3
