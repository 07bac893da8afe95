"""The neuron's inference routes: chat, legacy completions, embeddings, tokenize.

I/O shell: validates the OpenAI body (``requests.py``), finds the loaded model and
hands the generation to ``generate.serve``, which owns the wire format.
"""

from __future__ import annotations

from aiohttp import web

from cortex.core import wire
from cortex.errors import BadRequest
from cortex.neuron.generate import serve
from cortex.neuron.requests import (
    parse_chat,
    parse_completion,
    parse_tokenize,
    wants_usage_chunk,
)
from cortex.neuron.state import Handler, decode, json_body, neuron_state


async def post_tokenize(request: web.Request) -> web.Response:
    state = neuron_state(request)
    body = await json_body(request)
    model, messages, tools, prompt = parse_tokenize(body)
    slot = state.registry.slots.get(model)
    if slot is not None and slot.model is not None:
        count = await slot.model.count_tokens(messages, tools, prompt)
    else:
        spec = decode(
            {
                "model_id": model,
                "source": body.get("source"),
                "harness": body.get("harness"),
                "options": body.get("options") or {},
            },
            wire.LoadRequest,
        )
        harness = state.registry.harnesses.get(spec.harness or state.registry.default_harness)
        count = await harness.count_tokens(state.registry.spec_for(spec), messages, tools, prompt)
    return web.json_response({"tokens": count})


def _chat_or_completion(chat: bool) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        state = neuron_state(request)
        body = await json_body(request)
        request_id = request.headers.get("x-request-id", "")
        parse = parse_chat if chat else parse_completion
        generation = parse(body, request_id)
        slot = state.registry.loaded(body["model"])
        return await serve(
            request,
            slot,
            generation,
            chat=chat,
            stream=bool(body.get("stream")),
            include_usage=wants_usage_chunk(body),
            metrics=state.metrics,
        )

    return handle


async def post_embeddings(request: web.Request) -> web.Response:
    state = neuron_state(request)
    body = await json_body(request)
    if not isinstance(body, dict) or not isinstance(body.get("model"), str):
        raise BadRequest("model is required", param="model")
    inputs = body.get("input")
    if isinstance(inputs, str):
        inputs = [inputs]
    if not isinstance(inputs, list) or not inputs or not all(isinstance(i, str) for i in inputs):
        raise BadRequest("input must be a string or a non-empty list of strings", param="input")
    slot = state.registry.loaded(body["model"])
    async with slot.admit() as model:
        vectors = await model.embed(inputs)
        tokens = sum([await model.count_tokens(None, None, text) for text in inputs])
    state.metrics.generation(slot.model_id, tokens, 0, None, 0.0)
    return web.json_response(
        {
            "object": "list",
            "model": slot.model_id,
            "data": [
                {"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)
            ],
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
    )


def add_routes(app: web.Application) -> None:
    app.router.add_post("/tokenize", post_tokenize)
    app.router.add_post("/v1/chat/completions", _chat_or_completion(chat=True))
    app.router.add_post("/v1/completions", _chat_or_completion(chat=False))
    app.router.add_post("/v1/embeddings", post_embeddings)
